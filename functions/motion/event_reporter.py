"""What the edge tells the events function: each motion event's open and close, with the
event's frame counts, and each camera's status every few seconds.

Pure bookkeeping on the per-frame path (a few integer updates); messages are built only when
an event opens or closes, or when :meth:`EventReporter.statuses` is called by a timer.
The caller publishes them (durably, on ``tripwire.events.<camera>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.motion.gate import MotionResult
from tripwire.contract import Header, events_subject
from tripwire.event_messages import CameraStatus, EventClosed, EventOpened, encode

Outgoing = tuple[str, bytes, dict[str, str]]  # subject, body, headers


@dataclass
class _Camera:
    window_start: float
    frames: int = 0
    window_frames: int = 0
    last_frame_ns: int = 0
    event_id: str | None = None
    seen: int = 0
    analysed: int = 0
    published: int = 0
    reported_idle: bool = False


def _outgoing(camera: str, message_id: str, body: bytes) -> Outgoing:
    headers = {
        Header.ID: message_id,
        Header.CAMERA: camera,
        Header.CONTENT_TYPE: "application/json",
    }
    return events_subject(camera), body, headers


class EventReporter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cameras: dict[str, _Camera] = {}

    def _camera(self, camera: str) -> _Camera:
        state = self._cameras.get(camera)
        if state is None:
            state = self._cameras[camera] = _Camera(self._clock())
        return state

    def frame(self, camera: str, result: MotionResult, capture_ns: int) -> list[Outgoing]:
        """Count one frame; the open or close message when this frame opened or closed one."""
        state = self._camera(camera)
        state.frames += 1
        state.window_frames += 1
        state.last_frame_ns = capture_ns
        out: list[Outgoing] = []
        if result.event_opened and result.event_id:
            state.event_id = result.event_id
            state.seen = state.analysed = state.published = 0
            now = time.time_ns()
            opened = EventOpened(
                type="open",
                camera=camera,
                event_id=result.event_id,
                capture_ns=capture_ns,
                sent_ns=now,
            )
            out.append(_outgoing(camera, f"{result.event_id}-open", encode(opened)))
        if state.event_id is not None:
            state.seen += 1
            state.analysed += result.analysed
        if result.event_closed and state.event_id is not None:
            closed = EventClosed(
                type="close",
                camera=camera,
                event_id=state.event_id,
                capture_ns=capture_ns,
                frames_seen=state.seen,
                frames_analysed=state.analysed,
                frames_published=state.published,
                sent_ns=time.time_ns(),
            )
            out.append(_outgoing(camera, f"{state.event_id}-close", encode(closed)))
            state.event_id = None
        return out

    def published(self, camera: str) -> None:
        """The frame just counted was published as a motion frame."""
        state = self._cameras.get(camera)
        if state is not None and state.event_id is not None:
            state.published += 1

    def statuses(self) -> list[Outgoing]:
        """One status per camera that sent frames since the last call (and one when it
        went quiet), with its frames/s over that time."""
        now = self._clock()
        out: list[Outgoing] = []
        for camera, state in self._cameras.items():
            if state.window_frames == 0 and state.reported_idle:
                continue
            elapsed = max(now - state.window_start, 1e-6)
            fps = state.window_frames / elapsed
            state.reported_idle = state.window_frames == 0
            state.window_frames, state.window_start = 0, now
            sent = time.time_ns()
            status = CameraStatus(
                type="status",
                camera=camera,
                last_frame_ns=state.last_frame_ns,
                fps=round(fps, 2),
                frames=state.frames,
                event_id=state.event_id,
                frames_seen=state.seen,
                frames_analysed=state.analysed,
                frames_published=state.published,
                sent_ns=sent,
            )
            out.append(_outgoing(camera, f"{camera}-status-{sent}", encode(status)))
        return out
