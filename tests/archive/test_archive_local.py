"""The local folder archive: round trip, overwrite, atomic writes, refused paths, retention."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import frames
from tripwire.archive import frame_key
from tripwire.archive.local import SWEEP_MARKER, LocalArchive
from tripwire.errors import ArchiveError

REPO = Path(__file__).resolve().parents[2]
CAPTURE_NS = 1_700_000_000_123_456_789
KEY = frame_key("cam-1", CAPTURE_NS, 42, "image/jpeg")


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return frames.jpeg(frames.background(320, 240))


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[LocalArchive]:
    archive = LocalArchive(tmp_path / "archive", fsync=True)
    await archive.ensure()
    yield archive
    await archive.close()


def files_under(root: Path) -> list[str]:
    """Every file in the folder but the sweep marker: objects, sidecars, leftovers."""
    files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(f for f in files if f != SWEEP_MARKER)


async def test_metadata_goes_to_a_sidecar(archive: LocalArchive, jpeg: bytes) -> None:
    # The round trip itself is in test_archive_contract.py.
    await archive.put(KEY, jpeg, "image/jpeg", {"Tripwire-Camera": "cam-1", "Tripwire-Seq": "42"})
    sidecar = json.loads((archive.root / f"{KEY}.meta.json").read_text())
    assert sidecar == {
        "content_type": "image/jpeg",
        "metadata": {"tripwire-camera": "cam-1", "tripwire-seq": "42"},
    }


async def test_a_folder_is_not_an_object(archive: LocalArchive) -> None:
    await archive.put(KEY, b"x", "image/jpeg", {})
    with pytest.raises(ArchiveError, match="no such object"):
        await archive.get("frames/cam-1")


async def test_overwrite_leaves_one_file_and_sidecar(archive: LocalArchive, jpeg: bytes) -> None:
    await archive.put(KEY, b"first", "image/jpeg", {"seq": "1"})
    await archive.put(KEY, jpeg, "image/png", {"seq": "2"})

    assert files_under(archive.root) == [KEY, f"{KEY}.meta.json"]  # and no temporary files
    sidecar = json.loads((archive.root / f"{KEY}.meta.json").read_text())
    assert sidecar == {"content_type": "image/png", "metadata": {"seq": "2"}}


async def test_writers_racing_for_one_key_leave_one_whole_object(archive: LocalArchive) -> None:
    await asyncio.gather(
        *(archive.put("frames/contested.jpg", bytes([i]) * 100_000, "image/jpeg", {})
          for i in range(20)),
    )  # fmt: skip
    contested = await archive.get("frames/contested.jpg")
    assert len(contested) == 100_000 and len(set(contested)) == 1  # one writer's whole object
    assert not [f for f in files_under(archive.root) if f.endswith(".tmp")]


@pytest.mark.parametrize(
    "key",
    [
        "../escaped.jpg",  # parent of the archive folder
        "frames/../../escaped.jpg",  # climbs out from inside
        "/tmp/escaped.jpg",  # absolute path
        "frames/./x.jpg",  # '.' segment
        "frames/x.jpg.meta.json",  # would clobber a sidecar
    ],
)
async def test_path_traversal_refused(archive: LocalArchive, key: str) -> None:
    with pytest.raises(ArchiveError, match="archive key"):
        await archive.put(key, b"x", "image/jpeg", {})
    with pytest.raises(ArchiveError, match="archive key"):
        await archive.get(key)
    with pytest.raises(ArchiveError, match="archive key"):
        await archive.exists(key)
    assert not (archive.root.parent / "escaped.jpg").exists()
    assert files_under(archive.root) == []


async def test_list_refuses_traversal(archive: LocalArchive) -> None:
    with pytest.raises(ArchiveError, match="archive prefix"):
        await archive.list("../")


# A child process that writes a 4 MiB object with its file size limited to 1 MiB: the
# write fails half-way. With SIGXFSZ at the kernel's default the process dies on the spot (a
# crash mid-write); ignored (as CPython sets it) the write raises EFBIG and it survives.
_WRITER = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from pathlib import Path
    from tripwire.archive.local import SWEEP_MARKER, LocalArchive

    if sys.argv[2] == "crash":
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    async def main():
        archive = LocalArchive(Path(sys.argv[1]))
        try:
            await archive.put(sys.argv[3], b"n" * (4 << 20), "image/jpeg", {})
        finally:
            await archive.close()

    asyncio.run(main())
    """
)


