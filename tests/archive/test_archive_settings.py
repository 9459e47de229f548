"""The archive settings block: one validator for the checks across fields, table-driven."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tripwire.archive import ArchiveSettings, open_archive
from tripwire.archive.local import LocalArchive

S3 = {"endpoint": "minio:9000", "access_key": "tripwire", "secret_key": "s3cr3t-value"}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        # Nothing set: the embedded default, a local folder.
        ({}, None),
        # A complete S3 block.
        ({"backend": "s3", "s3": S3}, None),
        # S3 with a bucket of its own, plain http and retention.
        ({"backend": "s3", "retention_days": 30,
          "s3": {**S3, "bucket": "cams.site-1", "secure": False}}, None),
        # An IPv6 literal endpoint with a port.
        ({"backend": "s3", "s3": {**S3, "endpoint": "[::1]:9000"}}, None),
        # backend s3 but no s3 block at all: nothing to connect to.
        ({"backend": "s3"}, "needs the s3 block"),
        # An s3 block without its endpoint.
        ({"backend": "s3", "s3": {k: v for k, v in S3.items() if k != "endpoint"}},
         "endpoint"),
        # An s3 block without a secret key (it has no default on purpose).
        ({"backend": "s3", "s3": {k: v for k, v in S3.items() if k != "secret_key"}},
         "secret_key"),
        # An s3 block without an access key.
        ({"backend": "s3", "s3": {k: v for k, v in S3.items() if k != "access_key"}},
         "access_key"),
        # A blank secret key is as good as none.
        ({"backend": "s3", "s3": {**S3, "secret_key": "  "}}, "must not be blank"),
        # A URL instead of host:port: the scheme is the secure flag's job.
        ({"backend": "s3", "s3": {**S3, "endpoint": "http://minio:9000"}}, "without a scheme"),
        # A path after the host is not an endpoint.
        ({"backend": "s3", "s3": {**S3, "endpoint": "minio:9000/bucket"}}, "not host"),
        # Upper case is not a valid bucket name.
        ({"backend": "s3", "s3": {**S3, "bucket": "Frames"}}, "s3.bucket"),
        # An s3 block while backend is still local: most likely a forgotten backend=s3.
        ({"s3": S3}, "backend is local"),
        # Retention of zero days would delete frames as they arrive.
        ({"retention_days": 0}, "retention_days"),
        # A typo in a field name is an error, not silently ignored.
        ({"retention_day": 7}, "retention_day"),
        # A typo inside the s3 block too.
        ({"backend": "s3", "s3": {**S3, "regoin": "eu"}}, "regoin"),
        # At least one attempt per call.
        ({"retry_attempts": 0}, "retry_attempts"),
    ],
)  # fmt: skip
def test_archive_settings(values: dict[str, Any], error: str | None) -> None:
    if error is None:
        ArchiveSettings.model_validate(values)
    else:
        with pytest.raises(ValidationError, match=error):
            ArchiveSettings.model_validate(values)


def test_secret_never_in_repr() -> None:
    settings = ArchiveSettings.model_validate({"backend": "s3", "s3": S3})
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())


def test_placeholder_secret() -> None:
    placeholders = frozenset({"minioadmin"})
    s3 = {**S3, "secret_key": "MinioAdmin"}
    assert ArchiveSettings.model_validate({"backend": "s3", "s3": s3}).placeholder_secret(
        placeholders
    )
    assert not ArchiveSettings.model_validate({"backend": "s3", "s3": S3}).placeholder_secret(
        placeholders
    )
    assert not ArchiveSettings().placeholder_secret(placeholders)


class _Process(BaseSettings):
    """How a process's settings carry the block (as CommonSettings does)."""

    model_config = SettingsConfigDict(
        env_prefix="TRIPWIRE_", env_nested_delimiter="__", extra="forbid"
    )
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPWIRE_ARCHIVE__BACKEND", "s3")
    monkeypatch.setenv("TRIPWIRE_ARCHIVE__RETENTION_DAYS", "14")
    monkeypatch.setenv("TRIPWIRE_ARCHIVE__S3__ENDPOINT", "minio:9000")
    monkeypatch.setenv("TRIPWIRE_ARCHIVE__S3__ACCESS_KEY", "tripwire")
    monkeypatch.setenv("TRIPWIRE_ARCHIVE__S3__SECRET_KEY", "from-env")
    monkeypatch.setenv("TRIPWIRE_ARCHIVE__S3__SECURE", "false")
    archive = _Process().archive
    assert archive.backend == "s3" and archive.retention_days == 14
    assert archive.s3 is not None and not archive.s3.secure
    assert archive.s3.secret_key.get_secret_value() == "from-env"
    # The s3 block without backend=s3 is refused rather than silently archiving locally.
    monkeypatch.delenv("TRIPWIRE_ARCHIVE__BACKEND")
    with pytest.raises(ValidationError, match="backend is local"):
        _Process()


async def test_open_archive_local_default(tmp_path: Path) -> None:
    archive = open_archive(ArchiveSettings(), tmp_path)
    try:
        assert isinstance(archive, LocalArchive)
        assert archive.root == tmp_path / "archive"
    finally:
        await archive.close()
