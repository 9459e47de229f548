"""The Archive Protocol's contract, one suite run over both adapters: the local folder and S3
(a real SeaweedFS server). What only one has (sidecar files and atomic renames, buckets,
lifecycle rules and outages) is tested in test_archive_local.py and test_archive_s3.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import frames
from tests.s3_server import SeaweedS3
from tripwire.archive import Archive, frame_key
from tripwire.archive.local import LocalArchive
from tripwire.archive.s3 import S3Archive
from tripwire.errors import ArchiveError, ArchiveUnavailable

CAPTURE_NS = 1_700_000_000_123_456_789
KEY = frame_key("cam-1", CAPTURE_NS, 42, "image/jpeg")
# How each adapter says that an object is not there.
MISSING = {"local": "no such object", "s3": "NoSuchKey"}


@pytest.fixture(params=["local", "s3"])
async def archive(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> AsyncIterator[Archive]:
    opened: Archive
    if request.param == "local":
        opened = LocalArchive(tmp_path / "archive", fsync=True)
    else:
        server: SeaweedS3 = request.getfixturevalue("seaweed_s3")
        opened = S3Archive(server.settings(f"c-{unique}"), retry_max_s=5)
    await opened.ensure()
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return frames.jpeg(frames.background(320, 240))


async def test_is_an_archive(archive: Archive) -> None:
    assert isinstance(archive, Archive)
    assert archive.name in MISSING


async def test_round_trip(archive: Archive, jpeg: bytes) -> None:
    await archive.put(KEY, jpeg, "image/jpeg", {"Tripwire-Camera": "cam-1", "Tripwire-Seq": "42"})

    assert await archive.get(KEY) == jpeg
    assert await archive.exists(KEY)
    assert not await archive.exists(KEY.replace("-42.", "-43."))
    assert await archive.list("frames/") == [KEY]
    assert await archive.list("frames/cam-1/2023-11-14/2") == [KEY]  # partial segment
    assert await archive.list("frames/cam-2/") == []
    assert await archive.list("detections/") == []


async def test_overwrite_leaves_one_object(archive: Archive, jpeg: bytes) -> None:
    await archive.put(KEY, b"first", "image/jpeg", {"seq": "1"})
    await archive.put(KEY, jpeg, "image/png", {"seq": "2"})

    assert await archive.get(KEY) == jpeg
    assert await archive.list("") == [KEY]


async def test_concurrent_puts(archive: Archive) -> None:
    keys = [frame_key("cam-1", CAPTURE_NS + i, i, "image/jpeg") for i in range(20)]

    await asyncio.gather(
        *(archive.put(k, f"frame {i}".encode(), "image/jpeg", {}) for i, k in enumerate(keys))
    )

    assert await archive.list("frames/cam-1/") == sorted(keys)
    got = await asyncio.gather(*(archive.get(k) for k in keys))
    assert got == [f"frame {i}".encode() for i in range(20)]


async def test_a_missing_object_is_a_permanent_error(archive: Archive) -> None:
    with pytest.raises(ArchiveError, match=MISSING[archive.name]) as caught:
        await archive.get(KEY)
    assert not isinstance(caught.value, ArchiveUnavailable)


@pytest.mark.parametrize("key", ["../x.jpg", "/tmp/x.jpg", "frames/./x.jpg"])
async def test_an_invalid_key_is_refused(archive: Archive, key: str) -> None:
    with pytest.raises(ArchiveError, match="archive key"):
        await archive.put(key, b"x", "image/jpeg", {})
    with pytest.raises(ArchiveError, match="archive key"):
        await archive.get(key)
