"""The per-frame pixel work: background model, change mask, blobs. One per analysis size.

One analysed frame, in this order (each step says why it is there):

1. Gaussian blur of the small grayscale picture: sensor noise and JPEG block edges would
   otherwise pass the threshold one pixel at a time.
2. Per-pixel minimum with the previous analysed frame. Rain, snow and insects in IR light
   only ever *brighten* a pixel, and only for a frame; the minimum of two frames drops
   them, while a mover stays (a dark one whole, a bright one where it overlaps itself).
3. Lighting: a sudden jump of the mean between two analysed frames is a light switched on
   (or off): re-learn the background instead of reporting motion everywhere. But a busy
   scene (a crowd, a street crossing sent at 1 frame/s) also changes much of the frame
   between analysed frames, and re-learning it would blind the gate for as long as it is
   busy. A lighting change, even a non-linear one (an IR switch, a lamp), keeps the
   background's structure: in every textured cell of a coarse grid the frame is still
   about an affine function of the background (normalized correlation near 1). Movers
   replace it with their own. So every lighting trigger (here and in step 5) is confirmed
   by that test, which only runs when a trigger fires, never on a quiet frame.
4. Global gain compensation: the frame is mapped onto the background's mean and standard
   deviation (moving parts left out), so auto-exposure steps and a dusk fade, which the
   running average lags behind, do not look like motion.
5. Difference to the background against a threshold, in 8 bits. Masks are applied
   to this change mask (after the blur, so masked pixels never bleed a halo into it).
   A changed share above ``lighting_change`` is a lighting change too (IR switch).
   The threshold scales with the scene's brightness (down to a third of ``threshold``
   in a dark scene): what a mover changes is its reflectance times the light, so a
   walker 60 levels off its ground by day is 11 levels off at night. A camera on a pole
   that shakes by a few full-frame pixels moves every edge by up to one analysis pixel
   and lights up edges all over the frame: when relief (the difference less what the
   background spans within one pixel) removes much of the change, it is taken.
6. Persistence: a pixel counts only when it also changed, or had a change next to it, in
   each of the two previous analysed frames ("next to": within two pixels when analysed
   frames are 0.15 s or more apart, as a far walker moves a pixel in 0.2 s). A mover
   overlaps itself from frame to frame; rain and one-frame flashes land somewhere new
   every time and drop out. But a mover that
   travels more than about a third of its width between analysed frames (a runner or a
   car at 10 analyses/s, a walker on a 5 fps camera) never overlaps itself across the
   three frames, and the de-rain minimum already ate its leading part. So a solid region
   also counts: where the frame *before* the minimum differs from the background in a
   block at least as wide as the join kernel (28x28 px at 720p). Rain streaks, noise
   and clock digits are thinner than that and an opening removes them; a single flash
   cannot pass the debounce, and a lamp fails the changed-since-last check below.
7. Dilation joins a mover's parts into blobs (external contours). A blob is motion when it
   holds ``min_area`` persistent pixels, is not light (a large blob whose pixels still
   correlate with the background under them, as in step 3: a flickering lamp, a cloud's
   shadow) *and* something in it changed since the previous analysed frame: a clock
   digit, a lamp turned on in one corner or a parked car changed once and then stand
   still, however long the background takes to learn them. Its box is grown to the
   changed pixels around it, so it covers the whole mover, not the part that persisted.
8. The background learns the frame with weight ``alpha``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from functions.motion.decode import Geometry, Gray, scale
from functions.motion.regions import Regions
from tripwire.camera_config import MotionConfig
from tripwire.contract import Box

Float = npt.NDArray[np.float32]

# Previous analysed frames a pixel's change must persist through (step 6).
_PERSIST = 2
# Calibration learns the per-pixel median of the last frames (at most this many): unlike a
# running average it keeps no trace of rain, or of someone walking past meanwhile.
_CALIBRATION_KEEP = 9
# Compensation beyond this gain (either way) is not trusted: re-learn instead.
_MAX_GAIN = 2.0
# A mean step below this many gray levels is never a lighting change, whatever its
# relative size (a dark scene's mean moving from 4 to 6 is noise).
_MIN_STEP_LEVELS = 4.0
# Analysed frames this far apart (s) or more: persistence looks two pixels around, not
# one (step 6). A walker far away moves a pixel of 180 rows in 0.2 s and is only 3-4
# wide: with one, three frames 0.2 s apart overlap in a sliver below min_area.
_FAR_GAP_S = 0.15
# A blob of at least this many times ``min_area`` is checked for being light (a flickering
# lamp, a cloud's shadow): its moving pixels correlate with the background under them at
# least _LIT_CORRELATION, on ground with at least _LIT_MIN_STD of texture. A mover
# brings its own picture and correlates far less.
_LIT_MIN_SHARE = 8
_LIT_CORRELATION = 0.9
_LIT_MIN_STD = 8.0
# Shake relief (step 5) starts where the background spans this share of the threshold
# within one pixel: lower also takes small far movers on textured ground for edges.
_RELIEF_SHARE = 0.75
# The relief map is recomputed from the background every this many analysed frames that
# need it (or when the threshold changes): the background learns 5 % a frame.
_RELIEF_REFRESH = 4
# Shake relief is taken when it removes at least this share of the changed pixels: of a
# shaking camera's changes it removes 85-100 %, of the forklift's in the warehouse clip
# (seen between the bars of racks) at most 30 %.
_SHAKE_DROP = 0.5
# ... and the changes it removes lie in at least _SHAKE_CELLS cells of this grid (a
# shaking camera's edges are all over the frame, the forklift's rack bars in 1-2 cells).
# Once seen, the camera is taken as shaking for _SHAKE_HOLD analysed frames, during which
# relief is taken whenever it removes most of the change (a small shake stays local).
_SHAKE_GRID = (8, 5)
_SHAKE_CELLS = 3
_SHAKE_HOLD = 100
# The threshold is ``threshold`` at this background mean and brighter, proportionally
# lower below it, down to a third: CCTV by day averages 90-130, a street at night 15-30.
_FULL_THRESHOLD_MEAN = 100.0
_MIN_THRESHOLD_SHARE = 1 / 3
# Compensation statistics use every 4th row: 14k samples at 320x180 is plenty, and masked
# statistics are otherwise the most expensive step of the frame.
_STATS_ROW_STEP = 4
# A blob still moves when this share of ``min_area`` changed since the last analysed frame
# by a third of the threshold (3x the frame-to-frame noise seen on real CCTV).
_ACTIVE_SHARE = 0.25
# The structure test (step 3) on a grid of about this many rows of cells (20 px cells at
# 180 rows: a person near the camera fills several, a far one part of one).
_CELL_ROWS = 9
# A cell is textured when the background's std in it is at least this (gray levels):
# below it, noise decides the correlation.
_MIN_CELL_STD = 4.0
# A textured cell kept its structure when frame and background correlate at least this
# much. Lighting, gamma and JPEG keep >0.9; a cell a person walked into drops below 0.5.
_KEPT_CORRELATION = 0.75
# A trigger is movers, not lighting, when at least this share of the textured cells lost
# their structure (a lamp or a walker during a light switch loses a few).
_MOVED_CELLS = 0.2
# Fewer textured cells than this (a night scene, a blank wall): the test cannot tell, and
# a trigger is taken for lighting, as it always was.
_MIN_TEXTURED_CELLS = 12


class State(enum.Enum):
    CALIBRATING = "calibrating"  # learning the background; no decision
    LIGHTING = "lighting"  # a global change was seen; calibration restarts
    QUIET = "quiet"
    MOTION = "motion"


class Relearn(enum.Enum):
    """Why a frame was taken for a lighting change (and the background is re-learnt)."""

    BRIGHTNESS = "brightness"  # the mean jumped between analysed frames
    GAIN = "gain"  # contrast changed more than compensation is trusted with
    AREA = "area"  # more than lighting_change of the frame changed


@dataclass(frozen=True, slots=True)
class Analysis:
    state: State
    score: float = 0.0  # persistent changed pixels / analysed (unmasked) pixels
    boxes: tuple[Box, ...] = ()  # full-frame pixels, largest first
    zones: tuple[str, ...] = ()  # zones that moving pixels touch
    relearn: Relearn | None = None  # LIGHTING only: what was taken for a lighting change


CALIBRATING = Analysis(State.CALIBRATING)
QUIET = Analysis(State.QUIET)


LIGHTING = {reason: Analysis(State.LIGHTING, relearn=reason) for reason in Relearn}


class Analyser:
    """Background model and work buffers for one analysis size; reused frame after frame."""

    def __init__(self, cfg: MotionConfig, geo: Geometry, regions: Regions) -> None:
        self._cfg = cfg
        self._geo = geo
        self._regions = regions
        h, w = geo.analysis_height, geo.analysis_width

        def buffer() -> Gray:
            return np.zeros((h, w), np.uint8)

        self._raw, self._prev_raw = buffer(), buffer()  # blurred frames, this and last
        self._has_prev = False
        self._frame = buffer()  # the minimum of the two: the picture that is analysed
        self._comp = buffer()
        self._bg: Float = np.zeros((h, w), np.float32)
        self._bg8 = buffer()
        self._bg_lo, self._bg_hi = buffer(), buffer()  # shake relief: scratch, relief map
        self._diff = buffer()
        self._changed = buffer()
        self._moving = buffer()
        self._scratch = buffer()
        # Dilated change masks of the previous analysed frames, newest first, plus a spare.
        self._nears = [buffer() for _ in range(_PERSIST + 1)]
        self._near_count = 0
        self._near_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
        self._far_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
        join = 2 * max(1, round(h / 60)) + 1  # 7x7 at 180 rows: joins a person's limbs
        self._join_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (join, join))
        self._solid_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (join, join))
        self._solid = buffer()
        self._ksize = (cfg.blur, cfg.blur)
        self._active_threshold = max(3, cfg.threshold // 3)
        self._area = max(1, regions.active_pixels)
        self._min_pixels = max(2.0, cfg.min_area * w * h)
        self._min_active = max(1, round(_ACTIVE_SHARE * self._min_pixels))
        self._lighting_pixels = cfg.lighting_change * self._area
        self._sx, self._sy = scale(geo)
        self._calibrate_left = cfg.calibration_frames
        keep = min(cfg.calibration_frames, _CALIBRATION_KEEP)
        self._history: Gray = np.zeros((keep, h, w), np.uint8)
        self._learnt = 0
        self._last_mean = math.nan
        self._shaking = 0  # analysed frames left in which the camera is taken as shaking
        self._relief_age, self._relief_threshold = _RELIEF_REFRESH, 0  # relief map in _bg_hi

    @property
    def calibrating(self) -> bool:
        return self._calibrate_left > 0

    def recalibrate(self) -> None:
        """Forget the background; the next ``calibration_frames`` frames re-learn it."""
        self._calibrate_left = self._cfg.calibration_frames
        self._learnt = 0

    def analyse(self, gray: Gray, gap_s: float = 0.1) -> Analysis:
        """Analyse the next frame, ``gap_s`` seconds after the previous analysed one."""
        cfg = self._cfg
        raw, frame = self._raw, self._frame
        if cfg.blur > 1:
            cv2.GaussianBlur(gray, self._ksize, 0, dst=raw)
        else:
            np.copyto(raw, gray)
        if self._has_prev:
            cv2.min(raw, self._prev_raw, dst=frame)
        else:
            np.copyto(frame, raw)
        self._raw, self._prev_raw = self._prev_raw, raw
        self._has_prev = True

        if self._calibrate_left > 0:
            self._learn()
            return CALIBRATING

        cv2.convertScaleAbs(self._bg, dst=self._bg8)
        mean_f, std_f, mean_b, std_b = self._stats()
        step = abs(mean_f - self._last_mean)
        self._last_mean = mean_f
        if step > max(_MIN_STEP_LEVELS, cfg.lighting_step * mean_b) and self._structure_kept():
            return self._lighting(Relearn.BRIGHTNESS)
        gain = std_b / std_f if std_f > 1e-3 else 1.0
        if not 1 / _MAX_GAIN <= gain <= _MAX_GAIN:
            if self._structure_kept():
                return self._lighting(Relearn.GAIN)
            gain = min(_MAX_GAIN, max(1 / _MAX_GAIN, gain))  # movers skewed the statistics
        # comp = frame * gain + offset, saturated to 8 bits: sub-level precision does not
        # matter at a threshold of tens of levels, and 8-bit arithmetic is OpenCV's fastest.
        cv2.addWeighted(frame, gain, frame, 0.0, mean_b - gain * mean_f, dst=self._comp)
        share = min(1.0, max(_MIN_THRESHOLD_SHARE, mean_b / _FULL_THRESHOLD_MEAN))
        threshold = max(1, round(cfg.threshold * share))
        self._shaking = max(0, self._shaking - 1)
        cv2.absdiff(self._comp, self._bg8, dst=self._diff)
        self._threshold(self._diff, threshold, self._changed)
        changed = cv2.countNonZero(self._changed)
        if changed >= self._min_pixels:
            changed = self._relieve_shake(threshold, changed)
        if changed > self._lighting_pixels and self._structure_kept():
            return self._lighting(Relearn.AREA)

        nears = self._nears
        cv2.bitwise_and(self._changed, nears[0], dst=self._moving)
        for near in nears[1:_PERSIST]:
            cv2.bitwise_and(self._moving, near, dst=self._moving)
        self._add_solid(raw, gain, mean_b - gain * mean_f, threshold)
        spare = nears.pop()
        kernel = self._far_kernel if gap_s >= _FAR_GAP_S else self._near_kernel
        cv2.dilate(self._changed, kernel, dst=spare)
        nears.insert(0, spare)
        self._near_count = cv2.countNonZero(spare)
        cv2.accumulateWeighted(frame, self._bg, cfg.alpha)

        moving = cv2.countNonZero(self._moving)
        if moving < self._min_pixels:
            return QUIET
        boxes = self._boxes()
        if not boxes:
            return QUIET
        return Analysis(State.MOTION, moving / self._area, boxes, self._zones())

    def _threshold(self, diff: Gray, threshold: int, dst: Gray) -> None:
        cv2.threshold(diff, threshold, 255, cv2.THRESH_BINARY, dst=dst)
        active = self._regions.active
        if active is not None:
            cv2.bitwise_and(dst, active, dst=dst)

    def _relieve_shake(self, threshold: int, changed: int) -> int:
        """Drop the changes a camera shake makes at edges (step 5); return the count of
        changed pixels that is left.

        Shake relief: the difference less what the background itself spans within one
        pixel, beyond ``_RELIEF_SHARE`` of the threshold. On flatter ground (where a small
        mover is seen) it is the plain difference; at an edge a one-pixel shift cannot
        reach the threshold. It is taken only when it removes most of the change (edges
        all over the frame): a mover seen between the bars of a rack changes a few edges
        too, and relief there would hide it.
        """
        hi, lo, relieved = self._bg_hi, self._bg_lo, self._scratch
        self._relief_age += 1
        if self._relief_age > _RELIEF_REFRESH or threshold != self._relief_threshold:
            # The relief map follows the background, which learns slowly: kept a while.
            cv2.dilate(self._bg8, self._near_kernel, dst=hi)
            cv2.erode(self._bg8, self._near_kernel, dst=lo)
            cv2.subtract(hi, lo, dst=hi)
            cv2.addWeighted(hi, 1.0, hi, 0.0, -round(threshold * _RELIEF_SHARE), dst=hi)
            self._relief_age, self._relief_threshold = 0, threshold
        if not self._shaking and not self._shake_seen(threshold):
            return changed
        cv2.subtract(self._diff, hi, dst=lo)
        self._threshold(lo, threshold, relieved)
        left = cv2.countNonZero(relieved)
        if changed - left < max(self._min_pixels, changed * _SHAKE_DROP):
            return changed
        self._shaking = _SHAKE_HOLD
        self._changed, self._scratch = relieved, self._changed
        return left

    def _shake_seen(self, threshold: int) -> bool:
        """Whether relief removes most of the change, spread over the frame (a camera
        starts shaking), judged on every 4th row: the check runs on every frame with
        changes, and a shaking camera's edges cross many rows."""
        rows = slice(None, None, _STATS_ROW_STEP)
        changed = self._changed[rows]
        kept = cv2.subtract(self._diff[rows], self._bg_hi[rows])
        cv2.threshold(kept, threshold, 255, cv2.THRESH_BINARY, dst=kept)
        cv2.bitwise_and(kept, changed, dst=kept)
        plain, left = cv2.countNonZero(changed), cv2.countNonZero(kept)
        if plain - left < max(self._min_pixels / _STATS_ROW_STEP, plain * _SHAKE_DROP):
            return False
        # Where did relief remove changes? A shaking camera's edges are all over the
        # frame; a mover behind a rack's bars is in one place.
        cv2.bitwise_xor(kept, changed, dst=kept)
        cells = cv2.resize(kept, _SHAKE_GRID, interpolation=cv2.INTER_AREA)
        return cv2.countNonZero(cells) >= _SHAKE_CELLS

    def _add_solid(self, raw: Gray, gain: float, offset: float, threshold: int) -> None:
        """Add to the moving mask the solid changed regions of ``raw``, the blurred frame
        before the de-rain minimum (step 6: fast movers)."""
        solid = self._solid
        cv2.addWeighted(raw, gain, raw, 0.0, offset, dst=solid)
        cv2.absdiff(solid, self._bg8, dst=solid)
        cv2.threshold(solid, threshold, 255, cv2.THRESH_BINARY, dst=solid)
        active = self._regions.active
        if active is not None:
            cv2.bitwise_and(solid, active, dst=solid)
        cv2.morphologyEx(solid, cv2.MORPH_OPEN, self._solid_kernel, dst=solid)
        cv2.bitwise_or(self._moving, solid, dst=self._moving)

    def _learn(self) -> None:
        history = self._history
        np.copyto(history[self._learnt % len(history)], self._frame)
        self._learnt += 1
        self._calibrate_left -= 1
        if self._calibrate_left == 0:
            learnt = history[: min(self._learnt, len(history))]
            np.copyto(self._bg, np.median(learnt, axis=0), casting="unsafe")
        for near in self._nears:
            near.fill(0)
        self._near_count = 0
        self._relief_age = _RELIEF_REFRESH  # a new background: a new relief map
        self._last_mean = math.nan

    def _lighting(self, reason: Relearn) -> Analysis:
        self.recalibrate()
        self._learn()
        return LIGHTING[reason]

    def _structure_kept(self) -> bool:
        """Whether the frame still shows the background's structure (step 3): a lighting
        change, not a crowd. Per-cell normalized correlation from cell means of f, b, f*b,
        f*f and b*b (area resizes: a few hundred microseconds, only when a trigger fired)."""
        h, w = self._bg.shape
        rows = min(_CELL_ROWS, h)
        cols = min(w, max(1, round(rows * w / h)))
        f = self._frame.astype(np.float32)
        b = self._bg

        def cells(image: Float) -> Float:
            return cast(Float, cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA))

        mf, mb = cells(f), cells(b)
        var_f = cells(f * f) - mf * mf
        var_b = cells(b * b) - mb * mb
        cov = cells(f * b) - mf * mb
        textured = var_b >= _MIN_CELL_STD**2
        active = self._regions.active
        if active is not None:  # masked cells may change as they like
            textured &= cells(active.astype(np.float32)) >= 127.5
        count = int(np.count_nonzero(textured))
        if count < _MIN_TEXTURED_CELLS:
            return True
        ncc = cov[textured] / np.sqrt(np.maximum(var_f[textured], 1e-6) * var_b[textured])
        moved = int(np.count_nonzero(ncc < _KEPT_CORRELATION))
        return moved < _MOVED_CELLS * count

    def _stats(self) -> tuple[float, float, float, float]:
        """Mean and std of frame and background, over unmasked pixels that did not move."""
        active = self._regions.active
        if not self._near_count and active is None:
            mf, sf = cv2.meanStdDev(self._frame)
            mb, sb = cv2.meanStdDev(self._bg8)
        else:
            # Leave the movers out, or a large one would be "compensated" away. The mask
            # is made for the sampled rows only.
            rows = slice(None, None, _STATS_ROW_STEP)
            mask = cv2.bitwise_not(self._nears[0][rows])
            if active is not None:
                cv2.bitwise_and(mask, active[rows], dst=mask)
            mf, sf = cv2.meanStdDev(self._frame[rows], mask=mask)
            mb, sb = cv2.meanStdDev(self._bg8[rows], mask=mask)
        return float(mf[0, 0]), float(sf[0, 0]), float(mb[0, 0]), float(sb[0, 0])

    def _boxes(self) -> tuple[Box, ...]:
        raw, prev = self._raw, self._prev_raw
        joined = self._scratch
        cv2.dilate(self._moving, self._join_kernel, dst=joined)
        contours, _ = cv2.findContours(joined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        height, width = joined.shape
        found: list[tuple[int, Box]] = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            region = self._moving[y : y + h, x : x + w]
            pixels = cv2.countNonZero(region)
            if pixels < self._min_pixels:
                continue
            # What changed since the previous analysed frame (raw frames: the min would
            # hide it), in the blob's box only.
            moved = cv2.absdiff(raw[y : y + h, x : x + w], prev[y : y + h, x : x + w])
            _, moved = cv2.threshold(moved, self._active_threshold, 255, cv2.THRESH_BINARY)
            if cv2.countNonZero(moved) < self._min_active:
                continue
            if pixels >= _LIT_MIN_SHARE * self._min_pixels and self._lit(x, y, w, h):
                continue
            rx, ry, rw, rh = cv2.boundingRect(region)
            x1, y1, x2, y2 = x + rx, y + ry, x + rx + rw, y + ry + rh
            # Grow to the changed pixels within one box size around it: a fast or bright
            # mover persists only in a sliver, but it changed all over.
            grow = max(rw, rh)
            wx1, wy1 = max(0, x1 - grow), max(0, y1 - grow)
            wx2, wy2 = min(width, x2 + grow), min(height, y2 + grow)
            cx, cy, cw, ch = cv2.boundingRect(self._changed[wy1:wy2, wx1:wx2])
            if cw:
                x1, y1 = min(x1, wx1 + cx), min(y1, wy1 + cy)
                x2, y2 = max(x2, wx1 + cx + cw), max(y2, wy1 + cy + ch)
            found.append((pixels, self._full_frame(x1, y1, x2, y2)))
        found.sort(key=lambda item: item[0], reverse=True)
        return tuple(box for _, box in found[: self._cfg.max_boxes])

    def _lit(self, x: int, y: int, w: int, h: int) -> bool:
        """Whether a blob's moving pixels still show the background's structure (a lamp,
        a cloud's shadow: light, not a mover; the test of step 3, on one blob)."""
        # Every other row: the blob is large (at least _LIT_MIN_SHARE x min_area).
        mask = self._moving[y : y + h : 2, x : x + w]
        b = self._bg8[y : y + h : 2, x : x + w]
        mean_b, std_b = cv2.meanStdDev(b, mask=mask)
        if std_b[0, 0] < _LIT_MIN_STD:
            return False  # flat ground: light and a mover look alike, keep it
        # The frame itself, not the de-rain minimum: where a bright mover is now, the
        # minimum shows the ground it covered in the previous frame. (After the swap in
        # analyse, the current blurred frame is _prev_raw; gain and offset do not change
        # a correlation.)
        f = self._prev_raw[y : y + h : 2, x : x + w]
        mean_f, std_f = cv2.meanStdDev(f, mask=mask)
        if std_f[0, 0] < 1e-3:
            return False
        product = cv2.multiply(f, b, dtype=cv2.CV_32F)
        cov = cv2.mean(product, mask=mask)[0] - mean_f[0, 0] * mean_b[0, 0]
        return bool(cov / (std_f[0, 0] * std_b[0, 0]) >= _LIT_CORRELATION)

    def _full_frame(self, x1: int, y1: int, x2: int, y2: int) -> Box:
        sx, sy = self._sx, self._sy
        return (
            int(x1 * sx),
            int(y1 * sy),
            min(self._geo.width, math.ceil(x2 * sx)),
            min(self._geo.height, math.ceil(y2 * sy)),
        )

    def _zones(self) -> tuple[str, ...]:
        touched = []
        for name, zone in self._regions.zones:
            cv2.bitwise_and(self._moving, zone, dst=self._scratch)
            if cv2.countNonZero(self._scratch):
                touched.append(name)
        return tuple(touched)
