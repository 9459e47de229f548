"""The one publish path of motion frames, shared by the HTTP gateway and pull mode.

A motion frame is published and its confirm awaited; when it is the first frame of a motion
event, the event is recorded on the timeline and a wake message goes out on
``tripwire.wake`` (push activation: a scaled-to-zero detector starts at once instead of at its
next depth poll). The wake is sent after the frame is stored, so the worker it wakes finds
work, and in the background, so a slow broker never holds up the next frame; a lost wake costs
only latency, because the scaler's depth poll still sees the frame.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from functions.motion.detector import MotionResult
from tripwire import timeline
from tripwire.brokers import Broker
from tripwire.contract import WAKE_SUBJECT, FrameMeta, Header
from tripwire.errors import BrokerError


def frame_meta(
    camera: str,
    seq: int,
    capture_ns: int,
    receive_ns: int,
    result: MotionResult,
    content_type: str,
) -> FrameMeta:
    """The broker headers of a motion frame, from the motion function's decision."""
    return FrameMeta(
        camera=camera,
        seq=seq,
        capture_ns=capture_ns,
        receive_ns=receive_ns,
        width=result.width,
        height=result.height,
        content_type=content_type,
        motion_score=result.score,
        boxes=result.boxes,
        event_id=result.event_id,
    )


class MotionPublisher:
    """Publish motion frames, then wake the detector on each event's first frame.

    ``on_wake_failed`` counts wakes the broker refused (a metric; the frame itself is safe).
    """

    def __init__(self, broker: Broker, on_wake_failed: Callable[[], None] | None = None) -> None:
        self.broker = broker
        self._on_wake_failed = on_wake_failed
        self._wakes: set[asyncio.Task[None]] = set()

    async def publish(self, meta: FrameMeta, body: bytes, event_opened: bool) -> None:
        """Publish one frame and await the confirm; raise BrokerError when it is not stored."""
        await self.broker.publish(meta.subject, body, meta.to_headers())
        if event_opened:
            timeline.record(
                "motion_published", camera=meta.camera, seq=meta.seq, event_id=meta.event_id
            )
            task = asyncio.create_task(self._wake(meta.camera, meta.event_id or ""))
            self._wakes.add(task)
            task.add_done_callback(self._wakes.discard)

    async def drain(self) -> None:
        """Wait for the wakes still in flight (before closing the broker)."""
        if self._wakes:
            await asyncio.gather(*list(self._wakes), return_exceptions=True)

    async def _wake(self, camera: str, event_id: str) -> None:
        headers = {
            Header.CAMERA: camera,
            Header.EVENT: event_id,
            Header.CONTENT_TYPE: "application/json",
        }
        body = json.dumps({"camera": camera, "event_id": event_id}).encode()
        try:
            await self.broker.publish(WAKE_SUBJECT, body, headers)
        except BrokerError:
            if self._on_wake_failed is not None:
                self._on_wake_failed()
