"""Pull mode: read a video source with OpenCV and run motion on its frames.

The source is a file, an ``rtsp://``/``http://`` URL, a ``/dev/videoN`` device or a camera
index (``"0"``). Frames arrive decoded, so motion skips the JPEG decode
(:meth:`MotionDetector.process_array`); only frames to publish are JPEG-encoded.

Capture time: a file's frames are stamped from its frame rate (frame k at start + k/fps),
so a 25 fps clip is paced as 25 fps even when it is read faster than real time; live
sources are stamped with the wall clock when the frame is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, cast

import cv2
import numpy as np
import numpy.typing as npt

from functions.motion.detector import MotionDetector, MotionResult
from tripwire.config import CameraConfig
from tripwire.errors import FrameError, TripwireError
from tripwire.urls import redact

Frame = npt.NDArray[np.uint8]


class Pulled(NamedTuple):
    """One frame read from the source: its decision, and its JPEG when it is to be published."""

    result: MotionResult
    jpeg: bytes | None
    seq: int  # frame number in the source (the published sequence number)
    capture_ns: int


OnResult = Callable[[Pulled], None]


class SourceError(TripwireError):
    """A video source cannot be opened or stopped delivering frames."""


def open_source(source: str) -> tuple[cv2.VideoCapture, bool]:
    """Open ``source``; return the capture and whether it is a file (finite, has an fps)."""
    target: str | int = int(source) if source.isdigit() else source
    is_file = isinstance(target, str) and "://" not in target and not target.startswith("/dev/")
    # An image sequence ("frames/%04d.jpg") is a file source that is not one file.
    if is_file and "%" not in source and not Path(source).is_file():
        raise SourceError(f"video source {source}: no such file")
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        raise SourceError(f"video source {redact(source)}: cannot be opened")
    return cap, is_file


def iter_pull(
    source: str,
    camera: CameraConfig,
    *,
    jpeg_quality: int = 80,
    max_frames: int | None = None,
    realtime: bool = False,
    start_ns: int | None = None,
) -> Iterator[Pulled]:
    """Yield a :class:`Pulled` per frame (JPEG only when ``result.publish``).

    ``realtime`` paces a file at its frame rate (for demos); live sources pace themselves.
    Ends at the end of a file or after ``max_frames``; raises SourceError when a live
    source stops delivering.
    """
    cap, is_file = open_source(source)
    detector = MotionDetector(camera)
    fps = cap.get(cv2.CAP_PROP_FPS) if is_file else 0.0
    if not fps or fps != fps or fps > 1000:  # missing or nonsense frame rate
        fps = 25.0
    period_ns = round(1e9 / fps)
    origin = time.time_ns() if start_ns is None else start_ns
    wall_origin = time.monotonic_ns()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                if is_file:
                    return
                raise SourceError(f"video source {redact(source)}: no frame after {count}")
            if is_file:
                capture_ns = origin + count * period_ns
                if realtime:
                    ahead = count * period_ns - (time.monotonic_ns() - wall_origin)
                    if ahead > 0:
                        time.sleep(ahead / 1e9)
            else:
                capture_ns = time.time_ns()
            result = detector.process_array(cast(Frame, frame), capture_ns)
            body = None
            if result.publish:
                ok, buf = cv2.imencode(".jpg", frame, params)
                if not ok:
                    raise FrameError(f"video source {redact(source)}: frame {count}: encode failed")
                body = buf.tobytes()
            yield Pulled(result, body, count, capture_ns)
            count += 1
    finally:
        cap.release()


def run_pull(
    source: str,
    camera: CameraConfig,
    on_result: OnResult,
    *,
    jpeg_quality: int = 80,
    max_frames: int | None = None,
    realtime: bool = False,
) -> int:
    """Feed every :class:`Pulled` frame to ``on_result``; return the frame count."""
    count = 0
    for pulled in iter_pull(
        source, camera, jpeg_quality=jpeg_quality, max_frames=max_frames, realtime=realtime
    ):
        on_result(pulled)
        count += 1
    return count
