"""Decode a frame straight to a small grayscale picture: the only pixels motion looks at.

A JPEG is decoded with libjpeg's DCT scaling (IMREAD_REDUCED_GRAYSCALE_2/4/8): it skips the
colour conversion and most of the inverse DCT, so a 720p frame costs about a third of a full
colour decode. The factor is picked from the size in the header so that the picture keeps
about ``analysis_height`` rows: a person 30 px tall at 720p is still 7 rows tall there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from functions.motion.probe import JPEG, FrameInfo
from tripwire.errors import FrameError

Gray = npt.NDArray[np.uint8]

_REDUCED = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
# Orientation is ignored so that the pixel grid is the one the SOF header describes (boxes
# and the width/height headers then agree); fixed cameras do not rotate their frames.
_FLAGS = cv2.IMREAD_IGNORE_ORIENTATION
# Accept a decoded height down to this share of analysis_height before picking a smaller
# factor (720 rows / 4 = 180 is right; 714 / 4 = 179 is fine too).
_MIN_SHARE = 0.9
# Above this share the reduced picture is resized down to analysis_height (4K, 1080p).
_MAX_SHARE = 1.25


@dataclass(frozen=True, slots=True)
class Geometry:
    """How a frame of one size maps to its analysis picture."""

    width: int
    height: int
    factor: int  # JPEG reduced-decode factor: 1, 2, 4 or 8
    analysis_width: int
    analysis_height: int

    @property
    def decoded_size(self) -> tuple[int, int]:
        """(width, height) that a reduced JPEG decode by ``factor`` returns."""
        return -(-self.width // self.factor), -(-self.height // self.factor)


def geometry(width: int, height: int, analysis_height: int) -> Geometry:
    """Pick the reduced-decode factor and the analysis size for a frame of this size."""
    factor = 1
    for f in (2, 4, 8):
        if -(-height // f) >= analysis_height * _MIN_SHARE:
            factor = f
    aw, ah = -(-width // factor), -(-height // factor)
    if ah > analysis_height * _MAX_SHARE:
        aw, ah = max(1, round(width * analysis_height / height)), analysis_height
    return Geometry(width, height, factor, aw, ah)


def decode_gray(data: bytes, info: FrameInfo, geo: Geometry) -> Gray:
    """The analysis picture of an encoded frame; FrameError when it cannot be decoded."""
    buf = np.frombuffer(data, np.uint8)
    if info.content_type == JPEG:
        gray = cv2.imdecode(buf, _REDUCED[geo.factor] | _FLAGS)
    else:
        # PNG has no reduced decode: full grayscale decode, then resize below.
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE | _FLAGS)
    if gray is None:
        kind = "JPEG" if info.content_type == JPEG else "PNG"
        raise FrameError(f"not decodable: {kind} {info.width}x{info.height} rejected by decoder")
    expected = geo.decoded_size if info.content_type == JPEG else (geo.width, geo.height)
    if (gray.shape[1], gray.shape[0]) != expected:
        raise FrameError(
            f"not decodable: decoded {gray.shape[1]}x{gray.shape[0]}, header says "
            f"{info.width}x{info.height}"
        )
    return fit(cast(Gray, gray), geo)


def fit(gray: Gray, geo: Geometry) -> Gray:
    """Resize a grayscale picture to the analysis size (area averaging, as the DCT does)."""
    if (gray.shape[1], gray.shape[0]) == (geo.analysis_width, geo.analysis_height):
        return gray
    size = (geo.analysis_width, geo.analysis_height)
    return cast(Gray, cv2.resize(gray, size, interpolation=cv2.INTER_AREA))


def array_to_gray(frame: npt.NDArray[np.uint8], geo: Geometry) -> Gray:
    """The analysis picture of an already decoded frame (pull mode): gray or BGR."""
    if frame.ndim == 2:
        return fit(frame, geo)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise FrameError(f"not an image array: shape {frame.shape}")
    # Colour first: OpenCV's 3-channel area resize is slower than the conversion it saves.
    code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
    return fit(cast(Gray, cv2.cvtColor(frame, code)), geo)


def scale(geo: Geometry) -> tuple[float, float]:
    """Full-frame pixels per analysis pixel, horizontally and vertically."""
    return geo.width / geo.analysis_width, geo.height / geo.analysis_height
