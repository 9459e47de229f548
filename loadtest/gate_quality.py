"""Recall and wake rates of the motion gate, on synthetic scenes and real clips, at 1, 5
frames/s and the full frame rate.

    python -m loadtest.gate_quality [--only NAME,...] [--cache DIR] [--no-clips]

Every scene is rendered once at its full rate (synthetic: 10 fps, 1280x720, JPEG q80
unless the case says otherwise; real clips: their own rate, re-encoded JPEG q80), and
the same frames feed three cameras with the default motion config: one that gets every
frame, one every frame 0.2 s apart, one every frame 1 s apart. Each camera is judged in
steady state, from its first decision after the start-up calibration:

* recall: of the frames sent while a mover is in view, the share with an event open;
* wakes: events opened while no mover is in view (for a nuisance scene, every event);
* open: of the frames sent while no mover is in view, the share with an event open (an
  event that opened on a nuisance and never closes is one wake, open all the time);
* relearn: the share of analysed frames spent re-learning the background (a lighting
  change was taken); a busy scene taken for lighting is blind for that share.

Real clips have no per-frame truth but CDnet's: people1, the overhead crowd and the
forklift have movers in view throughout; the warehouse with the forklift's half frozen
(only the clock and sensor noise left) has none.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from functions.motion import MotionDetector, MotionResult
from tripwire.app.scenes import (
    Cloud,
    Foliage,
    Lamp,
    Scene,
    Walker,
    crowd,
    dusk,
    encode,
    lights_on,
)
from tripwire.camera_config import CameraConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HASH = "sha256:" + "0" * 64
RATES: tuple[float | None, ...] = (1.0, 5.0, None)  # None: every frame
SECONDS = 30.0
# Bump when a scene changes: the frame cache is keyed by name and this.
SCENES_VERSION = 1


@dataclass(frozen=True)
class Case:
    name: str
    scene: Scene
    quality: int = 80


def _walkers(*walkers: Walker) -> list[Walker]:
    return list(walkers)


def _crossings(y: int, w: int, h: int, speed: float, first_s: float = 6.0) -> list[Walker]:
    """People crossing one after another, alternating sides, with a pause in between."""
    out, t, left = [], first_s, True
    while t < SECONDS:
        span = (1280 + w) / speed
        x = -w if left else 1280
        out.append(
            Walker(x=x, y=y, w=w, h=h, vx=speed if left else -speed, start_s=t, end_s=t + span)
        )
        t, left = t + span + 4.0, not left
    return out


def synthetic_cases() -> list[Case]:

    def night(t: float) -> tuple[float, float]:
        return 0.18, 0.0

    return [
        Case("noise", Scene(seed=1, noise=6.0)),
        Case("crossing", Scene(seed=2, walkers=_crossings(300, 90, 220, 150.0))),
        Case(
            "small-distant",
            Scene(
                seed=3,
                walkers=[
                    Walker(x=200, y=150, w=14, h=36, vx=25, start_s=6.0),
                    Walker(x=1000, y=420, w=12, h=30, vx=-20, vy=3, start_s=6.0, contrast=35),
                ],
            ),
        ),
        Case("lights-on", Scene(seed=4, light=lights_on(15.0))),
        Case("dusk", Scene(seed=5, noise=6.0, light=dusk(8.0, 20.0, 0.15))),
        Case(
            "rain+walker",
            Scene(seed=7, rain=1200, rain_shade=230, walkers=_crossings(320, 60, 150, 100.0)),
        ),
        Case(
            "foliage",
            Scene(
                seed=8, foliage=[Foliage(100, 60, 260, 300), Foliage(850, 200, 300, 380, seed=1)]
            ),
        ),
        Case("clouds", Scene(seed=9, clouds=[Cloud(-300, 300, vx=70), Cloud(1400, 600, vx=-50)])),
        Case("shake", Scene(seed=10, shake=3.0)),
        Case("shake+walker", Scene(seed=11, shake=3.0, walkers=_crossings(280, 70, 180, 120.0))),
        Case("ir-switch", Scene(seed=12, ir_at_s=15.0)),
        Case(
            "lamp-flicker",
            Scene(seed=13, lamps=[Lamp(x=700, y=80, w=300, h=250, at_s=8.0, flicker=0.6)]),
        ),
        Case("snow+walker", Scene(seed=14, snow=800, walkers=_crossings(300, 60, 160, 110.0))),
        Case(
            "creeper",
            Scene(seed=15, walkers=[Walker(x=500, y=300, w=60, h=160, vx=12, start_s=6.0)]),
        ),
        Case("night-noise", Scene(seed=21, noise=12.0, light=night)),
        Case(
            "night-dim",
            Scene(seed=16, noise=12.0, light=night, walkers=_crossings(330, 60, 160, 110.0)),
        ),
        Case("jpeg-q15", Scene(seed=17, walkers=_crossings(300, 70, 180, 130.0)), quality=15),
        Case("crowd-15", Scene(seed=18, walkers=crowd(15, 18, seconds=SECONDS))),
        Case("crowd-40", Scene(seed=19, walkers=crowd(40, 19, seconds=SECONDS))),
        Case("crowd-near", Scene(seed=20, walkers=crowd(12, 20, seconds=SECONDS, scale=3.0))),
    ]


@dataclass
class Clip:
    """Frames of one scene: (capture_ns, JPEG, mover in view), rendered once."""

    name: str
    fps: float
    frames: list[tuple[int, bytes, bool]] = field(default_factory=list)


def render(case: Case) -> Clip:
    scene = case.scene
    clip = Clip(case.name, scene.fps)
    for i in range(scene.frame_count(SECONDS)):
        body = encode(scene.bgr(i), ".jpg", case.quality)
        clip.frames.append((scene.capture_ns(i), body, bool(scene.boxes(i))))
    return clip


def jpeg(frame: np.ndarray) -> bytes:
    return encode(frame, ".jpg", 80)


def read_video(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield int(cap.get(cv2.CAP_PROP_FPS) * 1000), frame
    finally:
        cap.release()


def video_clip(name: str, path: Path, truth: Callable[[int], bool]) -> Clip:
    fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS)
    clip = Clip(name, fps)
    for k, (_, frame) in enumerate(read_video(path)):
        clip.frames.append((round(k * 1e9 / fps), jpeg(frame), truth(k)))
    return clip


def warehouse_clock(path: Path) -> Clip:
    """The warehouse with the forklift's half frozen (frame 270): the clock, noise only."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.set(cv2.CAP_PROP_POS_FRAMES, 270)
    ok, frozen = cap.read()
    cap.release()
    assert ok
    clip = Clip("warehouse-clock", fps)
    for k, (_, frame) in enumerate(read_video(path)):
        still = frozen.copy()
        still[:, :640] = frame[:, :640]
        clip.frames.append((round(k * 1e9 / fps), jpeg(still), False))
    return clip


