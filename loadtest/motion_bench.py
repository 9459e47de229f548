"""Cost of the motion gate per 1280x720 JPEG frame, on one core.

    python -m loadtest.motion_bench [--frames N] [--rounds R] [--video PATH]

Frames come from a real clip in ../shared/data (re-encoded JPEG q80) when present, else
from the synthetic scene. Measured in the same run, rounds interleaved, medians reported:

* motion:   ``MotionDetector.process`` with ``analysis_fps=0`` (every frame analysed);
* decode:   the bare reduced grayscale decode it starts with (same reduction factor);
* naive:    full colour decode + ``cv2.createBackgroundSubtractorMOG2`` at full size;
* motion @30fps: the default config on a 30 fps camera (most frames are paced, not analysed).

Prints a table, then one line of JSON with the figures and both ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from functions.motion import MotionDetector
from functions.motion.decode import geometry
from tripwire.app.scenes import Scene, Walker, encode
from tripwire.camera_config import CameraConfig, MotionConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = SHARED_DATA / "video_warehouse_cctv_forklift3" / "forklift3.mp4"
WIDTH, HEIGHT = 1280, 720
HASH = "sha256:" + "0" * 64
_REDUCED = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def load_frames(count: int, video: Path | None) -> tuple[list[bytes], str]:
    """``count`` 1280x720 JPEGs (q80) and where they came from."""
    path = video if video is not None else (CLIP if CLIP.is_file() else None)
    out: list[bytes] = []
    if path is not None:
        cap = cv2.VideoCapture(str(path))
        while len(out) < count:
            ok, frame = cap.read()
            if not ok:
                break
            frame = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
            out.append(encode(frame, ".jpg", 80))
        cap.release()
        if out:
            return out, str(path)
    scene = Scene(seed=1, walkers=[Walker(x=-100, y=300, w=100, h=240, vx=200, start_s=1.0)])
    return [scene.jpeg(i) for i in range(count)], "synthetic scene (tripwire/app/scenes.py)"


def camera(**motion: object) -> CameraConfig:
    return CameraConfig(id="bench", token_hash=HASH, motion=MotionConfig.model_validate(motion))


def run_motion(frames: list[bytes], fps: float, analysis_fps: float | None) -> Callable[[], None]:
    cfg = camera() if analysis_fps is None else camera(analysis_fps=analysis_fps)
    period = round(1e9 / fps)
    state = {"t": 0}

    def run() -> None:
        detector = MotionDetector(cfg)
        t = state["t"]
        for body in frames:
            detector.process(body, t)
            t += period
        state["t"] = t + 10**12  # a fresh detector per round; keep capture times moving

    return run


def run_decode(frames: list[bytes]) -> Callable[[], None]:
    factor = geometry(WIDTH, HEIGHT, MotionConfig().analysis_height).factor
    flags = _REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    buffers = [np.frombuffer(body, np.uint8) for body in frames]

    def run() -> None:
        for buf in buffers:
            cv2.imdecode(buf, flags)

    return run


def run_naive(frames: list[bytes]) -> Callable[[], None]:
    buffers = [np.frombuffer(body, np.uint8) for body in frames]

    def run() -> None:
        mog = cv2.createBackgroundSubtractorMOG2()
        for buf in buffers:
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if frame is not None:
                mog.apply(frame)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--video", type=Path, default=None, help="clip to take frames from")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)

    frames, source = load_frames(args.frames, args.video)
    n = len(frames)
    cases = {
        "motion": run_motion(frames, 30.0, 0.0),
        "decode": run_decode(frames),
        "naive": run_naive(frames),
        "motion@30fps": run_motion(frames, 30.0, None),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for warm_up in cases.values():  # allocations, code paths, caches
        warm_up()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) / n * 1e3)
    ms = {name: statistics.median(values) for name, values in samples.items()}

    naive_over_motion = ms["naive"] / ms["motion"]
    motion_over_decode = ms["motion"] / ms["decode"]
    kb = sum(map(len, frames)) / n / 1024
    print(f"{n} frames of {WIDTH}x{HEIGHT} JPEG q80 (~{kb:.0f} KB) from {source}")
    print(f"one thread, {args.rounds} interleaved rounds, median ms/frame\n")
    print(f"{'':<34}{'ms/frame':>10}{'frames/s':>10}{'vs motion':>11}")
    labels = {
        "motion": "motion, every frame analysed",
        "decode": "bare reduced grayscale decode",
        "naive": "naive: colour decode + MOG2 full",
        "motion@30fps": "motion, 30 fps camera, default",
    }
    for name, label in labels.items():
        print(
            f"{label:<34}{ms[name]:>10.3f}{1e3 / ms[name]:>10.0f}{ms[name] / ms['motion']:>10.2f}x"
        )
    print(f"\nnaive / motion = {naive_over_motion:.1f}x (goal >= 8)")
    print(f"motion / decode = {motion_over_decode:.2f}x (goal <= 1.5)")
    cfg = MotionConfig()
    print(
        json.dumps(
            {
                "frames": n,
                "source": source,
                "jpeg_kb": round(kb, 1),
                "ms_per_frame": {k: round(v, 4) for k, v in ms.items()},
                "frames_per_s": {k: round(1e3 / v, 1) for k, v in ms.items()},
                "naive_over_motion": round(naive_over_motion, 2),
                "motion_over_decode": round(motion_over_decode, 3),
                "default_analysis_fps": cfg.analysis_fps,
                "analysis_height": cfg.analysis_height,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
