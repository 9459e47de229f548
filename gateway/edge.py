"""The edge pipeline behind the HTTP API: authenticate, run motion, publish motion frames.

Frames of one camera are analysed strictly in order (a per-camera lock) on a thread pool,
since the motion function is CPU work that OpenCV runs with the GIL released. Publishing
happens outside that lock so a slow broker confirm does not hold up the next analysis.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from functions.motion import MotionDetector, MotionResult
from functions.motion.probe import probe
from functions.motion.publisher import MotionPublisher, frame_meta
from gateway.metrics import GatewayMetrics
from tripwire.brokers import Broker
from tripwire.camera_config import CameraConfig, CamerasFile
from tripwire.errors import BrokerError, PayloadTooLarge, TripwireError
from tripwire.tokens import verify

T = TypeVar("T")


class EdgeError(TripwireError):
    """Root of the errors the API layer turns into HTTP answers."""


class UnknownCamera(EdgeError):
    pass


class Unauthorized(EdgeError):
    pass


class BrokerDown(EdgeError):
    pass


@dataclass
class CameraState:
    config: CameraConfig
    detector: MotionDetector
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # The last token that verified against token_hash: a camera sends the same token with
    # every frame, and comparing it (in constant time) saves a SHA-256 per frame.
    token: bytes = b""


@dataclass(frozen=True)
class Ingested:
    seq: int
    result: MotionResult
    published: bool


class Edge:
    def __init__(
        self,
        cameras: CamerasFile,
        broker: Broker,
        metrics: GatewayMetrics,
        threads: int,
        motion_gate: bool = True,
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        # False: every frame is published, the motion function never runs (the always-on
        # CCTV baseline of ``tripwire bench energy``).
        self.motion_gate = motion_gate
        self._cameras = {c.id: CameraState(c, MotionDetector(c)) for c in cameras.cameras}
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="motion")
        # One publish, wake and event-message path with pull mode (tripwire cameras).
        self.publisher = MotionPublisher(
            broker,
            lambda: metrics.rejects.labels("wake_failed").inc(),
            lambda: metrics.rejects.labels("event_message_failed").inc(),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def report_status(self) -> None:
        """Publish each active camera's status (called every few seconds)."""
        await self.publisher.report_status()

    def authenticate(self, camera_id: str, token: str | None) -> CameraState:
        """Return the camera's state; raise UnknownCamera or Unauthorized."""
        state = self._cameras.get(camera_id)
        if state is None:
            raise UnknownCamera(f"camera {camera_id[:64]!r} is not configured")
        if token:
            given = token.encode()
            if state.token and hmac.compare_digest(given, state.token):
                return state
            if verify(token, state.config.token_hash):
                state.token = given
                return state
        raise Unauthorized(f"camera {camera_id}: missing or wrong bearer token")

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def ingest(
        self,
        state: CameraState,
        body: bytes,
        content_type: str,
        capture_ns: int | None,
        seq: int | None,
    ) -> Ingested:
        """Analyse one frame and publish it when it is a motion frame.

        Raises FrameError (undecodable) or BrokerDown (publish not confirmed).
        """
        receive_ns = time.time_ns()
        capture = capture_ns if capture_ns is not None else receive_ns
        timed = capture_ns is not None  # else paced on arrival, bursts allowed
        if not self.broker.connected:
            raise BrokerDown("broker is not connected")
        async with state.lock:
            frame_seq = seq if seq is not None else next(state.seq)
            started = time.perf_counter()
            detector = state.detector
            if not self.motion_gate:
                result = _ungated(body)
            elif detector.analysis_due(capture, timed):
                result = await self._run(lambda: detector.process(body, capture, timed))
            else:
                # Paced out by analysis_fps: a header read, cheaper than a thread hand-off.
                result = detector.process(body, capture, timed)
            self.metrics.motion_seconds.observe(time.perf_counter() - started)
        camera = state.config.id
        self.metrics.frames.labels(camera).inc()
        if result.event_opened:
            self.metrics.events.labels(camera).inc()
        self.publisher.observe(camera, result, capture)
        if result.relearn:
            self.metrics.relearns.labels(camera, result.relearn).inc()
        if not result.publish:
            return Ingested(frame_seq, result, False)
        meta = frame_meta(camera, frame_seq, capture, receive_ns, result, content_type)
        started = time.perf_counter()
        try:
            await self.publisher.publish(meta, body, result.event_opened)
        except PayloadTooLarge:
            raise  # permanent: the API answers 413, not 503
        except BrokerError as exc:
            raise BrokerDown(f"camera {camera}: frame {frame_seq}: {exc}") from exc
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        self.metrics.motion_frames.labels(camera).inc()
        return Ingested(frame_seq, result, True)


def _ungated(body: bytes) -> MotionResult:
    """The answer for a frame published without motion analysis (``motion_gate`` false):
    no motion claimed, no event, published; only the header is read (FrameError if bad)."""
    info = probe(body)
    return MotionResult(
        motion=False,
        publish=True,
        score=0.0,
        boxes=(),
        event_id=None,
        event_opened=False,
        event_closed=False,
        analysed=False,
        calibrating=False,
        width=info.width,
        height=info.height,
        content_type=info.content_type,
    )
