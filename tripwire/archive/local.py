"""The embedded default archive: a folder on this machine (``<home>/archive``).

A key is a relative path under the folder. Each object is written to a temporary file in
its final directory and renamed over the target (``os.replace`` is atomic on POSIX), so a
crash leaves either the old object or the new one, never half of one. Content type and
user metadata go to a sidecar ``<file>.meta.json``, written the same way and renamed
*before* the data file: the data file's rename is the commit point that ``exists``,
``get`` and ``list`` look at. Temporary files start with ``.``, a name no valid key has.

A folder has no lifecycle engine, so :meth:`LocalArchive.sweep` stands in for one: it
deletes objects under ``frames/`` and ``detections/`` modified more than ``retention_days``
ago, and temporary files orphaned by a crash. ``ensure`` starts it in the background, at
most once an hour per folder (a marker file records the last run): walking a large archive
must not delay a detector that was just scaled up from zero.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tripwire.archive.keys import (
    DETECTIONS_PREFIX,
    FRAMES_PREFIX,
    SIDECAR_SUFFIX,
    check_content_type,
    check_key,
    check_metadata,
    check_prefix,
)
from tripwire.errors import ArchiveError

log = logging.getLogger(__name__)

T = TypeVar("T")

TMP_SUFFIX = ".tmp"
# A temporary file this old was left by a process that died mid-write.
STALE_TMP_S = 3600.0
SWEEP_INTERVAL_S = 3600.0
SWEEP_MARKER = ".swept"  # its mtime is the last sweep's start


class LocalArchive:
    """Archive in a local folder (see :class:`tripwire.archive.protocol.Archive`)."""

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        retention_days: int | None = None,
        fsync: bool = True,
        concurrency: int = 8,
    ) -> None:
        self.root = root
        self._retention_days = retention_days
        self._fsync = fsync
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="archive-local")
        self._closed = False
        # The sweep ensure() started in the background, if any (await it to wait for it).
        self.sweeping: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"LocalArchive({str(self.root)!r})"

    async def ensure(self) -> None:
        due = await self._run("ensure", None, self._prepare)
        if due and self.sweeping is None:
            self.sweeping = asyncio.create_task(self._background_sweep())

    async def sweep(self) -> int:
        """Delete expired objects and orphaned temporary files now; the objects removed."""
        return await self._run("sweep", None, self._sweep)

    async def put(
        self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        check_key(key)
        sidecar = {
            "content_type": check_content_type(content_type),
            "metadata": check_metadata(metadata),
        }
        body = json.dumps(sidecar, sort_keys=True).encode()
        await self._run("put", key, lambda: self._write(key, data, body))

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        data = await self._run("get", key, lambda: _read(path))
        if data is None:
            raise ArchiveError(f"archive local {self.root} key {key}: no such object")
        return data

    async def exists(self, key: str) -> bool:
        return await self._run("exists", key, self._path(key).is_file)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # also stops a sweep in progress at its next folder
        if self.sweeping is not None:
            await self.sweeping
        await asyncio.to_thread(self._pool.shutdown, True)

    async def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        return await self._run("list", None, lambda: sorted(self._walk(prefix)))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def _run(self, what: str, key: str | None, fn: Callable[[], T]) -> T:
        where = f"archive local {self.root}" + (f" key {key}" if key else "")
        if self._closed:
            raise ArchiveError(f"{where}: {what}: the archive is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except OSError as exc:
            raise ArchiveError(f"{where}: {what}: {exc.strerror or exc}") from exc

    def _write(self, key: str, data: bytes, sidecar: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = path.with_name(path.name + SIDECAR_SUFFIX)
        tag = uuid.uuid4().hex[:12]
        meta_tmp = path.with_name(f".{meta.name}.{tag}{TMP_SUFFIX}")
        data_tmp = path.with_name(f".{path.name}.{tag}{TMP_SUFFIX}")
        try:
            self._write_file(meta_tmp, sidecar)
            self._write_file(data_tmp, data)
            os.replace(meta_tmp, meta)
            os.replace(data_tmp, path)  # the commit point
        except BaseException:
            for tmp in (meta_tmp, data_tmp):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise
        if self._fsync:
            # The renames live in the directory: without this a power cut may lose an
            # object whose write was already reported done (and its frame acked).
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_file(self, path: Path, data: bytes) -> None:
        with path.open("xb") as f:
            f.write(data)
            if self._fsync:
                f.flush()
                os.fsync(f.fileno())

    def _walk(self, prefix: str) -> builtins.list[str]:
        # Walk only the deepest folder the prefix names, not the whole archive.
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return keys

    def _prepare(self) -> bool:
        """Create the folder; True if a sweep is due (and claimed by touching the marker)."""
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / SWEEP_MARKER
        with contextlib.suppress(FileNotFoundError):
            if time.time() - marker.stat().st_mtime < SWEEP_INTERVAL_S:
                return False
        marker.touch()
        return True

    async def _background_sweep(self) -> None:
        if self._closed:
            return
        try:
            removed = await self.sweep()
        except ArchiveError as exc:
            log.warning("%s", exc)
            return
        if removed:
            log.info("archive local %s: retention removed %d object(s)", self.root, removed)

    def _sweep(self) -> int:
        now = time.time()
        days = self._retention_days
        cutoff = None if days is None else now - days * 86_400
        removed = 0
        for dirpath, _, filenames in os.walk(self.root):
            if self._closed:
                break
            rel = Path(dirpath).relative_to(self.root).as_posix() + "/"
            expires = rel.startswith((FRAMES_PREFIX, DETECTIONS_PREFIX))
            for name in filenames:
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):  # another process's sweep
                    mtime = path.stat().st_mtime
                    if name.startswith(".") and name.endswith(TMP_SUFFIX):
                        if mtime < now - STALE_TMP_S:
                            path.unlink()
                    elif cutoff is not None and expires and mtime < cutoff:
                        path.unlink()
                        if not name.endswith(SIDECAR_SUFFIX):
                            removed += 1
        return removed


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
