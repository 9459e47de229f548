"""The messages the events function consumes: the edge's event open/close and camera status
(``tripwire.events.<camera>``) and the detector's per-frame results
(``tripwire.detections.<camera>``). JSON bodies, parsed here and nowhere else.

Every message is idempotent by design: it states values (this event opened at this capture
time, these counts at close), never increments, so a redelivered message changes nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tripwire.contract import CAMERA_ID_RE, DETECTIONS_PREFIX, EVENTS_PREFIX
from tripwire.errors import ContractError

EVENT_SCHEMA = "tripwire.event/1"
RESULT_SCHEMA = "tripwire.detections/1"
ALERT_SCHEMA = "tripwire.alert/1"

NonNegative = Annotated[int, Field(ge=0, le=2**63 - 1)]
CameraId = Annotated[str, Field(pattern=CAMERA_ID_RE.pattern)]
EventId = Annotated[str, Field(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Message(BaseModel):
    # Unknown keys are ignored: a newer edge or detector may add fields.
    model_config = ConfigDict(extra="ignore", frozen=True)


class EventOpened(_Message):
    """The gateway opened a motion event on the frame captured at ``capture_ns``."""

    schema_: Literal["tripwire.event/1"] = Field("tripwire.event/1", alias="schema")
    type: Literal["open"]
    camera: CameraId
    event_id: EventId
    capture_ns: NonNegative
    sent_ns: NonNegative


class EventClosed(_Message):
    """The gateway closed a motion event; counts cover the whole event."""

    schema_: Literal["tripwire.event/1"] = Field("tripwire.event/1", alias="schema")
    type: Literal["close"]
    camera: CameraId
    event_id: EventId
    capture_ns: NonNegative  # the frame that closed it
    frames_seen: NonNegative
    frames_analysed: NonNegative
    frames_published: NonNegative
    sent_ns: NonNegative


class CameraStatus(_Message):
    """A camera's state, sent by the gateway every few seconds while frames arrive."""

    schema_: Literal["tripwire.event/1"] = Field("tripwire.event/1", alias="schema")
    type: Literal["status"]
    camera: CameraId
    last_frame_ns: NonNegative
    fps: Annotated[float, Field(ge=0, le=10_000)]
    frames: NonNegative  # since the gateway started
    event_id: EventId | None = None  # the open event, if any
    # Counts of the open event so far (an event that never closes keeps them).
    frames_seen: NonNegative = 0
    frames_analysed: NonNegative = 0
    frames_published: NonNegative = 0
    sent_ns: NonNegative


EdgeMessage = Annotated[EventOpened | EventClosed | CameraStatus, Field(discriminator="type")]


class _EdgeEnvelope(BaseModel):
    message: EdgeMessage


class DetectedBox(_Message):
    label: str = Field(alias="class", min_length=1, max_length=128)
    confidence: Annotated[float, Field(ge=0, le=1)]
    xyxy: tuple[float, float, float, float]


class TopLabel(_Message):
    label: str = Field(alias="class", min_length=1, max_length=128)
    confidence: Annotated[float, Field(ge=0, le=1)]


class ModelInfo(_Message):
    name: str = Field(min_length=1, max_length=128)
    version: str | None = None
    task: str | None = None
    untrained: bool = False


class ArchiveKeys(_Message):
    frame: str | None = None
    detections: str | None = None


class FrameResult(_Message):
    """One frame's detections, as the detector publishes them."""

    schema_: Literal["tripwire.detections/1"] = Field("tripwire.detections/1", alias="schema")
    camera: CameraId
    seq: NonNegative
    capture_ns: NonNegative
    receive_ns: NonNegative = 0
    stored_ns: NonNegative | None = None  # when the detector published it
    event_id: EventId | None = None
    width: Annotated[int, Field(ge=1, le=65_535)]
    height: Annotated[int, Field(ge=1, le=65_535)]
    model: ModelInfo
    boxes: list[DetectedBox] = Field(default_factory=list, max_length=3000)
    label: TopLabel | None = None
    inference_ms: float = 0.0
    archive: ArchiveKeys = Field(default_factory=ArchiveKeys)


Incoming = EventOpened | EventClosed | CameraStatus | FrameResult


def parse_incoming(subject: str, body: bytes) -> Incoming:
    """The message on ``subject``; :class:`ContractError` with the reason when it is bad."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"{subject}: body is not JSON ({exc})") from None
    try:
        if subject.startswith(EVENTS_PREFIX + "."):
            message: Incoming = _EdgeEnvelope.model_validate({"message": data}).message
        elif subject.startswith(DETECTIONS_PREFIX + "."):
            message = FrameResult.model_validate(data)
        else:
            raise ContractError(f"{subject}: not an events or detections subject")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "message") or "<body>"
        raise ContractError(f"{subject}: {where}: {first['msg']}") from None
    if subject.rsplit(".", 1)[-1] != message.camera:
        raise ContractError(f"{subject}: camera {message.camera!r} does not match the subject")
    return message


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(by_alias=True).encode()
