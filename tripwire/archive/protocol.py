"""The one interface every archive adapter implements.

An archive stores frames and detections as objects under deterministic keys (see
:mod:`tripwire.archive.keys`), so a redelivered frame overwrites itself instead of adding a
duplicate. Every method runs its blocking I/O off the event loop, so several writes can be
in flight at once.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class Archive(Protocol):
    """Put, get and list objects in one bucket (S3) or folder (local)."""

    name: str

    async def ensure(self) -> None:
        """Create the bucket or folder if missing; apply the retention rule when configured.

        Idempotent; call it once at start-up. Raises
        :class:`~tripwire.errors.ArchiveUnavailable` when the store cannot be reached.
        """
        ...

    async def put(
        self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Store ``data`` under ``key``, replacing any object already there.

        ``metadata`` keys are lower-cased (S3 user metadata is case-insensitive); keys and
        values must be printable ASCII. Returns once the object is stored. Raises
        :class:`~tripwire.errors.ArchiveUnavailable` for an outage that outlasted the
        retries, :class:`~tripwire.errors.ArchiveError` for anything retrying cannot fix.
        """
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`~tripwire.errors.ArchiveError` if there is none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def close(self) -> None:
        """Wait for writes in flight, then release threads and connections."""
        ...

    # Last, and with builtins.list: inside a class body, a method named `list` would
    # otherwise shadow the builtin for every annotation after it.
    async def list(self, prefix: str) -> builtins.list[str]:
        """Keys starting with ``prefix`` (plain string prefix, not a glob), sorted."""
        ...
