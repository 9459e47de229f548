"""The one image part of a ``multipart/form-data`` upload (an IP camera's "HTTP upload").

Many cameras can only POST a form: the JPEG as a file part, sometimes beside text fields
(a camera name, a timestamp). The body is already in memory and bounded by
``max_frame_bytes``, so it is parsed from bytes with python-multipart (what FastAPI uses)
without spooling to disk. A part is an image by its declared type, or by its first bytes
when the camera declares ``application/octet-stream``.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header

from tripwire.contract import CONTENT_TYPES
from tripwire.errors import FrameError

MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
# A camera sends one image and a few fields; more parts than this is not a camera.
_MAX_PARTS = 16


class _Part:
    __slots__ = ("chunks", "content_type")

    def __init__(self) -> None:
        self.content_type = ""
        self.chunks: list[bytes] = []


def image_part(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The image bytes and media type of the single image part; FrameError otherwise."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise FrameError("multipart/form-data without a boundary")
    parts: list[_Part] = []
    header: list[bytes] = [b"", b""]

    def part_begin() -> None:
        if len(parts) >= _MAX_PARTS:
            raise FrameError(f"multipart body with over {_MAX_PARTS} parts")
        parts.append(_Part())

    def header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def header_end() -> None:
        if header[0].lower() == b"content-type":
            media, _ = parse_options_header(header[1])
            parts[-1].content_type = media.decode("latin-1").lower()
        header[0], header[1] = b"", b""

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": part_begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_part_data": part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except FrameError:
        raise
    except Exception as exc:  # python-multipart raises its own errors and ValueError
        raise FrameError(f"malformed multipart body: {exc}") from None
    images = []
    for part in parts:
        data = b"".join(part.chunks)
        media = part.content_type
        if media not in CONTENT_TYPES:
            media = next((t for t, magic in MAGIC.items() if data.startswith(magic)), "")
        if media:
            images.append((data, media))
    if len(images) != 1:
        raise FrameError(
            f"multipart body with {len(images)} image parts; send exactly one JPEG or PNG"
        )
    return images[0]
