"""Archive keys: deterministic names, UTC partitions, and the portable key rules."""

from __future__ import annotations

import pytest

from tripwire.archive.keys import (
    check_content_type,
    check_key,
    check_metadata,
    check_prefix,
    detections_key,
    frame_key,
)
from tripwire.errors import ArchiveError, ContractError

NS = 1_000_000_000


@pytest.mark.parametrize(
    ("camera", "capture_ns", "seq", "content_type", "expected"),
    [
        # A typical JPEG: date and hour in UTC, nanoseconds and sequence in the name.
        ("cam-1", 1_700_000_000_123_456_789, 42, "image/jpeg",
         "frames/cam-1/2023-11-14/22/1700000000123456789-42.jpg"),
        # PNG frames keep their own extension.
        ("cam-1", 1_700_000_000_123_456_789, 42, "image/png",
         "frames/cam-1/2023-11-14/22/1700000000123456789-42.png"),
        # The last nanosecond of an hour (and of a year) stays in that hour...
        ("cam-1", 1_704_067_199 * NS + 999_999_999, 7, "image/jpeg",
         "frames/cam-1/2023-12-31/23/1704067199999999999-7.jpg"),
        # ...and the next one opens the next day's hour 00.
        ("cam-1", 1_704_067_200 * NS, 8, "image/jpeg",
         "frames/cam-1/2024-01-01/00/1704067200000000000-8.jpg"),
        # A leap day is a day like any other.
        ("cam-1", 1_709_208_000 * NS, 1, "image/jpeg",
         "frames/cam-1/2024-02-29/12/1709208000000000000-1.jpg"),
        # The epoch: capture_ns is zero-padded to 19 digits so names sort by time.
        ("cam-1", 0, 0, "image/jpeg",
         "frames/cam-1/1970-01-01/00/0000000000000000000-0.jpg"),
        # The largest int64 the contract headers can carry, and '_' in a camera id.
        ("yard_north", 2**63 - 1, 3, "image/jpeg",
         "frames/yard_north/2262-04-11/23/9223372036854775807-3.jpg"),
    ],
)  # fmt: skip
def test_frame_key(
    camera: str, capture_ns: int, seq: int, content_type: str, expected: str
) -> None:
    assert frame_key(camera, capture_ns, seq, content_type) == expected
    # Deterministic: the same frame always gets the same key (a redelivery overwrites).
    assert frame_key(camera, capture_ns, seq, content_type) == expected
    assert check_key(expected) == expected


@pytest.mark.parametrize(
    ("camera", "capture_ns", "seq", "expected"),
    [
        # Same partition and stem as the frame, under detections/ and ending .json.
        ("cam-1", 1_700_000_000_123_456_789, 42,
         "detections/cam-1/2023-11-14/22/1700000000123456789-42.json"),
        # Hour boundary, as for frames.
        ("gate", 1_704_067_200 * NS, 8, "detections/gate/2024-01-01/00/1704067200000000000-8.json"),
    ],
)  # fmt: skip
def test_detections_key(camera: str, capture_ns: int, seq: int, expected: str) -> None:
    assert detections_key(camera, capture_ns, seq) == expected
    frame = frame_key(camera, capture_ns, seq, "image/jpeg")
    assert frame.removeprefix("frames/").removesuffix(".jpg") == expected.removeprefix(
        "detections/"
    ).removesuffix(".json")


