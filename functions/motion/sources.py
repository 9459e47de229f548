"""Video sources of pull mode: one connection to a camera, file or device.

A :class:`CaptureSource` reads through OpenCV's FFmpeg backend (``rtsp://``, an ``http(s)``
MJPEG stream, a file, ``/dev/videoN`` or a camera index); a :class:`SnapshotSource` GETs one
JPEG/PNG per period from an ``http(s)`` snapshot URL and hands over its bytes untouched (no
decode and re-encode for a frame that is published). Either one's ``read`` returns ``None``
when the connection dropped or a file ended; the reconnecting loop is in
:mod:`functions.motion.pull`. Every error names the source with its password redacted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal, Protocol, cast

import cv2
import httpx
import numpy as np
import numpy.typing as npt

from tripwire.errors import TripwireError
from tripwire.urls import redact

Frame = npt.NDArray[np.uint8]
Image = Frame | bytes  # decoded (capture) or encoded as the camera sent it (snapshot)
Kind = Literal["auto", "stream", "snapshot"]

# A dead camera must not block a read forever: FFmpeg gives up after these (per call).
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 5_000
SNAPSHOT_FPS = 2.0  # a snapshot URL's default poll rate


class SourceError(TripwireError):
    """A video source cannot be opened or stopped delivering frames."""


class SourceMissing(SourceError):
    """A file source does not exist: retrying cannot help."""


class Source(Protocol):
    """One open connection; ``read`` returns None when it dropped (or a file ended)."""

    is_file: bool
    fps: float  # a file's own frame rate (its frames are stamped from it); 0 when live

    def read(self) -> Image | None: ...

    def close(self) -> None: ...


def is_file_source(source: str) -> bool:
    return "://" not in source and not source.startswith("/dev/") and not source.isdigit()


class CaptureSource:
    """OpenCV ``VideoCapture`` with open and read timeouts."""

    def __init__(self, source: str) -> None:
        self.is_file = is_file_source(source)
        # An image sequence ("frames/%04d.jpg") is a file source that is not one file.
        if self.is_file and "%" not in source and not Path(source).is_file():
            raise SourceMissing(f"video source {source}: no such file")
        if source.startswith("rtsp"):
            # TCP interleaving: no lost UDP packets (torn frames) and one port through NAT.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        if source.isdigit():
            self._cap = cv2.VideoCapture(int(source))
        else:
            timeouts = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                OPEN_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                READ_TIMEOUT_MS,
            ]
            api = cv2.CAP_ANY if source.startswith("/dev/") else cv2.CAP_FFMPEG
            self._cap = cv2.VideoCapture(source, api, timeouts)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"video source {redact(source)}: cannot be opened")
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self.fps = fps if fps and fps == fps and fps <= 1000 else (25.0 if self.is_file else 0.0)

    def read(self) -> Frame | None:
        ok, frame = self._cap.read()
        return cast(Frame, frame) if ok and frame is not None else None

    def close(self) -> None:
        self._cap.release()


class SnapshotSource:
    """GET one image per ``1/fps`` seconds; a failed GET is a drop (the caller reconnects)."""

    is_file = False
    fps = 0.0

    def __init__(self, url: str, fps: float | None) -> None:
        self._url = url
        self._period_s = 1.0 / (fps or SNAPSHOT_FPS)
        self._next = time.monotonic()
        self._client = httpx.Client(timeout=READ_TIMEOUT_MS / 1000, follow_redirects=True)

    def read(self) -> bytes | None:
        wait = self._next - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next = max(self._next + self._period_s, time.monotonic())
        try:
            answer = self._client.get(self._url)
        except httpx.HTTPError:
            return None
        if answer.status_code != 200 or not answer.content:
            return None
        return answer.content

    def close(self) -> None:
        self._client.close()


def resolve_kind(url: str, kind: Kind) -> Literal["stream", "snapshot"]:
    """``auto``: an http(s) URL that answers with one image is a snapshot URL, else a stream."""
    if kind != "auto":
        return kind
    if not url.startswith(("http://", "https://")):
        return "stream"
    try:
        with httpx.stream("GET", url, timeout=OPEN_TIMEOUT_MS / 1000) as answer:
            content_type = answer.headers.get("content-type", "")
    except httpx.HTTPError as exc:
        raise SourceError(f"video source {redact(url)}: {type(exc).__name__}") from None
    return "snapshot" if content_type.startswith("image/") else "stream"


def open_source(url: str, kind: Kind = "stream", fps: float | None = None) -> Source:
    """Connect to ``url``; raise SourceError when it cannot be opened now."""
    if resolve_kind(url, kind) == "snapshot":
        source = SnapshotSource(url, fps)
        first = source.read()
        if first is None:
            source.close()
            raise SourceError(f"video source {redact(url)}: no image")
        return _Primed(source, first)
    return CaptureSource(url)


class _Primed:
    """A snapshot source whose first image, fetched to check the URL, is read first."""

    is_file = False
    fps = 0.0

    def __init__(self, source: SnapshotSource, first: bytes) -> None:
        self._source = source
        self._first: bytes | None = first

    def read(self) -> bytes | None:
        first, self._first = self._first, None
        return first if first is not None else self._source.read()

    def close(self) -> None:
        self._source.close()
