"""The ``archive`` settings block (``TRIPWIRE_ARCHIVE__*``); no minio import here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# S3 bucket naming rules (lower-case DNS label style, 3-63 characters).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


class S3Settings(BaseModel):
    """An S3 endpoint (MinIO, SeaweedFS, AWS, ...) and the bucket frames go to."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(..., description="host:port of the S3 API, without a scheme")
    bucket: str = Field("tripwire", description="bucket for frames/ and detections/")
    access_key: str = Field(..., min_length=1, description="S3 access key id")
    secret_key: SecretStr = Field(..., description="S3 secret key (never logged)")
    secure: bool = Field(True, description="https; false only for a local plain-http server")
    region: str = Field(
        "us-east-1", min_length=1, max_length=64, description="signing region; saves a lookup"
    )
    connect_timeout_s: float = Field(3.0, gt=0, le=60, description="TCP connect, per attempt")
    read_timeout_s: float = Field(30.0, gt=0, le=600, description="wait for an answer, per attempt")


class ArchiveSettings(BaseModel):
    """Where frames and detections are archived; the default is a local folder."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "s3"] = Field("local", description="local folder or S3 bucket")
    path: Path | None = Field(None, description="local folder; unset = <home>/archive")
    fsync: bool = Field(True, description="local: flush each object to disk before it shows")
    s3: S3Settings | None = Field(None, description="required with backend s3")
    retention_days: int | None = Field(
        None, ge=1, le=36_500, description="delete frames/ and detections/ older than this"
    )
    concurrency: int = Field(8, ge=1, le=256, description="writes in flight at once (threads)")
    retry_attempts: int = Field(5, ge=1, le=100, description="tries per S3 call (first included)")
    retry_max_s: float = Field(
        20.0, gt=0, le=3600, description="stop retrying one S3 call after this long"
    )
    retry_backoff_s: float = Field(0.2, gt=0, le=60, description="first retry delay, doubling")

    @model_validator(mode="after")
    def _check(self) -> ArchiveSettings:
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("backend s3 needs the s3 block (endpoint, access_key, secret_key)")
        if self.backend == "local" and self.s3 is not None:
            # Most likely a forgotten TRIPWIRE_ARCHIVE__BACKEND=s3: refuse to archive locally.
            raise ValueError("an s3 block is set but backend is local: set backend to s3")
        if self.s3 is not None:
            s3 = self.s3
            if "://" in s3.endpoint:
                raise ValueError("s3.endpoint is host:port without a scheme; use s3.secure")
            if not _ENDPOINT_RE.match(s3.endpoint):
                raise ValueError(f"s3.endpoint {s3.endpoint!r} is not host or host:port")
            if not _BUCKET_RE.match(s3.bucket) or ".." in s3.bucket:
                raise ValueError(f"s3.bucket {s3.bucket!r}: use 3-63 of a-z, 0-9, '.', '-'")
            if not s3.access_key.strip() or not s3.secret_key.get_secret_value().strip():
                raise ValueError("s3.access_key and s3.secret_key must not be blank")
        return self

    def placeholder_secret(self, placeholders: frozenset[str]) -> bool:
        """True if the S3 secret key is one of ``placeholders`` (refused outside dev)."""
        if self.s3 is None:
            return False
        return self.s3.secret_key.get_secret_value().lower() in placeholders
