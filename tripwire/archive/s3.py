"""S3 archive (MinIO, SeaweedFS, AWS, ...) through the minio client; nothing else imports minio.

Each call runs in a small thread pool (the minio client is blocking and thread-safe) and is
retried with exponential backoff while the failure is transient: connection refused or
reset, a timeout, a 5xx or SlowDown. When the attempts or the time budget are used up it
raises :class:`ArchiveUnavailable`; anything retrying cannot fix (access denied, a missing
bucket, an invalid key) raises :class:`ArchiveError` at once. urllib3's own retries are off
and its timeouts short, so a dead server fails an attempt in seconds instead of hanging.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from tripwire.archive.keys import (
    DETECTIONS_PREFIX,
    FRAMES_PREFIX,
    check_content_type,
    check_key,
    check_metadata,
    check_prefix,
)
from tripwire.archive.settings import S3Settings
from tripwire.errors import ArchiveError, ArchiveUnavailable
from tripwire.retry import log_retry, retry

log = logging.getLogger(__name__)

T = TypeVar("T")

# S3 error codes that mean "try again later"; any other 5xx is treated the same way.
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "OperationAborted",
     "XMinioServerNotInitialized"}
)  # fmt: skip
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
# Answers of a server without lifecycle support (minio maps a bare 501 to MethodNotAllowed).
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "MethodNotAllowed"})
# Frames go up in one PUT (part size above the gateway's 64 MiB frame limit): a retried
# single PUT simply overwrites, where a failed multipart upload would leave parts behind.
_SINGLE_PUT_BYTES = 64 * 1024 * 1024
_MAX_BACKOFF_S = 5.0
# What the minio client and its urllib3 pool raise; anything else is a bug and propagates.
_CLIENT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)
RULE_IDS = {
    FRAMES_PREFIX: "tripwire-frames-expiry",
    DETECTIONS_PREFIX: "tripwire-detections-expiry",
}


def _status(exc: Exception) -> int:
    if isinstance(exc, S3Error):
        return int(exc.response.status) if exc.response is not None else 0
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):  # a non-XML answer, e.g. a proxy's 502 page
        return int(getattr(exc, "_code", 0) or 0)
    return 0


def is_transient(exc: Exception) -> bool:
    """True for a failure that may go away by itself (outage, overload, timeout)."""
    if isinstance(exc, S3Error) and exc.code in _TRANSIENT_CODES:
        return True
    status = _status(exc)
    if status:
        return status == 429 or (status >= 500 and status != 501)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    # urllib3 with retries off raises the connection error itself: refused, reset, DNS,
    # connect or read timeout; a connection closed mid-answer is a ProtocolError.
    return isinstance(exc, Urllib3Timeout | ProtocolError | ConnectionError | TimeoutError)


def _describe(exc: Exception) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
    if isinstance(exc, ServerError | InvalidResponseError):
        return f"HTTP {_status(exc)}: {str(exc)[:200]}"
    text = str(exc)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class S3Archive:
    """Archive in one S3 bucket (see :class:`tripwire.archive.protocol.Archive`)."""

    name = "s3"

    def __init__(
        self,
        settings: S3Settings,
        *,
        retention_days: int | None = None,
        concurrency: int = 8,
        retry_attempts: int = 5,
        retry_max_s: float = 20.0,
        retry_backoff_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._retention_days = retention_days
        self._attempts = retry_attempts
        self._max_s = retry_max_s
        self._backoff_s = retry_backoff_s
        # None: no retention asked for; True: rule in place; False: the server refused it.
        self.lifecycle_applied: bool | None = None
        self._secret = settings.secret_key.get_secret_value()
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=concurrency,
            timeout=urllib3.Timeout(
                connect=settings.connect_timeout_s, read=settings.read_timeout_s
            ),
            retries=False,  # the retry loop below decides, with backoff and a time budget
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or None,  # None: the system's CAs
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=self._secret,
            secure=settings.secure,
            region=settings.region,
            http_client=self._http,
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="archive-s3")
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Archive({self._where()!r})"

    async def ensure(self) -> None:
        await self._call("create bucket", None, self._ensure_bucket)
        if self._retention_days is not None:
            await self._call("set lifecycle", None, self._ensure_lifecycle)

    async def put(
        self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        check_key(key)
        check_content_type(content_type)
        # Prefixed here, so that no metadata name can turn into a real header.
        headers: dict[str, str | list[str] | tuple[str]] = {
            f"x-amz-meta-{k}": v for k, v in check_metadata(metadata).items()
        }

        def put() -> None:
            self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                metadata=headers, part_size=_SINGLE_PUT_BYTES,
            )  # fmt: skip

        await self._call("put", key, put)

    async def get(self, key: str) -> bytes:
        check_key(key)

        def get() -> bytes:
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await self._call("get", key, get)

    async def exists(self, key: str) -> bool:
        check_key(key)

        def exists() -> bool:
            try:
                self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _NOT_FOUND_CODES:
                    return False
                raise
            return True

        return await self._call("exists", key, exists)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, True)
        self._http.clear()

    async def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)

        def list_keys() -> builtins.list[str]:
            objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return sorted(o.object_name for o in objects if o.object_name is not None)

        return await self._call("list", None, list_keys)

    def _where(self, key: str | None = None) -> str:
        where = f"archive s3 {self.settings.endpoint} bucket {self.bucket}"
        return f"{where} key {key}" if key else where

    def _scrub(self, text: str) -> str:
        # Belt and braces: no minio or urllib3 message should carry the secret, but make sure.
        return text.replace(self._secret, "***") if self._secret else text

    async def _call(self, what: str, key: str | None, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the pool; retry transient failures with backoff, then give up."""
        if self._closed:
            raise ArchiveError(f"{self._where(key)}: {what}: the archive is closed")
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            try:
                return await loop.run_in_executor(self._pool, fn)
            except _CLIENT_ERRORS as exc:
                text = self._scrub(f"{self._where(key)}: {what}: {_describe(exc)}")
                if not is_transient(exc):
                    if isinstance(exc, S3Error) and exc.code == "NoSuchBucket":
                        text += " (ensure() creates it; was it deleted?)"
                    raise ArchiveError(text) from exc
                raise ArchiveUnavailable(text) from exc

        try:
            return await retry(
                attempt,
                first_s=self._backoff_s,
                max_s=_MAX_BACKOFF_S,
                deadline_s=self._max_s,
                attempts=self._attempts,
                on_retry=log_retry(log, what, logging.DEBUG),
            )
        except ArchiveUnavailable as exc:
            elapsed = loop.time() - started
            raise ArchiveUnavailable(
                f"{exc} (gave up after {attempts} attempt(s) in {elapsed:.1f}s)"
            ) from exc.__cause__

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code != "BucketAlreadyOwnedByYou":  # else another replica was faster
                raise
        else:
            log.info("%s: bucket created", self._where())

    def _ensure_lifecycle(self) -> None:
        assert self._retention_days is not None
        ours = [
            Rule(ENABLED, rule_filter=Filter(prefix=prefix), rule_id=rule_id,
                 expiration=Expiration(days=self._retention_days))
            for prefix, rule_id in RULE_IDS.items()
        ]  # fmt: skip
        try:
            current = self._client.get_bucket_lifecycle(self.bucket)
            # Rules someone else put on the bucket are kept; ours are replaced.
            rules = current.rules if current is not None else []
            if all(rule in rules for rule in ours):
                self.lifecycle_applied = True
                return
            others = [rule for rule in rules if rule.rule_id not in RULE_IDS.values()]
            self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig([*others, *ours]))
        except (S3Error, ServerError) as exc:
            code = exc.code if isinstance(exc, S3Error) else None
            if code not in _UNSUPPORTED_CODES and _status(exc) != 501:
                raise
            if self.lifecycle_applied is not False:
                log.warning(
                    "%s: the server does not support lifecycle rules (%s): objects are kept "
                    "beyond retention_days=%d; expire them with the server's own tools",
                    self._where(), _describe(exc), self._retention_days,
                )  # fmt: skip
            self.lifecycle_applied = False
            return
        self.lifecycle_applied = True
        log.info("%s: objects expire after %d day(s)", self._where(), self._retention_days)
