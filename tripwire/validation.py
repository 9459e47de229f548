"""How a pydantic ``ValidationError`` of a file reads: one ``source: key.path[0]: message``
line per error, for the camera config and the ScaledObject policy alike."""

from __future__ import annotations

from pydantic import ValidationError

Loc = tuple[int | str, ...]


def key_path(loc: Loc) -> str:
    """``('cameras', 0, 'motion')`` -> ``cameras[0].motion``; the root is ``<root>``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def validation_message(exc: ValidationError, source: str, prefix: Loc = ()) -> str:
    """The errors of ``exc`` under ``prefix``, one line each, naming ``source``.

    A container's own complaint (e.g. "too short") after one of its items failed adds
    nothing and is left out; so is pydantic's "Value error, " before a validator's message.
    """
    errors = exc.errors()
    locs = [tuple(err["loc"]) for err in errors]
    return "\n".join(
        f"{source}: {key_path(prefix + loc)}: {err['msg'].removeprefix('Value error, ')}"
        for err, loc in zip(errors, locs, strict=True)
        if not any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)
    )
