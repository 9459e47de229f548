"""The message contract between the edge (gateway, motion) and the detector.

A motion frame travels as one broker message:

* **body**: the image bytes exactly as the camera sent them (JPEG or PNG). Never base64,
  never wrapped in JSON. A frame over the broker's message limit is refused at the edge
  (413), not sent by reference.
* **headers**: every piece of metadata, as short ASCII strings (see :class:`Header`).
* **subject / routing key**: ``tripwire.motion.<camera>``.

Results and alerts use ``tripwire.detections.<camera>`` and ``tripwire.alerts.<camera>``;
the edge announces each motion event's open and close, and each camera's status, on
``tripwire.events.<camera>`` (JSON bodies, see :mod:`tripwire.event_messages`).
This module is the single place that writes or reads these names; the README repeats it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tripwire.errors import ContractError

SCHEMA_VERSION = "1"

# A camera id becomes one subject token and one path segment: no dots, slashes or spaces.
CAMERA_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

MOTION_PREFIX = "tripwire.motion"
DETECTIONS_PREFIX = "tripwire.detections"
ALERTS_PREFIX = "tripwire.alerts"
EVENTS_PREFIX = "tripwire.events"
WAKE_SUBJECT = "tripwire.wake"
DEAD_PREFIX = "tripwire.dead"

CONTENT_TYPES = ("image/jpeg", "image/png")

Box = tuple[int, int, int, int]


class Header:
    """Header names of a motion message (case as written; brokers preserve it)."""

    SCHEMA = "Tripwire-Schema"
    # Deterministic message id; adapters map it to Nats-Msg-Id (dedup) / AMQP message_id.
    ID = "Tripwire-Id"
    CAMERA = "Tripwire-Camera"
    SEQ = "Tripwire-Seq"
    CAPTURE_NS = "Tripwire-Capture-Ns"
    RECEIVE_NS = "Tripwire-Receive-Ns"
    SCORE = "Tripwire-Motion-Score"
    BOXES = "Tripwire-Motion-Boxes"
    WIDTH = "Tripwire-Width"
    HEIGHT = "Tripwire-Height"
    CONTENT_TYPE = "Content-Type"
    EVENT = "Tripwire-Event"
    # Set by the detector when it dead-letters a message.
    DEAD_REASON = "Tripwire-Dead-Reason"
    DEAD_SUBJECT = "Tripwire-Dead-Subject"  # the subject / routing key it was published to


def dead_reason(reason: str) -> str:
    """The ``Tripwire-Dead-Reason`` header of a dead letter: one line, at most 256 chars."""
    return " ".join(reason.split())[:256] or "unspecified"


def check_camera_id(camera: str) -> str:
    """Return ``camera`` if it is a valid id, else raise :class:`ContractError`."""
    if not CAMERA_ID_RE.match(camera):
        raise ContractError(
            f"camera id {camera!r} is invalid: use 1-63 of a-z, 0-9, '-' or '_', "
            "starting with a letter or digit"
        )
    return camera


def motion_subject(camera: str) -> str:
    return f"{MOTION_PREFIX}.{camera}"


def detections_subject(camera: str) -> str:
    return f"{DETECTIONS_PREFIX}.{camera}"


def alerts_subject(camera: str) -> str:
    return f"{ALERTS_PREFIX}.{camera}"


def events_subject(camera: str) -> str:
    return f"{EVENTS_PREFIX}.{camera}"


def format_boxes(boxes: tuple[Box, ...]) -> str:
    """``x1,y1,x2,y2;...`` in full-frame pixels: compact, and readable in a broker UI."""
    return ";".join(f"{a},{b},{c},{d}" for a, b, c, d in boxes)


def parse_boxes(text: str) -> tuple[Box, ...]:
    if not text:
        return ()
    out: list[Box] = []
    for part in text.split(";"):
        nums = part.split(",")
        if len(nums) != 4:
            raise ContractError(f"{Header.BOXES}: {part!r} is not x1,y1,x2,y2")
        try:
            a, b, c, d = (int(n) for n in nums)
        except ValueError as exc:
            raise ContractError(f"{Header.BOXES}: {part!r} has a non-integer") from exc
        out.append((a, b, c, d))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Everything the detector needs to know about a motion frame, besides its bytes."""

    camera: str
    seq: int
    capture_ns: int
    receive_ns: int
    width: int
    height: int
    content_type: str
    motion_score: float
    boxes: tuple[Box, ...] = ()
    event_id: str | None = None
    schema: str = field(default=SCHEMA_VERSION)

    @property
    def message_id(self) -> str:
        """Deterministic id: a re-published frame is recognised as the same message."""
        return f"{self.camera}-{self.seq}-{self.capture_ns}"

    @property
    def subject(self) -> str:
        return motion_subject(self.camera)

    def to_headers(self) -> dict[str, str]:
        headers = {
            Header.SCHEMA: self.schema,
            Header.ID: self.message_id,
            Header.CAMERA: self.camera,
            Header.SEQ: str(self.seq),
            Header.CAPTURE_NS: str(self.capture_ns),
            Header.RECEIVE_NS: str(self.receive_ns),
            Header.SCORE: f"{self.motion_score:.4f}",
            Header.BOXES: format_boxes(self.boxes),
            Header.WIDTH: str(self.width),
            Header.HEIGHT: str(self.height),
            Header.CONTENT_TYPE: self.content_type,
        }
        if self.event_id:
            headers[Header.EVENT] = self.event_id
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> FrameMeta:
        """Parse and validate; raise :class:`ContractError` naming the first bad header."""

        def need(name: str) -> str:
            value = headers.get(name)
            if value is None or value == "":
                raise ContractError(f"missing header {name}")
            return str(value)

        def integer(name: str) -> int:
            raw = need(name)
            try:
                return int(raw)
            except ValueError as exc:
                raise ContractError(f"header {name}: {raw!r} is not an integer") from exc

        schema = need(Header.SCHEMA)
        if schema != SCHEMA_VERSION:
            raise ContractError(f"header {Header.SCHEMA}: unsupported version {schema!r}")
        content_type = need(Header.CONTENT_TYPE)
        if content_type not in CONTENT_TYPES:
            raise ContractError(f"header {Header.CONTENT_TYPE}: {content_type!r} not supported")
        raw_score = need(Header.SCORE)
        try:
            score = float(raw_score)
        except ValueError as exc:
            raise ContractError(f"header {Header.SCORE}: {raw_score!r} is not a number") from exc
        return cls(
            camera=check_camera_id(need(Header.CAMERA)),
            seq=integer(Header.SEQ),
            capture_ns=integer(Header.CAPTURE_NS),
            receive_ns=integer(Header.RECEIVE_NS),
            width=integer(Header.WIDTH),
            height=integer(Header.HEIGHT),
            content_type=content_type,
            motion_score=score,
            boxes=parse_boxes(str(headers.get(Header.BOXES, ""))),
            event_id=str(headers[Header.EVENT]) if headers.get(Header.EVENT) else None,
            schema=schema,
        )