def _write_in_child(root: Path, mode: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WRITER, str(root), mode, key],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_crash_mid_write_keeps_old_object(archive: LocalArchive) -> None:
    await archive.put(KEY, b"old", "image/jpeg", {"v": "1"})

    done = await asyncio.to_thread(_write_in_child, archive.root, "crash", KEY)

    assert done.returncode < 0, done.stderr  # killed by SIGXFSZ in the middle of the write
    assert await archive.get(KEY) == b"old"
    assert await archive.list("") == [KEY]
    leftovers = [f for f in files_under(archive.root) if f.endswith(".tmp")]
    assert leftovers, "the crash should have left its temporary file behind"
    # The sweep removes temporary files once they are old enough to be orphans.
    for name in leftovers:
        old = time.time() - 2 * 3600
        os.utime(archive.root / name, (old, old))
    assert await archive.sweep() == 0  # no object removed, only the leftovers
    assert files_under(archive.root) == [KEY, f"{KEY}.meta.json"]


async def test_failed_write_cleans_up(archive: LocalArchive) -> None:
    await archive.put(KEY, b"old", "image/jpeg", {"v": "1"})

    done = await asyncio.to_thread(_write_in_child, archive.root, "error", KEY)

    assert done.returncode == 1
    assert "ArchiveError" in done.stderr and KEY in done.stderr
    assert await archive.get(KEY) == b"old"
    assert files_under(archive.root) == [KEY, f"{KEY}.meta.json"]


def backdate(*paths: Path, days: float) -> None:
    when = time.time() - days * 86_400
    for path in paths:
        os.utime(path, (when, when))


async def test_retention_sweep(tmp_path: Path) -> None:
    old_key = frame_key("cam-1", CAPTURE_NS, 1, "image/jpeg")
    new_key = frame_key("cam-1", CAPTURE_NS, 2, "image/jpeg")
    archive = LocalArchive(tmp_path, retention_days=7)
    await archive.put(old_key, b"old", "image/jpeg", {})
    await archive.put(new_key, b"new", "image/jpeg", {})
    await archive.put("other/kept.txt", b"not ours", "text/plain", {})
    backdate(tmp_path / old_key, tmp_path / f"{old_key}.meta.json", tmp_path / "other/kept.txt",
             days=8)  # fmt: skip

    await archive.ensure()  # starts the sweep in the background
    assert archive.sweeping is not None
    await asyncio.wait_for(archive.sweeping, 10)
    await archive.close()

    # Only frames/ and detections/ expire, as with the S3 lifecycle rule.
    kept = [new_key, f"{new_key}.meta.json", "other/kept.txt", "other/kept.txt.meta.json"]
    assert files_under(tmp_path) == sorted(kept)

    # Within the hour another process's ensure() does not walk the folder again...
    again = LocalArchive(tmp_path, retention_days=7)
    try:
        backdate(tmp_path / new_key, days=8)
        await again.ensure()
        assert again.sweeping is None
        assert await again.exists(new_key)
        # ...but an explicit sweep does.
        assert await again.sweep() == 1
        assert await again.list("") == ["other/kept.txt"]
    finally:
        await again.close()


async def test_closed(archive: LocalArchive) -> None:
    await archive.close()
    await archive.close()  # idempotent
    with pytest.raises(ArchiveError, match="closed"):
        await archive.put(KEY, b"x", "image/jpeg", {})
