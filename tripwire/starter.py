"""A starter camera config for a fresh machine (``tripwire init``)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tripwire.errors import ConfigError
from tripwire.tokens import hash_token, new_token

OPERATOR_TOKEN_FILE = "operator-token"


def write_starter_config(home: Path, cameras: int, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``<home>/cameras.yaml`` and the matching tokens (mode 600) for ``cameras`` cameras,
    and a starter console operator ``admin`` whose token goes to ``<home>/operator-token``.

    The tokens file exists for local development and the demo camera simulator only; in
    production hand each token to its camera and keep only the hash.
    """
    if cameras < 1:
        raise ConfigError("--cameras must be at least 1")
    config = home / "cameras.yaml"
    tokens_file = home / "camera-tokens.env"
    if config.exists() and not force:
        raise ConfigError(f"{config} exists; pass --force to overwrite it")
    home.mkdir(parents=True, exist_ok=True)
    tokens = {f"cam-{i}": new_token() for i in range(1, cameras + 1)}
    operator = new_token()
    doc = {
        "cameras": [{"id": cam, "token_hash": hash_token(tok)} for cam, tok in tokens.items()],
        "operators": [{"name": "admin", "token_hash": hash_token(operator)}],
    }
    config.write_text(
        "# written by `tripwire init`; see README 'Configuration'\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    fd = os.open(tokens_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{cam}={tok}\n" for cam, tok in tokens.items())
    fd = os.open(home / OPERATOR_TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(operator + "\n")
    return config, tokens_file


def read_operator_token(home: Path) -> str:
    """The starter operator token (``admin``) that ``write_starter_config`` saved."""
    path = home / OPERATOR_TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); run `tripwire init`") from None


def read_tokens(home: Path) -> dict[str, str]:
    """The tokens ``write_starter_config`` saved, by camera id."""
    path = home / "camera-tokens.env"
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); run `tripwire init`") from None
    return dict(line.split("=", 1) for line in lines if "=" in line)
