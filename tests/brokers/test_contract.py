"""The message contract: header round trip, validation, and its size on the wire."""

from __future__ import annotations

import pytest

from tripwire.contract import FrameMeta, Header, format_boxes, parse_boxes
from tripwire.errors import ContractError

META = FrameMeta(
    camera="cam-1",
    seq=812,
    capture_ns=1_763_800_000_000_000_000,
    receive_ns=1_763_800_000_004_000_000,
    width=1280,
    height=720,
    content_type="image/jpeg",
    motion_score=0.0132,
    boxes=((412, 288, 530, 551), (900, 10, 960, 80)),
    event_id="cam-1-1",
)


def test_round_trip() -> None:
    headers = META.to_headers()
    assert all(isinstance(v, str) and v.isascii() for v in headers.values())
    assert FrameMeta.from_headers(headers) == META
    assert headers[Header.ID] == "cam-1-812-1763800000000000000"
    assert META.subject == "tripwire.motion.cam-1"


def test_no_event() -> None:
    meta = FrameMeta(
        camera="cam-2",
        seq=1,
        capture_ns=5,
        receive_ns=6,
        width=10,
        height=10,
        content_type="image/png",
        motion_score=0.0,
    )
    back = FrameMeta.from_headers(meta.to_headers())
    assert back.event_id is None and back.boxes == ()


# Each case: a header to change (None = delete) and the words the error must contain.
BROKEN = [
    (Header.CAMERA, None, "missing header Tripwire-Camera"),
    (Header.SEQ, "x", "is not an integer"),
    (Header.SCHEMA, "9", "unsupported version"),
    (Header.CONTENT_TYPE, "image/gif", "not supported"),
    (Header.BOXES, "1,2,3", "is not x1,y1,x2,y2"),
    (Header.BOXES, "1,2,3,z", "non-integer"),
    (Header.SCORE, "high", "not a number"),
    (Header.CAMERA, "../etc", "camera id"),
]


@pytest.mark.parametrize("name,value,words", BROKEN)
def test_broken_headers_are_contract_errors(name: str, value: str | None, words: str) -> None:
    headers = META.to_headers()
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    with pytest.raises(ContractError, match=words.replace(".", r"\.")):
        FrameMeta.from_headers(headers)


def test_boxes_format() -> None:
    boxes = ((0, 0, 1, 1), (10, 20, 30, 40))
    assert format_boxes(boxes) == "0,0,1,1;10,20,30,40"
    assert parse_boxes(format_boxes(boxes)) == boxes
    assert parse_boxes("") == ()
