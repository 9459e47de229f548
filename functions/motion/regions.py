"""Masks and zones of a camera, rasterized once per analysis size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from functions.motion.decode import Gray

Polygon = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Regions:
    """``active`` is 255 where motion counts, None when nothing is masked."""

    active: Gray | None
    active_pixels: int
    zones: tuple[tuple[str, Gray], ...]


def _fill(polygons: Sequence[Polygon], width: int, height: int) -> Gray:
    canvas = np.zeros((height, width), np.uint8)
    for poly in polygons:
        # Fractions map to pixel edges: 1.0 is the right/bottom edge of the last pixel.
        pts = np.array([(x * width, y * height) for x, y in poly], np.float64)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 255)
    return canvas


def rasterize(
    masks: Sequence[Polygon], zones: Mapping[str, Polygon], width: int, height: int, blur: int
) -> Regions:
    """Rasterize at analysis size ``width`` x ``height``.

    A mask is grown by the blur radius: the blur spreads a change inside the mask (a clock's
    digits) that far outside it, and that halo must be ignored too.
    """
    active: Gray | None = None
    active_pixels = width * height
    if masks:
        masked = _fill(masks, width, height)
        if blur > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (blur, blur))
            masked = cast(Gray, cv2.dilate(masked, kernel))
        active = cast(Gray, cv2.bitwise_not(masked))
        active_pixels = int(cv2.countNonZero(active))
    zone_masks = tuple((name, _fill([poly], width, height)) for name, poly in zones.items())
    return Regions(active, active_pixels, zone_masks)
