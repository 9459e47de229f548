"""Detector throughput and per-stage latency: batch size 1 against dynamic batching.

The real path, in one process: 720p JPEG motion frames are queued on an embedded NATS server
(a backlog, as after a burst of motion), then the detector's own loop (``collect`` +
``process_batch``, as in ``Detector.run``) decodes, infers, archives to a local folder,
publishes the results and acks, once with ``batch_size`` 1 and once with B. Stage figures are
milliseconds per frame: decode (header parse + JPEG decode, batch wall / frames);
preprocess, inference, postprocess (ultralytics' per-image figures); infer wall (the batched
call, wall / frames); archive, publish, ack (each frame's own latency; frames of a batch
overlap there). Also the process RSS after warm-up.

    python -m loadtest.detector_bench [--weights yolo11n.yaml] [--frames 64] [--batch 8]
                                      [--task detect|classify] [--imgsz N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from functions.detector.model import Image, Model, ModelOptions, Task
from functions.detector.worker import Detector, StageTimes
from loadtest.clips import SHARED_DATA, find_video
from tripwire.archive.local import LocalArchive
from tripwire.brokers.jetstream import JetStreamBroker
from tripwire.brokers.settings import NatsSettings
from tripwire.camera_config import CamerasFile
from tripwire.contract import FrameMeta, alerts_subject, detections_subject, motion_subject
from tripwire.embedded_nats import EmbeddedNats
from tripwire.settings import DetectorSettings

# Busy scenes first: boxes make postprocess, results and archive do real work.
CLIPS = ("video_overhead_crowd_vtest", "video_warehouse_cctv_forklift3", "accident_crash_cctv_clip")
STAGES = (
    "decode",
    "preprocess",
    "inference",
    "postprocess",
    "infer_wall",
    "archive",
    "publish",
    "ack",
)


def rss_mib(field_name: str = "VmRSS") -> float:
    """This process's resident memory (or VmHWM, its peak) from /proc, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load_frames(n: int, quality: int = 80) -> tuple[list[bytes], str]:
    """``n`` distinct 1280x720 JPEGs spread over a shared-data clip; synthetic without one."""
    for folder in CLIPS:
        video = find_video(SHARED_DATA / folder)
        if video is None:
            continue
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or n
        step = max(1, total // n)
        out: list[bytes] = []
        index = 0
        while len(out) < n:
            ok, frame = cap.read()
            if not ok:
                if index == 0:
                    break
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # short clip: go round again
                continue
            if index % step == 0:
                frame = cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_AREA)
                out.append(_jpeg(frame, quality))
            index += 1
        cap.release()
        if len(out) == n:
            return out, video.name
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(n):
        small = rng.integers(0, 255, size=(45, 80, 3), dtype=np.uint8)
        frames.append(_jpeg(cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC), quality))
    return frames, "synthetic"


def decode(data: bytes) -> Image:
    image = cast("Image | None", cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    if image is None:
        raise RuntimeError("JPEG decode failed")
    return image


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encode failed")
    return buf.tobytes()


@dataclass
class Run:
    batch_size: int
    frames: int = 0
    wall_s: float = 0.0
    batches: list[StageTimes] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)
    found: int = 0  # boxes (detect) or labels (classify), all frames together

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def per_frame_ms(self) -> dict[str, float]:
        total = sum(b.frames for b in self.batches) or 1
        sums = {
            "decode": sum(b.decode_ms for b in self.batches),
            "preprocess": sum(b.preprocess_ms for b in self.batches),
            "inference": sum(b.inference_ms for b in self.batches),
            "postprocess": sum(b.postprocess_ms for b in self.batches),
            "infer_wall": sum(b.infer_wall_ms for b in self.batches),
            "archive": sum(b.archive_ms for b in self.batches),
            "publish": sum(b.publish_ms for b in self.batches),
            "ack": sum(b.ack_ms for b in self.batches),
        }
        return {k: round(v / total, 2) for k, v in sums.items()}

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.batch_ms)
        return {
            "batch_size": self.batch_size,
            "frames": self.frames,
            "batches": len(self.batches),
            "mean_batch": round(self.frames / max(1, len(self.batches)), 2),
            "fps": round(self.fps, 2),
            "wall_s": round(self.wall_s, 3),
            "ms_per_frame": self.per_frame_ms(),
            "batch_ms_p50": round(statistics.median(ordered), 1) if ordered else None,
            # nearest rank: with few batches this is the slowest one
            "batch_ms_p95": round(ordered[math.ceil(0.95 * len(ordered)) - 1], 1)
            if ordered
            else None,
            "found": self.found,
        }


