"""Pull mode: read a video source, reconnect when it drops, run motion on its frames.

The source is anything :mod:`functions.motion.sources` opens (``rtsp://``, an ``http(s)``
stream or snapshot URL, a file, ``/dev/videoN``, a camera index). A live source that drops
(camera rebooted, RTSP server restarted, network gone) is reconnected with exponential backoff,
for ever: pull mode never exits on a drop. Each camera keeps a :class:`PullState` (connected,
retrying, last frame, reconnects) that ``tripwire cameras`` exports as metrics.

Frames of a capture arrive decoded, so motion skips the JPEG decode
(:meth:`MotionDetector.process_array`) and only frames to publish are JPEG-encoded; snapshot
frames arrive as JPEG/PNG bytes and are analysed and published as they came.

Capture time: a file's frames are stamped from its frame rate (frame k at start + k/fps),
so a 25 fps clip is paced as 25 fps even when it is read faster than real time; live
sources are stamped with the wall clock when the frame is read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import cv2

from functions.motion.gate import MotionDetector, MotionResult
from functions.motion.pacing import Pacer
from functions.motion.probe import probe
from functions.motion.sources import (
    Image,
    Kind,
    Source,
    SourceError,
    SourceMissing,
    open_source,
)
from tripwire.camera_config import CameraConfig
from tripwire.errors import FrameError
from tripwire.urls import redact

__all__ = ["Backoff", "PullState", "Pulled", "SourceError", "iter_pull", "run_pull"]

log = logging.getLogger(__name__)

Status = Literal["connecting", "connected", "retrying", "ended"]


class Pulled(NamedTuple):
    """One frame read from the source: its decision, and its bytes when it is to be published."""

    result: MotionResult
    jpeg: bytes | None  # JPEG (or the snapshot's PNG) when result.publish, else None
    seq: int  # frame number since the puller started (the published sequence number)
    capture_ns: int
    content_type: str = "image/jpeg"


OnResult = Callable[[Pulled], None]


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial_s`` doubling up to ``max_s`` (reset by a frame read)."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** max(0, failures - 1)))


@dataclass
class PullState:
    """What a pulled camera is doing now; written by the reader thread, read by anyone."""

    camera: str
    source: str  # redacted
    status: Status = "connecting"
    frames: int = 0
    last_frame_ns: int | None = None  # wall clock of the last frame read
    connects: int = 0  # successful connections, the first included
    drops: int = 0  # connections lost (or failed) since start
    retry_in_s: float = 0.0
    last_error: str | None = None

    def set(self, status: Status, error: str | None = None, retry_in_s: float = 0.0) -> None:
        if status != self.status:
            # "connecting" between retries would double the lines of a long outage.
            level = {"retrying": logging.WARNING, "connecting": logging.DEBUG}.get(
                status, logging.INFO
            )
            why = f" ({error}); retry in {retry_in_s:.1f}s" if error else ""
            log.log(level, "camera %s: %s %s%s", self.camera, status, self.source, why)
        self.status = status
        self.retry_in_s = retry_in_s
        if error is not None:
            self.last_error = error


def iter_frames(
    url: str,
    state: PullState,
    *,
    kind: Kind = "stream",
    fps: float | None = None,
    backoff: Backoff | None = Backoff(),
    stop: threading.Event | None = None,
) -> Iterator[tuple[Source, Image]]:
    """Yield (source, image) for every frame; reconnect a live source when it drops.

    A missing file raises SourceError at once (retrying cannot fix it). With ``backoff``
    None a live source that fails or drops raises SourceError instead of reconnecting.
    Ends when a file ends or ``stop`` is set (checked between frames and during backoff).
    """
    stop = stop or threading.Event()
    failures = 0
    while not stop.is_set():
        state.set("connecting")
        try:
            source = open_source(url, kind, fps)
        except SourceError as exc:
            if backoff is None or isinstance(exc, SourceMissing):
                raise
            failures += 1
            state.drops += 1
            _wait(state, stop, backoff.delay(failures), str(exc))
            continue
        state.connects += 1
        state.set("connected")
        try:
            while not stop.is_set():
                image = source.read()
                if image is None:
                    break
                failures = 0
                state.frames += 1
                state.last_frame_ns = time.time_ns()
                yield source, image
        finally:
            source.close()
        if source.is_file:
            state.set("ended")
            return
        if stop.is_set():
            return
        state.drops += 1
        error = f"no frame after {state.frames}"
        if backoff is None:
            raise SourceError(f"video source {state.source}: {error}")
        failures += 1
        _wait(state, stop, backoff.delay(failures), error)


def _wait(state: PullState, stop: threading.Event, delay_s: float, error: str) -> None:
    state.set("retrying", error, delay_s)
    stop.wait(delay_s)


def iter_pull(
    source: str,
    camera: CameraConfig,
    *,
    kind: Kind = "stream",
    fps: float | None = None,
    jpeg_quality: int = 80,
    max_frames: int | None = None,
    realtime: bool = False,
    start_ns: int | None = None,
    backoff: Backoff | None = None,
    state: PullState | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Pulled]:
    """Yield a :class:`Pulled` per frame read (bytes only when ``result.publish``).

    ``realtime`` paces a file at its frame rate (for demos); live sources pace themselves.
    ``fps`` drops a stream's frames above that rate before analysis. Ends at the end of a
    file, after ``max_frames`` or on ``stop``; with ``backoff`` a live source is reconnected
    when it drops, without it a drop raises SourceError.
    """
    state = state or PullState(camera.id, redact(source))
    detector = MotionDetector(camera)
    pace = Pacer(fps or 0.0)
    origin = time.time_ns() if start_ns is None else start_ns
    wall_origin = time.monotonic_ns()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    count = 0
    if max_frames is not None and max_frames <= 0:
        return
    for src, image in iter_frames(source, state, kind=kind, fps=fps, backoff=backoff, stop=stop):
        if src.is_file:
            period_ns = round(1e9 / src.fps)
            capture_ns = origin + count * period_ns
            if realtime:
                ahead = count * period_ns - (time.monotonic_ns() - wall_origin)
                if ahead > 0:
                    time.sleep(ahead / 1e9)
        else:
            capture_ns = time.time_ns()
            if not pace.due(capture_ns):
                continue  # above the configured rate: dropped before any analysis
            pace.take(capture_ns)
        if isinstance(image, bytes):
            try:
                content_type = probe(image).content_type
                result = detector.process(image, capture_ns)
            except FrameError as exc:  # one bad snapshot (an HTML error page): skip it
                state.last_error = f"frame {count}: {exc}"
                continue
            body = image if result.publish else None
        else:
            result = detector.process_array(image, capture_ns)
            body, content_type = None, "image/jpeg"
            if result.publish:
                ok, buf = cv2.imencode(".jpg", image, params)
                if not ok:
                    raise FrameError(f"video source {state.source}: frame {count}: encode failed")
                body = buf.tobytes()
        yield Pulled(result, body, count, capture_ns, content_type)
        count += 1
        if count == max_frames:
            return  # before reading one more frame


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
