"""Object keys and what may go into an object's name and metadata.

Keys are deterministic, built only from a frame's identity (camera, capture time, sequence
number), so the detector writing a redelivered frame overwrites the object it wrote the
first time. The date and hour partitions (UTC, from the capture time) keep listings of one
camera-hour small and make a retention sweep a matter of prefixes::

    frames/<camera>/<YYYY-MM-DD>/<HH>/<capture_ns>-<seq>.jpg      (.png for PNG)
    detections/<camera>/<YYYY-MM-DD>/<HH>/<capture_ns>-<seq>.json
    detections/<camera>/<YYYY-MM-DD>/<HH>/<capture_ns>-<seq>.<model>.json   (a named model)

A frame is one object whatever number of models read it; each named model's detections of
it are their own object beside it, so one listing of a camera-hour shows them together.

The same rules hold on every backend, so a key that works on the local folder works on S3
and back: a key is ``/``-separated segments of ``A-Z a-z 0-9 . _ = -``, none empty and none
starting with ``.`` (that refuses ``..``, absolute paths, and the local backend's temporary
files), and it does not end with ``.meta.json`` (the local backend's metadata sidecar).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from tripwire.contract import check_camera_id
from tripwire.errors import ArchiveError, ContractError

FRAMES_PREFIX = "frames/"
DETECTIONS_PREFIX = "detections/"
SIDECAR_SUFFIX = ".meta.json"
MAX_KEY_BYTES = 1024  # S3's limit
MAX_METADATA_BYTES = 2048  # S3's limit on user metadata, keys and values together

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}

_MAX_NS = 2**63 - 1  # int64, as the contract headers carry it (UTC year 2262)
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_=-][A-Za-z0-9._=-]*$")
_PARTIAL_RE = re.compile(r"^(?:[A-Za-z0-9_=-][A-Za-z0-9._=-]*)?$")
_META_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_PRINTABLE_RE = re.compile(r"^[\x20-\x7e]*$")
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9.+-]+/[A-Za-z0-9.+-]+(?:;[\x20-\x7e]*)?$")


def _partition(camera: str, capture_ns: int, seq: int) -> str:
    check_camera_id(camera)
    if not 0 <= capture_ns <= _MAX_NS:
        raise ContractError(f"camera {camera}: capture_ns {capture_ns} is out of range")
    if not 0 <= seq <= _MAX_NS:
        raise ContractError(f"camera {camera}: seq {seq} is out of range")
    when = datetime.fromtimestamp(capture_ns // 1_000_000_000, tz=UTC)
    # 19 digits is the width of any int64, so keys of one hour also sort by capture time.
    return f"{camera}/{when:%Y-%m-%d}/{when:%H}/{capture_ns:019d}-{seq}"


def frame_key(camera: str, capture_ns: int, seq: int, content_type: str) -> str:
    """``frames/<camera>/<YYYY-MM-DD>/<HH>/<capture_ns>-<seq>.<jpg|png>`` (UTC)."""
    ext = EXTENSIONS.get(content_type)
    if ext is None:
        raise ContractError(f"camera {camera}: content type {content_type!r} is not archived")
    return f"{FRAMES_PREFIX}{_partition(camera, capture_ns, seq)}.{ext}"


def detections_key(camera: str, capture_ns: int, seq: int, model: str | None = None) -> str:
    """``detections/<camera>/<YYYY-MM-DD>/<HH>/<capture_ns>-<seq>[.<model>].json`` (UTC);
    ``model``: a named model of the models section (None: the one default model)."""
    suffix = f".{model}" if model else ""
    if model is not None and not _SEGMENT_RE.match(model):
        raise ContractError(f"model name {model!r} cannot be part of an archive key")
    return f"{DETECTIONS_PREFIX}{_partition(camera, capture_ns, seq)}{suffix}.json"


def check_key(key: str) -> str:
    """Return ``key`` if it follows the portable key rules, else raise ArchiveError."""
    problem = _key_problem(key)
    if problem:
        raise ArchiveError(f"archive key {key[:200]!r}: {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "empty"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    if key.endswith(SIDECAR_SUFFIX):
        return f"the suffix {SIDECAR_SUFFIX} is reserved for metadata"
    for segment in key.split("/"):
        if not segment:
            return "empty path segment (leading, trailing or double '/')"
        if segment.startswith("."):
            return "a path segment starts with '.' ('..', hidden or temporary name)"
        if not _SEGMENT_RE.match(segment):
            return "use only A-Z, a-z, 0-9, '.', '_', '=', '-' and '/'"
    return None


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if some valid key could start with it ("" lists everything)."""
    *dirs, last = prefix.split("/")
    bad = len(prefix.encode()) > MAX_KEY_BYTES or not _PARTIAL_RE.match(last)
    if bad or any(not d or not _SEGMENT_RE.match(d) for d in dirs):
        raise ArchiveError(f"archive prefix {prefix[:200]!r}: no valid key starts with it")
    return prefix


def check_content_type(content_type: str) -> str:
    if len(content_type) > 255 or not _CONTENT_TYPE_RE.match(content_type):
        raise ArchiveError(f"content type {content_type[:100]!r} is not type/subtype")
    return content_type


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased copy of ``metadata``; S3 sends it as headers, so only short ASCII fits."""
    out: dict[str, str] = {}
    size = 0
    for raw_key, value in metadata.items():
        key = raw_key.lower()
        if not _META_KEY_RE.match(key):
            raise ArchiveError(f"metadata key {raw_key[:80]!r}: use 1-64 of a-z, 0-9 and '-'")
        if key in out:
            raise ArchiveError(f"metadata key {raw_key!r} given twice (keys ignore case)")
        if not _PRINTABLE_RE.match(value) or value != value.strip():
            raise ArchiveError(
                f"metadata {key}: value must be printable ASCII without surrounding blanks"
            )
        out[key] = value
        size += len(key) + len(value)
    if size > MAX_METADATA_BYTES:
        raise ArchiveError(f"metadata is {size} bytes; at most {MAX_METADATA_BYTES} fit")
    return out