async def one_run(
    url: str, model: Model, frames: list[bytes], batch_size: int, workdir: Path
) -> Run:
    """Queue every frame, then drain the queue through the detector loop."""
    tag = uuid.uuid4().hex[:8]
    camera = f"bench-{tag}"  # subjects of one run's streams must not overlap another's
    nats = NatsSettings(
        stream=f"BENCH_M_{tag}",
        subjects=[motion_subject(camera)],
        results_stream=f"BENCH_R_{tag}",
        results_subjects=[detections_subject(camera), alerts_subject(camera)],
        dead_stream=f"BENCH_D_{tag}",
        dead_prefix=f"bench{tag}.dead",
        durable=f"bench_{tag}",
    )
    broker = JetStreamBroker(url, nats, connect_timeout_s=10, publish_timeout_s=10)
    await broker.connect()
    archive = LocalArchive(workdir / f"archive-{tag}")  # fsync on: the embedded default
    await archive.ensure()
    settings = DetectorSettings(
        home=workdir, batch_size=batch_size, batch_wait_ms=50, fetch_wait_s=0.5
    )
    detector = Detector(settings, CamerasFile(), broker, archive, model)
    base = time.time_ns()
    height, width = decode(frames[0]).shape[:2]
    for seq, data in enumerate(frames):
        meta = FrameMeta(
            camera=camera, seq=seq, capture_ns=base + seq * 40_000_000,
            receive_ns=base + seq * 40_000_000 + 1_000_000, width=width, height=height,
            content_type="image/jpeg", motion_score=0.05,
        )  # fmt: skip
        await broker.publish(motion_subject(camera), data, meta.to_headers())
    run = Run(batch_size)
    started = time.perf_counter()
    try:
        while detector.counts.acked < len(frames):
            messages = await detector.collect()
            if not messages:
                continue
            t0 = time.perf_counter()
            times = await detector.process_batch(messages)
            run.batch_ms.append((time.perf_counter() - t0) * 1000)
            run.batches.append(times)
        run.wall_s = time.perf_counter() - started
        run.frames = detector.counts.acked
        run.found = int(
            sum(
                sample.value
                for family in detector.metrics.registry.collect()
                for sample in family.samples
                if sample.name == "tripwire_detector_detections_total"
            )
        )
    finally:
        await archive.close()
        await broker.close()
    return run


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    frames, source = load_frames(args.frames)
    with tempfile.TemporaryDirectory(prefix="tripwire-bench-") as tmp:
        workdir = Path(tmp)
        server = EmbeddedNats.start(workdir / "nats")
        try:
            task: Task | None = args.task
            options = ModelOptions(weights=args.weights, task=task, imgsz=args.imgsz)
            model = await asyncio.to_thread(Model, options, workdir / "ultralytics")
            # Warm every batch shape once, so neither run pays a first-call cost.
            for size in sorted({1, args.batch}):
                images = [decode(frames[i % len(frames)]) for i in range(size)]
                await asyncio.to_thread(model.predict, images)
            del images
            rss_warm = rss_mib()
            runs = [
                await one_run(server.url, model, frames, size, workdir)
                for size in sorted({1, args.batch})
            ]
        finally:
            server.stop()
    result: dict[str, Any] = {
        "bench": "detector",
        "weights": args.weights,
        "model": model.name,
        "task": model.task,
        "untrained": model.untrained,
        "device": model.device,
        "imgsz": model.imgsz,
        "source": source,
        "frame": "1280x720 JPEG q80",
        "jpeg_kib": round(sum(map(len, frames)) / len(frames) / 1024, 1),
        "model_load_s": round(model.load_s, 2),
        "first_inference_s": round(model.first_inference_s, 2),
        "rss_mib_after_warmup": round(rss_warm, 1),
        "rss_mib_peak": round(rss_mib("VmHWM"), 1),
        "runs": [r.summary() for r in runs],
    }
    if len(runs) == 2 and runs[0].fps:
        result["speedup"] = round(runs[1].fps / runs[0].fps, 2)
    return result


def table(result: dict[str, Any]) -> str:
    head = (
        f"detector benchmark: {result['weights']} ({result['task']}, {result['device']}, "
        f"imgsz {result['imgsz']}{', untrained' if result['untrained'] else ''}); "
        f"{result['runs'][0]['frames']} frames {result['frame']} ({result['jpeg_kib']} KiB) "
        f"from {result['source']}; embedded NATS + local archive (fsync)\n"
        f"model load {result['model_load_s']}s, first inference {result['first_inference_s']}s, "
        f"RSS after warm-up {result['rss_mib_after_warmup']} MiB "
        f"(peak {result['rss_mib_peak']} MiB)\n"
        "ms per frame:\n"
    )
    cols = ["batch", "batches", "fps", *STAGES, "batch_p50", "batch_p95", "found"]
    widths = [6, 8, 7] + [max(8, len(s) + 1) for s in STAGES] + [10, 10, 7]
    lines = ["".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))]
    for run in result["runs"]:
        ms = run["ms_per_frame"]
        values = [
            run["batch_size"], run["batches"], f"{run['fps']:.2f}",
            *(f"{ms[s]:.1f}" for s in STAGES),
            f"{run['batch_ms_p50']:.0f}", f"{run['batch_ms_p95']:.0f}", run["found"],
        ]  # fmt: skip
        lines.append("".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))
    if "speedup" in result:
        lines.append(f"dynamic batching: {result['speedup']}x the frames/s of batch size 1")
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="yolo11n.yaml", help="model weights or .yaml")
    parser.add_argument("--task", choices=["detect", "classify"], default=None)
    parser.add_argument("--frames", type=int, default=64, help="frames per run")
    parser.add_argument("--batch", type=int, default=8, help="dynamic batch size to compare")
    parser.add_argument("--imgsz", type=int, default=None, help="default: the model's own")
    args = parser.parse_args()
    if args.weights.endswith(".tflite") and args.task is None:
        args.task = "detect"  # a LiteRT export does not say its task
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(bench(args))
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
