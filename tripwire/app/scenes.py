"""Synthetic camera scenes: a textured still background with fresh sensor noise every frame,
plus the things a motion gate must see (walkers) and must ignore (lights, dusk, rain).

Every frame is a pure function of (scene, frame index), so tests are deterministic and a
simulator can render any frame on demand::

    scene = Scene(walkers=[Walker(x=-120, y=300, w=120, h=260, vx=300)], rain=400)
    for i in range(scene.frame_count(seconds=10)):
        body, capture_ns = scene.jpeg(i), scene.capture_ns(i)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

Image = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]
# t (seconds) -> (gain, offset) applied to the whole picture before the sensor noise.
Light = Callable[[float], tuple[float, float]]

_NOISE_BANK = 8


@dataclass(frozen=True)
class Walker:
    """A person-like upright box (body, head, legs) moving at constant speed.

    Position is the top-left corner at ``start_s``, in full-frame pixels; speed in px/s.
    ``shade`` is the body's gray level (head lighter, legs darker); None picks one that
    stands out by ``contrast`` from the median background along the first 3 s of its path.
    """

    x: float
    y: float
    w: int = 60
    h: int = 160
    vx: float = 0.0
    vy: float = 0.0
    start_s: float = 0.0
    end_s: float = math.inf
    shade: int | None = None
    contrast: int = 60

    def box(self, t: float) -> tuple[int, int, int, int] | None:
        """(x1, y1, x2, y2) at time ``t``, or None when not in the scene then."""
        if not self.start_s <= t < self.end_s:
            return None
        dt = t - self.start_s
        x, y = round(self.x + self.vx * dt), round(self.y + self.vy * dt)
        return x, y, x + self.w, y + self.h


@dataclass(frozen=True)
class Flash:
    """A box shown in exactly one frame (a bird, a reflection, a glitch)."""

    frame: int
    x: int
    y: int
    w: int
    h: int
    shade: int = 240


@dataclass(frozen=True)
class Lamp:
    """A light that switches on at ``at_s`` and brightens one area (soft-edged) by ``gain``."""

    x: int
    y: int
    w: int
    h: int
    at_s: float
    gain: float = 1.8
    flicker: float = 0.0  # a failing lamp: each frame it lights up to this share less

    def map(self, width: int, height: int) -> FloatImage:
        canvas = np.zeros((height, width), np.float32)
        canvas[self.y : self.y + self.h, self.x : self.x + self.w] = 1.0
        soft = max(3, (min(self.w, self.h) // 4) | 1)
        return cv2.GaussianBlur(canvas, (soft, soft), 0) * np.float32(self.gain - 1.0) + 1.0


@dataclass(frozen=True)
class Foliage:
    """A tree crown that sways: leaf texture moving ``sway`` px back and forth at ``hz``,
    with a little gust jitter every frame."""

    x: int
    y: int
    w: int
    h: int
    sway: float = 6.0
    hz: float = 0.6
    seed: int = 0

    def draw(self, img: FloatImage, t: float, rng: np.random.Generator) -> None:
        pad = int(self.sway * 2 + 4)
        leaves, mask = self._leaves
        dx = self.sway * math.sin(2 * math.pi * self.hz * t) + float(rng.normal(0, 1.0))
        dy = 0.3 * self.sway * math.cos(2 * math.pi * self.hz * 1.3 * t)
        move = _translation(dx, dy)
        size = (self.w + 2 * pad, self.h + 2 * pad)
        moved = cv2.warpAffine(leaves, move, size, borderMode=cv2.BORDER_REFLECT)
        alpha = cv2.warpAffine(mask, move, size)
        height, width = img.shape
        x1, y1 = max(0, self.x - pad), max(0, self.y - pad)
        x2, y2 = min(width, self.x + self.w + pad), min(height, self.y + self.h + pad)
        ox, oy = x1 - (self.x - pad), y1 - (self.y - pad)
        a = alpha[oy : oy + y2 - y1, ox : ox + x2 - x1]
        region = img[y1:y2, x1:x2]
        region *= 1.0 - a
        region += a * moved[oy : oy + y2 - y1, ox : ox + x2 - x1]

    @cached_property
    def _leaves(self) -> tuple[FloatImage, FloatImage]:
        pad = int(self.sway * 2 + 4)
        rng = np.random.default_rng((self.seed, 5))
        h, w = self.h + 2 * pad, self.w + 2 * pad
        grain = rng.normal(0, 1, (h, w)).astype(np.float32)
        blurred = np.asarray(cv2.GaussianBlur(grain, (0, 0), 3.0), np.float32)
        leaves = blurred * np.float32(35.0 / (float(blurred.std()) + 1e-6)) + np.float32(90.0)
        crown = np.zeros((h, w), np.float32)
        cv2.ellipse(crown, (w // 2, h // 2), (self.w // 2, self.h // 2), 0, 0, 360, 1.0, -1)
        mask = np.asarray(cv2.GaussianBlur(crown, (0, 0), 4.0), np.float32)
        return leaves, mask


@dataclass(frozen=True)
class Cloud:
    """A cloud's shadow: a large soft dark patch sweeping across at ``vx`` px/s."""

    x: float
    y: float
    radius: float = 300.0
    vx: float = 60.0
    darkness: float = 0.45

    def map(self, width: int, height: int, t: float) -> FloatImage:
        cx, cy = self.x + self.vx * t, self.y
        step = 8  # a smooth field: compute it coarse, then upscale
        ys, xs = np.mgrid[0:height:step, 0:width:step].astype(np.float32)
        d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / np.float32(2 * self.radius**2)
        small = 1.0 - np.float32(self.darkness) * np.exp(-d2)
        up = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return cast(FloatImage, up)


