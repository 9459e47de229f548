"""An event's archived frames, with their detections drawn, assembled into a video a browser
plays, cached in the archive.

What plays: the OpenCV wheel's FFmpeg writes VP8 in WebM (``video/webm``), which Chromium
plays; it has no H.264 encoder (``avc1`` does not open) and Chromium does not play its MPEG-4
Part 2 (``mp4v``). When VP8 cannot be written the clip is Motion-JPEG in AVI
(``video/x-msvideo``), which browsers download rather than play; the type says which.

Only analysed frames are archived, and the keep policy may drop some of those: the clip is
made of what is there, and :class:`Clip` says how many frames are missing (never filled in).
A clip of a finished event is stored beside its frames under
``clips/<camera>/<YYYY-MM-DD>/<HH>/<event id>.<webm|avi>``; an open event's is rebuilt.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from console.snapshot import draw_boxes
from tripwire.errors import FrameError

CLIPS_PREFIX = "clips/"
FORMATS = (("webm", "VP80", "video/webm"), ("avi", "MJPG", "video/x-msvideo"))
TYPES = {ext: content_type for ext, _, content_type in FORMATS}
MAX_WIDTH = 1280


@dataclass(frozen=True)
class Clip:
    data: bytes
    content_type: str
    frames: int  # frames in the clip
    missing: int  # analysed frames the archive does not hold (keep policy)
    fps: float
    cached: bool = False


def clip_key(camera: str, start_ns: int, event_id: str, ext: str) -> str:
    when = datetime.fromtimestamp(start_ns // 1_000_000_000, tz=UTC)
    # Event ids may hold ':', which archive keys do not; '=' never occurs in an id.
    name = event_id.replace(":", "=")
    return f"{CLIPS_PREFIX}{camera}/{when:%Y-%m-%d}/{when:%H}/{name}.{ext}"


def clip_fps(capture_ns: Sequence[int]) -> float:
    """The frame rate that plays the frames over the time they were captured in (1-30)."""
    if len(capture_ns) < 2:
        return 2.0
    span_s = (capture_ns[-1] - capture_ns[0]) / 1e9
    return float(min(30.0, max(1.0, (len(capture_ns) - 1) / span_s if span_s > 0 else 30.0)))


def encode_clip(frames: Sequence[tuple[bytes, Sequence[Any]]], fps: float) -> tuple[bytes, str]:
    """(video, content type) of the frames with their boxes drawn, scaled to the first
    frame's size (at most 1280 wide, even dimensions as the encoders want)."""
    images = []
    for data, boxes in frames:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            draw_boxes(image, boxes)
            images.append(image)
    if not images:
        raise FrameError("none of the archived frames could be decoded")
    h, w = images[0].shape[:2]
    if w > MAX_WIDTH:
        w, h = MAX_WIDTH, round(h * MAX_WIDTH / w)
    size = (w - w % 2, h - h % 2)
    with tempfile.TemporaryDirectory(prefix="tw-clip-") as folder:
        for ext, fourcc, content_type in FORMATS:
            path = os.path.join(folder, f"clip.{ext}")
            writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*fourcc), fps, size)
            if not writer.isOpened():
                continue
            try:
                for image in images:
                    if (image.shape[1], image.shape[0]) != size:
                        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                    writer.write(image)
            finally:
                writer.release()
            with open(path, "rb") as fh:
                data = fh.read()
            if data:
                return data, content_type
    raise FrameError("no video encoder could be opened (neither VP8/WebM nor MJPEG/AVI)")
