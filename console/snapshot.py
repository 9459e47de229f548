"""A snapshot as JPEG, plain or with the detections drawn on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from tripwire.errors import FrameError

_JPEG = b"\xff\xd8\xff"
_GREEN = (60, 200, 60)


def draw_boxes(image: Any, boxes: Sequence[Sequence[Any]]) -> None:
    """Draw ``boxes`` ([label, conf, x1, y1, x2, y2] in frame pixels) on ``image`` in place."""
    thickness = max(1, round(image.shape[0] / 360))
    scale = max(0.4, image.shape[0] / 1000)
    for label, conf, x1, y1, x2, y2 in boxes:
        p1, p2 = (round(x1), round(y1)), (round(x2), round(y2))
        cv2.rectangle(image, p1, p2, _GREEN, thickness)
        text = f"{label} {conf:.2f}"
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(p1[1] - h - base - 2, 0)
        cv2.rectangle(image, (p1[0], top), (p1[0] + w + 4, top + h + base + 2), _GREEN, -1)
        cv2.putText(image, text, (p1[0] + 2, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)  # fmt: skip


def snapshot_jpeg(
    data: bytes, boxes: Sequence[Sequence[Any]] | None, width: int | None = None
) -> bytes:
    """``data`` as JPEG; with ``boxes`` ([label, conf, x1, y1, x2, y2]) drawn when given,
    scaled down to ``width`` pixels wide when it is narrower (thumbnails)."""
    if boxes is None and width is None and data.startswith(_JPEG):
        return data  # as archived: no re-encode
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"archived frame of {len(data)} bytes is not decodable")
    if boxes:
        draw_boxes(image, boxes)
    if width is not None and width < image.shape[1]:
        height = max(1, round(image.shape[0] * width / image.shape[1]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise FrameError("could not encode the snapshot as JPEG")
    return bytes(encoded.tobytes())
