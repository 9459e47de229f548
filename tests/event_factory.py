"""Messages of the events function's feed, built as the gateway and detector build them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tripwire.event_messages import (
    CameraStatus,
    DetectedBox,
    EventClosed,
    EventOpened,
    FrameResult,
    ModelInfo,
    TopLabel,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a fixed capture epoch: tests compare exact times

Found = tuple[str, float, tuple[float, float, float, float]]


def result(
    camera: str,
    seq: int,
    capture_ns: int,
    found: Sequence[Found] = (),
    *,
    event_id: str | None = None,
    top: tuple[str, float] | None = None,
    model: str = "coco",
    frame_key: str | None = "auto",
    size: tuple[int, int] = (1000, 1000),
    stored_ns: int | None = None,
) -> FrameResult:
    key = f"frames/{camera}/{capture_ns}-{seq}.jpg" if frame_key == "auto" else frame_key
    data: dict[str, Any] = {
        "camera": camera,
        "seq": seq,
        "capture_ns": capture_ns,
        "receive_ns": capture_ns,
        "stored_ns": stored_ns if stored_ns is not None else capture_ns + S // 2,
        "event_id": event_id,
        "width": size[0],
        "height": size[1],
        "model": ModelInfo(name=model),
        "boxes": [DetectedBox.model_validate({"class": c, "confidence": p, "xyxy": b})
                  for c, p, b in found],
        "label": TopLabel.model_validate({"class": top[0], "confidence": top[1]}) if top else None,
        "archive": {"frame": key, "detections": f"detections/{camera}/{capture_ns}-{seq}.json"},
    }  # fmt: skip
    return FrameResult.model_validate(data)


def opened(camera: str, event_id: str, capture_ns: int) -> EventOpened:
    return EventOpened(
        type="open", camera=camera, event_id=event_id, capture_ns=capture_ns, sent_ns=capture_ns
    )


def closed(camera: str, event_id: str, capture_ns: int, seen: int = 10) -> EventClosed:
    return EventClosed(
        type="close",
        camera=camera,
        event_id=event_id,
        capture_ns=capture_ns,
        frames_seen=seen,
        frames_analysed=seen // 2,
        frames_published=seen // 3,
        sent_ns=capture_ns,
    )


def status(
    camera: str, last_ns: int, event_id: str | None = None, fps: float = 10.0
) -> CameraStatus:
    return CameraStatus(
        type="status",
        camera=camera,
        last_frame_ns=last_ns,
        fps=fps,
        frames=100,
        event_id=event_id,
        frames_seen=7,
        frames_analysed=4,
        frames_published=3,
        sent_ns=last_ns,
    )