@dataclass(frozen=True)
class Scene:
    width: int = 1280
    height: int = 720
    fps: float = 10.0
    seed: int = 0
    noise: float = 4.0  # sensor noise sigma, gray levels, fresh every frame
    walkers: Sequence[Walker] = ()
    flashes: Sequence[Flash] = ()
    light: Light | None = None
    lamps: Sequence[Lamp] = ()
    rain: int = 0  # streaks per frame, redrawn at random every frame
    rain_shade: int = 210
    rain_width: int = 1
    start_ns: int = 1_700_000_000_000_000_000
    snow: int = 0  # flakes per frame (bright dots, 1-3 px radius), redrawn every frame
    shake: float = 0.0  # camera on a pole: the picture moves up to this many px every frame
    foliage: Sequence[Foliage] = ()
    clouds: Sequence[Cloud] = ()
    ir_at_s: float | None = None  # day/night switch: another tone curve and gain per material

    def frame_count(self, seconds: float) -> int:
        return round(seconds * self.fps)

    def time_s(self, index: int) -> float:
        return index / self.fps

    def capture_ns(self, index: int) -> int:
        return self.start_ns + round(index * 1e9 / self.fps)

    def boxes(self, index: int) -> list[tuple[int, int, int, int]]:
        """Where the walkers are in this frame (clipped to the frame), for assertions."""
        out = []
        for walker in self.walkers:
            box = walker.box(self.time_s(index))
            if box is None:
                continue
            x1, y1 = max(0, box[0]), max(0, box[1])
            x2, y2 = min(self.width, box[2]), min(self.height, box[3])
            if x2 > x1 and y2 > y1:
                out.append((x1, y1, x2, y2))
        return out

    def gray(self, index: int) -> Image:
        t = self.time_s(index)
        rng = np.random.default_rng((self.seed, 0, index))
        img = self._background.copy()
        for walker, shade in zip(self.walkers, self._shades, strict=True):
            box = walker.box(t)
            if box is not None:
                _draw_walker(img, box, shade, self._texture)
        for flash in self.flashes:
            if flash.frame == index:
                img[flash.y : flash.y + flash.h, flash.x : flash.x + flash.w] = flash.shade
        for tree in self.foliage:
            tree.draw(img, t, rng)
        for lamp, gain_map in zip(self.lamps, self._lamp_maps, strict=True):
            if t >= lamp.at_s:
                if lamp.flicker:
                    share = float(rng.uniform(1.0 - lamp.flicker, 1.0))
                    img *= 1.0 + (gain_map - 1.0) * np.float32(share)
                else:
                    img *= gain_map
        for cloud in self.clouds:
            img *= cloud.map(self.width, self.height, t)
        if self.ir_at_s is not None and t >= self.ir_at_s:
            img = self._ir(img)
        if self.light is not None:
            gain, offset = self.light(t)
            cv2.addWeighted(img, gain, img, 0.0, offset, dst=img)
        if self.shake:
            dx, dy = rng.uniform(-self.shake, self.shake, 2)
            size = (self.width, self.height)
            img = np.asarray(
                cv2.warpAffine(img, _translation(dx, dy), size, borderMode=cv2.BORDER_REFLECT),
                np.float32,
            )
        if self.noise > 0:
            img += self._noise_bank[int(rng.integers(_NOISE_BANK))]
        if self.rain:
            _draw_rain(img, rng, self.rain, float(self.rain_shade), self.rain_width)
        if self.snow:
            _draw_snow(img, rng, self.snow)
        out: Image = np.clip(img, 0, 255).astype(np.uint8)
        return out

    def bgr(self, index: int) -> Image:
        return cast(Image, cv2.cvtColor(self.gray(index), cv2.COLOR_GRAY2BGR))

    def jpeg(self, index: int, quality: int = 80) -> bytes:
        return encode(self.bgr(index), ".jpg", quality)

    def png(self, index: int) -> bytes:
        return encode(self.bgr(index), ".png")

    def jpegs(self, count: int, quality: int = 80) -> Iterator[tuple[int, bytes]]:
        """(capture_ns, JPEG) for frames 0..count-1."""
        for i in range(count):
            yield self.capture_ns(i), self.jpeg(i, quality)

    def _ir(self, img: FloatImage) -> FloatImage:
        """Infrared: each material reflects differently (a smooth gain field), the tone
        curve changes (gamma), the picture gets flatter and brighter."""
        ir: FloatImage = np.power(np.clip(img, 0, 255) / np.float32(255), np.float32(0.7))
        return cast(FloatImage, ir * self._ir_gain * np.float32(200.0) + np.float32(20.0))

    @cached_property
    def _ir_gain(self) -> FloatImage:
        rng = np.random.default_rng((self.seed, 3))
        coarse = rng.uniform(0.75, 1.25, (4, 6)).astype(np.float32)
        size = (self.width, self.height)
        return cast(FloatImage, cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC))

    @cached_property
    def _background(self) -> FloatImage:
        return background(self.width, self.height, self.seed)

    @cached_property
    def _lamp_maps(self) -> list[FloatImage]:
        return [lamp.map(self.width, self.height) for lamp in self.lamps]

    @cached_property
    def _shades(self) -> list[int]:
        shades = []
        for walker in self.walkers:
            if walker.shade is not None:
                shades.append(walker.shade)
                continue
            # The median background along the first 3 s of the path: thin lines and edges
            # there must not decide whether the walker is darker or lighter than its ground.
            end = min(walker.end_s, walker.start_s + 3.0)
            first = walker.box(walker.start_s)
            last = walker.box(max(walker.start_s, end - 1e-6))
            assert first is not None and last is not None
            x1 = max(0, min(first[0], last[0]))
            y1 = max(0, min(first[1], last[1]))
            x2 = min(self.width, max(first[2], last[2]))
            y2 = min(self.height, max(first[3], last[3]))
            ground = self._background[y1:y2, x1:x2]
            local = float(np.median(ground)) if ground.size else 128.0
            contrast = -walker.contrast if local >= 128 else walker.contrast
            shades.append(round(local + contrast))
        return shades

    @cached_property
    def _texture(self) -> FloatImage:
        rng = np.random.default_rng((self.seed, 1))
        return rng.normal(0.0, 12.0, (self.height, self.width)).astype(np.float32)

    @cached_property
    def _noise_bank(self) -> list[FloatImage]:
        rng = np.random.default_rng((self.seed, 2))
        shape = (self.height, self.width)
        return [rng.normal(0.0, self.noise, shape).astype(np.float32) for _ in range(_NOISE_BANK)]


