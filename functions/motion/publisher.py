"""The one publish path of motion frames, shared by the HTTP gateway and pull mode.

A motion frame is published and its confirm awaited; when it is the first frame of a motion
event, the event is recorded on the timeline and a wake message goes out on
``tripwire.wake`` (push activation: a scaled-to-zero detector starts at once instead of at its
next depth poll). The wake is sent after the frame is stored, so the worker it wakes finds
work, and in the background, so a slow broker never holds up the next frame; a lost wake costs
only latency, because the scaler's depth poll still sees the frame.

Every frame, published or not, is also counted for the events function
(:mod:`functions.motion.event_reporter`): each event's open and close, and each camera's
status, go out durably on ``tripwire.events.<camera>``, in the background as well.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine

from functions.motion.event_reporter import EventReporter, Outgoing
from functions.motion.gate import MotionResult
from tripwire import timeline
from tripwire.brokers import Broker
from tripwire.contract import WAKE_SUBJECT, FrameMeta, Header
from tripwire.errors import BrokerError
from tripwire.retry import retry


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

    def __init__(
        self,
        broker: Broker,
        on_wake_failed: Callable[[], None] | None = None,
        on_event_message_failed: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self._on_wake_failed = on_wake_failed
        self._on_event_message_failed = on_event_message_failed
        self._wakes: set[asyncio.Task[None]] = set()
        self.reporter = EventReporter()

    def observe(self, camera: str, result: MotionResult, capture_ns: int) -> None:
        """Count one frame of ``camera`` (every frame, before its publish); an event's open
        or close goes out in the background."""
        for message in self.reporter.frame(camera, result, capture_ns):
            self._background(self._announce(message))

    async def report_status(self) -> None:
        """Publish each active camera's status (a timer calls it every few seconds)."""
        for message in self.reporter.statuses():
            await self._announce(message, attempts=1)

    async def publish(self, meta: FrameMeta, body: bytes, event_opened: bool) -> None:
        """Publish one frame and await the confirm; raise BrokerError when it is not stored."""
        await self.broker.publish(meta.subject, body, meta.to_headers())
        self.reporter.published(meta.camera)
        if event_opened:
            timeline.record(
                "motion_published", camera=meta.camera, seq=meta.seq, event_id=meta.event_id
            )
            self._background(self._wake(meta.camera, meta.event_id or ""))

    def _background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    async def _announce(self, message: Outgoing, attempts: int = 3) -> None:
        """Publish an event message durably, retrying a little; a lost one is recovered by
        the events function (results create the event, a missing close times out)."""
        subject, body, headers = message
        try:
            await retry(
                lambda: self.broker.publish(subject, body, headers),
                first_s=0.5,
                max_s=2.0,
                attempts=attempts,
            )
        except BrokerError:
            if self._on_event_message_failed is not None:
                self._on_event_message_failed()

    async def drain(self) -> None:
        """Wait for the wakes and event messages in flight (before closing the broker)."""
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
