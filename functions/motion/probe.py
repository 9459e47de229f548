"""Read a frame's size and type from its header bytes, without decoding any pixels.

The size is needed before decoding (it picks the reduced-decode factor) and travels in the
message headers, so it must come from the bytes the camera sent: the JPEG SOF segment or
the PNG IHDR chunk. A truncated frame is refused here, cheaply, instead of being decoded
into a half-gray picture that would look like motion.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tripwire.errors import FrameError

JPEG = "image/jpeg"
PNG = "image/png"

# Frames larger than this are refused before any decoding (decompression bombs).
MAX_SIDE = 16384

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xae\x42\x60\x82"
# Start-of-frame markers: baseline, extended, progressive, lossless, arithmetic variants.
# C4 (DHT), C8 (JPG extension) and CC (DAC) share the range but are not frames.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Encoders and some cameras pad or append a trailer after EOI; look this far back for it.
_TAIL = 1024


@dataclass(frozen=True, slots=True)
class FrameInfo:
    width: int
    height: int
    content_type: str


def probe(data: bytes) -> FrameInfo:
    """Width, height and content type of a JPEG or PNG; raise FrameError naming the problem."""
    if data[:2] == b"\xff\xd8":
        info = _probe_jpeg(data)
    elif data[:8] == _PNG_SIGNATURE:
        info = _probe_png(data)
    elif not data:
        raise FrameError("empty frame")
    else:
        raise FrameError(f"not a JPEG or PNG (starts with {data[:4].hex()})")
    if not (0 < info.width <= MAX_SIDE and 0 < info.height <= MAX_SIDE):
        raise FrameError(f"bad image size {info.width}x{info.height} (max side {MAX_SIDE})")
    return info


def _probe_jpeg(data: bytes) -> FrameInfo:
    pos, end = 2, len(data)
    while True:
        # Markers may be preceded by any number of 0xFF fill bytes.
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            raise FrameError("truncated JPEG: header ends before the frame size (SOF)")
        if data[pos - 1] != 0xFF:
            raise FrameError(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise FrameError("corrupt JPEG: no frame size (SOF) before the image data")
        if pos + 2 > end:
            raise FrameError("truncated JPEG: header ends inside a segment")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise FrameError(f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker in _SOF:
            if pos + 7 > end:
                raise FrameError("truncated JPEG: header ends inside the frame size (SOF)")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0:
                # A zero height means "defined by a later DNL marker": never seen from
                # cameras, and unsupported by OpenCV's decoder.
                raise FrameError("unsupported JPEG: height defined by DNL")
            break
        pos += length
    # The entropy-coded data cannot contain FF D9 (a data FF is always followed by 00 or
    # a restart marker), so a missing EOI near the end means the frame was cut short.
    if data.rfind(b"\xff\xd9", max(0, end - _TAIL)) < 0:
        raise FrameError("truncated JPEG: no end-of-image marker")
    return FrameInfo(width, height, JPEG)


def _probe_png(data: bytes) -> FrameInfo:
    if len(data) < 33:
        raise FrameError("truncated PNG: header ends before the image size (IHDR)")
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        raise FrameError("corrupt PNG: first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    if data.rfind(_PNG_IEND, max(0, len(data) - _TAIL)) < 0:
        raise FrameError("truncated PNG: no IEND chunk")
    return FrameInfo(width, height, PNG)