def background(width: int, height: int, seed: int) -> FloatImage:
    """A still, textured scene: smooth shading, hard-edged structures, fine grain."""
    rng = np.random.default_rng(seed)
    size = (width, height)

    def field_at(cells: int, amplitude: float) -> FloatImage:
        coarse = rng.uniform(-1, 1, (max(2, height // cells), max(2, width // cells)))
        up = cv2.resize(coarse.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
        return cast(FloatImage, up * np.float32(amplitude))

    img = np.full((height, width), 125.0, np.float32)
    img += field_at(180, 45) + field_at(30, 18) + field_at(2, 6)
    for _ in range(24):  # shelves, doors, boxes: edges a motion detector must not see
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, width // 5)), int(rng.integers(20, height // 4))
        cv2.rectangle(img, (x, y), (x + w, y + h), float(rng.uniform(40, 215)), -1)
    for _ in range(40):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(img, p1, p2, float(rng.uniform(30, 230)), int(rng.integers(1, 4)))
    return np.clip(img, 10, 245)


def _draw_walker(
    img: FloatImage, box: tuple[int, int, int, int], shade: int, texture: FloatImage
) -> None:
    height, width = img.shape
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    head = max(1, h // 7)
    legs = y1 + (h * 5) // 8
    parts = [
        (x1 + w // 4, y1, x2 - w // 4, y1 + head, shade + 70),  # head
        (x1, y1 + head, x2, legs, shade),  # body
        (x1 + w // 8, legs, x1 + w // 2 - 1, y2, shade - 20),  # legs
        (x1 + w // 2 + 1, legs, x2 - w // 8, y2, shade - 20),
    ]
    for px1, py1, px2, py2, value in parts:
        cx1, cy1 = max(0, px1), max(0, py1)
        cx2, cy2 = min(width, max(px2, px1 + 1)), min(height, max(py2, py1 + 1))
        if cx2 > cx1 and cy2 > cy1:
            img[cy1:cy2, cx1:cx2] = value + texture[cy1:cy2, cx1:cx2]


def _draw_rain(
    img: FloatImage, rng: np.random.Generator, count: int, shade: float, thickness: int
) -> None:
    height, width = img.shape
    xs = rng.integers(0, width, count)
    ys = rng.integers(0, height, count)
    lengths = rng.integers(10, 30, count)
    slant = rng.uniform(-0.35, -0.15)  # one wind direction per frame
    for x, y, length in zip(xs.tolist(), ys.tolist(), lengths.tolist(), strict=True):
        end = (int(x + slant * length), int(y + length))
        cv2.line(img, (x, y), end, shade, thickness)


def _translation(dx: float, dy: float) -> FloatImage:
    return np.array([[1, 0, dx], [0, 1, dy]], np.float32)


def _draw_snow(img: FloatImage, rng: np.random.Generator, count: int) -> None:
    height, width = img.shape
    xs = rng.integers(0, width, count)
    ys = rng.integers(0, height, count)
    sizes = rng.integers(1, 4, count)
    for x, y, r in zip(xs.tolist(), ys.tolist(), sizes.tolist(), strict=True):
        cv2.circle(img, (x, y), r, 235.0, -1)


def crowd(
    count: int,
    seed: int,
    width: int = 1280,
    height: int = 720,
    seconds: float = 60.0,
    scale: float = 1.0,
) -> list[Walker]:
    """About ``count`` people in view at any time, walking across at random heights and
    speeds; whoever leaves is followed by someone new entering from a side. ``scale`` 3
    brings them near the camera (90-180 px wide at 720p, as at a street crossing)."""
    rng = np.random.default_rng((seed, 4))
    people = []
    for _ in range(count):
        t, first = 0.0, True
        while t < seconds:
            w = int(rng.integers(30, 60) * scale)
            h = min(height - 1, int(w * rng.uniform(2.2, 2.8)))
            speed = float(rng.uniform(40, 100) * scale) * (1 if rng.random() < 0.5 else -1)
            # The first of each lane starts inside the frame, the next ones enter at a side.
            x = float(rng.uniform(0, width - w)) if first else (-w if speed > 0 else width)
            y = float(rng.uniform(0, height - h))
            end = t + ((width - x) if speed > 0 else (x + w)) / abs(speed)
            vy = float(rng.uniform(-10, 10))
            people.append(Walker(x=x, y=y, w=w, h=h, vx=speed, vy=vy, start_s=t, end_s=end))
            t, first = end, False
    return people


def encode(image: MatLike, ext: str, quality: int = 80) -> bytes:
    """JPEG at ``quality``, or PNG at the fastest compression level."""
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"cv2.imencode({ext}) failed")
    return buf.tobytes()


def lights_on(at_s: float, gain: float = 1.6, offset: float = 25.0) -> Light:
    """Lights switched on at ``at_s``: a sudden global gain and offset."""
    return lambda t: (gain, offset) if t >= at_s else (1.0, 0.0)


def dusk(start_s: float, seconds: float, to_gain: float = 0.25) -> Light:
    """A slow linear fade of the whole picture down to ``to_gain``."""

    def light(t: float) -> tuple[float, float]:
        share = min(1.0, max(0.0, (t - start_s) / seconds))
        return 1.0 + (to_gain - 1.0) * share, 0.0

    return light


def demo_scene(
    seed: int = 0, fps: float = 10.0, period_s: float = 20.0, walkers: int = 30
) -> Scene:
    """A 1280x720 camera for demos: someone crosses every ``period_s`` s, alternating sides.

    Each crossing takes 10 s; frame index i is at i / fps seconds (loop it for longer).
    """
    people = []
    for k in range(walkers):
        start = 5.0 + k * period_s
        left = k % 2 == 0
        people.append(
            Walker(
                x=-80 if left else 1290,
                y=260 + 40 * (k % 3),
                w=70,
                h=180,
                vx=145 if left else -145,
                start_s=start,
                end_s=start + 10.0,
            )
        )
    return Scene(fps=fps, seed=seed, walkers=people)
