"""Pick the archive adapter the settings name."""

from __future__ import annotations

from pathlib import Path

from tripwire.archive.protocol import Archive
from tripwire.archive.settings import ArchiveSettings


def open_archive(settings: ArchiveSettings, home: Path) -> Archive:
    """An adapter for ``settings`` (call ``await archive.ensure()`` once before use).

    The local folder defaults to ``<home>/archive``. minio is imported only for S3.
    """
    if settings.backend == "s3" and settings.s3 is not None:
        from tripwire.archive.s3 import S3Archive

        return S3Archive(
            settings.s3,
            retention_days=settings.retention_days,
            concurrency=settings.concurrency,
            retry_attempts=settings.retry_attempts,
            retry_max_s=settings.retry_max_s,
            retry_backoff_s=settings.retry_backoff_s,
        )
    from tripwire.archive.local import LocalArchive

    return LocalArchive(
        settings.path or home / "archive",
        retention_days=settings.retention_days,
        fsync=settings.fsync,
        concurrency=settings.concurrency,
    )