@pytest.mark.parametrize(
    ("camera", "capture_ns", "seq", "content_type", "message"),
    [
        # A camera id that would become '..' in a path is refused by the contract's check.
        ("..", 0, 0, "image/jpeg", "camera id"),
        # So is one with a slash (it would add a path level).
        ("a/b", 0, 0, "image/jpeg", "camera id"),
        # Upper case is not a valid camera id either.
        ("Cam1", 0, 0, "image/jpeg", "camera id"),
        # Negative capture time: before the epoch, never from a real clock.
        ("cam-1", -1, 0, "image/jpeg", "capture_ns"),
        # Beyond int64: the headers could not have carried it.
        ("cam-1", 2**63, 0, "image/jpeg", "capture_ns"),
        # Negative sequence number.
        ("cam-1", 0, -1, "image/jpeg", "seq"),
        # Only the contract's image types are archived as frames.
        ("cam-1", 0, 0, "image/gif", "content type"),
    ],
)  # fmt: skip
def test_frame_key_refuses(
    camera: str, capture_ns: int, seq: int, content_type: str, message: str
) -> None:
    with pytest.raises(ContractError, match=message):
        frame_key(camera, capture_ns, seq, content_type)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("frames/cam-1/2024-01-01/00/1-2.jpg", True),  # what frame_key builds
        ("a", True),  # one segment is a key
        ("camera=cam-1/x.json", True),  # '=' for hive-style partitions
        ("", False),  # empty
        ("/etc/passwd", False),  # absolute path
        ("../outside", False),  # parent directory
        ("frames/../../outside", False),  # parent directory in the middle
        ("frames/./x.jpg", False),  # current directory
        ("frames//x.jpg", False),  # empty segment
        ("frames/", False),  # trailing slash: a folder, not an object
        ("frames/.x.jpg.abc.tmp", False),  # the local backend's temporary files
        ("frames/x.jpg.meta.json", False),  # the local backend's metadata sidecar
        ("frames\\x.jpg", False),  # backslash (a separator on Windows)
        ("frames/x y.jpg", False),  # space
        ("frames/x\x00.jpg", False),  # NUL byte
        ("frames/é.jpg", False),  # non-ASCII
        ("a" * 1025, False),  # longer than S3 allows
    ],
)
def test_check_key(key: str, ok: bool) -> None:
    if ok:
        assert check_key(key) == key
    else:
        with pytest.raises(ArchiveError, match="archive key"):
            check_key(key)


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("", True),  # everything
        ("frames/", True),  # one folder
        ("frames/cam-1/2024-0", True),  # a partial segment
        ("/frames", False),  # absolute
        ("../", False),  # parent directory
        ("frames//", False),  # empty segment
        ("frames/.hidden", False),  # no key has a segment starting with '.'
    ],
)
def test_check_prefix(prefix: str, ok: bool) -> None:
    if ok:
        assert check_prefix(prefix) == prefix
    else:
        with pytest.raises(ArchiveError, match="archive prefix"):
            check_prefix(prefix)


def test_metadata_is_lowercased() -> None:
    assert check_metadata({"Tripwire-Camera": "cam-1", "seq": "5"}) == {
        "tripwire-camera": "cam-1",
        "seq": "5",
    }


@pytest.mark.parametrize(
    "metadata",
    [
        {"a_b": "x"},  # '_' in a header name is dropped by some proxies
        {"a b": "x"},  # space in a name
        {"": "x"},  # empty name
        {"Seq": "1", "seq": "2"},  # the same name twice once case is ignored
        {"k": "é"},  # non-ASCII value: HTTP headers carry ASCII
        {"k": "a\nb"},  # a newline would split the header
        {"k": " padded "},  # surrounding blanks do not survive HTTP
        {"k": "x" * 2100},  # more than S3's 2 KiB of user metadata
    ],
)
def test_check_metadata_refuses(metadata: dict[str, str]) -> None:
    with pytest.raises(ArchiveError, match="metadata"):
        check_metadata(metadata)


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("image/jpeg", True),
        ("application/json", True),
        ("text/plain; charset=utf-8", True),  # parameters are allowed
        ("jpeg", False),  # no subtype
        ("", False),  # empty
        ("image/jpeg\r\nX-Evil: 1", False),  # header injection
    ],
)
def test_check_content_type(content_type: str, ok: bool) -> None:
    if ok:
        assert check_content_type(content_type) == content_type
    else:
        with pytest.raises(ArchiveError, match="content type"):
            check_content_type(content_type)