def real_clips() -> list[tuple[str, Callable[[], Clip]]]:
    d = SHARED_DATA
    if not d.is_dir():
        return []
    highway = d / "cdnet2014_highway"

    def highway_clip() -> Clip:
        with (highway / "motion_per_frame_from_groundtruth.csv").open() as f:
            px = {int(r["frame"]): int(r["motion_px(255)"]) for r in csv.DictReader(f)}
        video = highway / "highway_in000470-001700_derived_mjpg.avi"
        return video_clip("cdnet-highway", video, lambda k: px.get(470 + k, 0) > 500)

    forklift = d / "video_warehouse_cctv_forklift3" / "forklift3.mp4"
    return [
        (
            "people1",
            lambda: video_clip(
                "people1", d / "video_street_crossing_people1" / "people1.mp4", lambda k: True
            ),
        ),
        (
            "overhead-crowd",
            lambda: video_clip(
                "overhead-crowd", d / "video_overhead_crowd_vtest" / "vtest.avi", lambda k: True
            ),
        ),
        ("cdnet-highway", highway_clip),
        ("forklift", lambda: video_clip("forklift", forklift, lambda k: True)),
        ("warehouse-clock", lambda: warehouse_clock(forklift)),
    ]


def cached(cache: Path | None, key: str, make: Callable[[], Clip]) -> Clip:
    if cache is None:
        return make()
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"
    if path.is_file():
        with path.open("rb") as f:
            clip: Clip = pickle.load(f)
            return clip
    clip = make()
    cache.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(clip, f)
    return clip


@dataclass
class Score:
    mover_frames: int = 0
    recalled: int = 0
    empty_frames: int = 0
    open_empty: int = 0
    wakes: int = 0
    events: int = 0
    analysed: int = 0
    relearning: int = 0
    judged_s: float = 0.0

    def cell(self) -> str:
        recall = f"{self.recalled / self.mover_frames:4.0%}" if self.mover_frames else "   -"
        opened = f"{self.open_empty / self.empty_frames:4.0%}" if self.empty_frames else "   -"
        relearn = self.relearning / self.analysed if self.analysed else 0.0
        return f"{recall} {self.wakes:2d} {opened} {relearn:4.0%}"


def judge(clip: Clip, rate: float | None) -> Score:
    detector = MotionDetector(CameraConfig.model_validate({"id": "q", "token_hash": HASH}))
    step = 1 if rate is None else max(1, round(clip.fps / rate))
    score = Score()
    steady = False
    previous_mover = False
    start_ns = 0
    last_ns = 0
    for capture_ns, body, mover in clip.frames[::step]:
        result: MotionResult = detector.process(body, capture_ns)
        if not steady:
            if result.calibrating:
                previous_mover = mover
                continue
            steady, start_ns = True, capture_ns
        last_ns = capture_ns
        if result.analysed:
            score.analysed += 1
            score.relearning += result.calibrating
        if mover:
            score.mover_frames += 1
            score.recalled += result.motion
        else:
            score.empty_frames += 1
            score.open_empty += result.motion
        if result.event_opened:
            score.events += 1
            # A wake counts as false when nobody was in view now or in the frame before.
            score.wakes += not (mover or previous_mover)
        previous_mover = mover
    score.judged_s = (last_ns - start_ns) / 1e9
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--cache", type=Path, default=None, help="keep rendered frames here")
    parser.add_argument("--no-clips", action="store_true", help="synthetic scenes only")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    only = {n for n in args.only.split(",") if n}

    makers: list[tuple[str, str, Callable[[], Clip]]] = []
    for case in synthetic_cases():
        makers.append((case.name, f"{case.name}:{SCENES_VERSION}", partial(render, case)))
    if not args.no_clips:
        for name, make in real_clips():
            makers.append((name, f"clip:{name}", make))
    header = f"{'scene':<20}" + "".join(f"{label:>22}" for label in ("1 fps", "5 fps", "full rate"))
    print("per frame rate: recall, false wakes, open share without movers, re-learning\n")
    print(header)
    started = time.perf_counter()
    for name, key, make in makers:
        if only and name not in only:
            continue
        clip = cached(args.cache, key, make)
        cells = [judge(clip, rate).cell() for rate in RATES]
        label = f"{name} ({clip.fps:.0f})" if not math.isclose(clip.fps, 10.0) else name
        print(f"{label:<20}" + "".join(f"{c:>22}" for c in cells), flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
