"""Two models on one stream, on the crash clip: the accident classifier and the COCO detector.

``python -m loadtest.models_crash [--home DIR] [--cooldown S] [--repeat N]``

Runs ``tripwire up`` (embedded NATS, local archive) with a ``models:`` section of two models,
pushes every frame of ../shared/data/accident_crash_cctv_clip/crash.mp4 once through the
gateway (motion gate on), and prints: the frames the gateway published, the results each
model gave for them (every published frame should have one from both), the frames where
the accident alert's class and a person/car box come from the same frame, the alerts by kind,
the frames archived (once each) and each model's detections objects, and each model's replica
timeline (both scale from zero and back to zero on their own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.frames import clip_jpegs
from tripwire.app.stack import Stack, StackOptions, running_stack
from tripwire.brokers import Broker, open_broker
from tripwire.contract import ALERTS_PREFIX, DETECTIONS_PREFIX
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.starter import read_tokens, write_starter_config

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = DATA / "accident_crash_cctv_clip" / "crash.mp4"
COCO = DATA / "coco_yolov8n_int8_tflite" / "yolov8n_int8.tflite"
ACCIDENT = DATA / "accident_cls_yolov8n_cctv" / "accident_cls_yolov8n-cls_best.pt"
COCO_LABELS = DATA / "coco_yolov8n_int8_tflite" / "coco_labels.txt"


def write_config(home: Path, cooldown_s: int) -> None:
    """The starter config plus the two models and a rule for each."""
    write_starter_config(home, 1, force=True)
    path = home / "cameras.yaml"
    doc = yaml.safe_load(path.read_text())
    scaling = {"cooldown_period_s": cooldown_s, "polling_interval_s": 1}
    labels = [line.strip() for line in COCO_LABELS.read_text().splitlines() if line.strip()]
    doc["models"] = [
        {"name": "coco", "weights": str(COCO), "task": "detect", "labels": labels,
         "device": "cpu", "scaling": scaling},
        {"name": "accident", "weights": str(ACCIDENT), "task": "classify",
         "labels": ["Accident", "Non Accident"], "device": "cpu", "scaling": scaling},
    ]  # fmt: skip
    doc["alerts"] = [
        {"kind": "accident", "classes": ["Accident"], "model": "accident", "min_confidence": 0.5},
        {"kind": "road-user", "classes": ["person", "car"], "model": "coco"},
    ]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def clip_frames(path: Path) -> list[bytes]:
    return [data for _, data in clip_jpegs(path)]


async def _listen(broker: Broker, subject: str, out: list[dict[str, Any]]) -> None:
    async for message in broker.subscribe(subject):
        out.append(json.loads(message.body))


async def _timeline(stack: Stack, rows: list[tuple[float, str, int, int]], t0: float) -> None:
    last: dict[str, tuple[int, int]] = {}
    while True:
        for name, local in stack.models.items():
            now = (local.scaler.replicas, local.pool.running)
            if last.get(name) != now:
                last[name] = now
                rows.append((round(time.monotonic() - t0, 1), name, *now))
        await asyncio.sleep(0.2)


async def run(home: Path, cooldown_s: int, repeat: int) -> dict[str, Any]:
    write_config(home, cooldown_s)
    token = read_tokens(home)["cam-1"]
    os.environ["TRIPWIRE_HOME"] = str(home)
    gateway = GatewaySettings(home=home, port=0, config=home / "cameras.yaml")
    detector = DetectorSettings(home=home, config=home / "cameras.yaml")
    frames = clip_frames(CLIP) * repeat
    published: set[int] = set()
    results: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    replicas: list[tuple[float, str, int, int]] = []
    t0 = time.monotonic()
    options = StackOptions(gateway, detector, console_port=0)
    async with running_stack(options) as stack:
        listener = open_broker(gateway.broker, stack.endpoint.url, routes=())
        await listener.connect()
        tasks = [
            asyncio.create_task(_listen(listener, f"{DETECTIONS_PREFIX}.cam-1", results)),
            asyncio.create_task(_listen(listener, f"{ALERTS_PREFIX}.cam-1", alerts)),
            asyncio.create_task(_timeline(stack, replicas, t0)),
        ]
        await asyncio.sleep(0.5)
        url = f"{stack.gateway_url}/v1/cameras/cam-1/frames"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
        async with httpx.AsyncClient(timeout=30) as client:
            for seq, body in enumerate(frames, start=1):
                sent = time.monotonic()
                answer = await client.post(
                    url, content=body, headers={**headers, "X-Seq": str(seq),
                                                "X-Capture-Ns": str(time.time_ns())},
                )  # fmt: skip
                answer.raise_for_status()
                if answer.json()["published"]:
                    published.add(answer.json()["seq"])
                await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))  # 10 fps
        pushed_s = time.monotonic() - t0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # both drained and both back at zero
            await asyncio.sleep(1.0)
            done = {m: {r["seq"] for r in results if r["model"]["name"] == m} for m in stack.models}
            idle = all(
                s.scaler.replicas == 0 and s.pool.running == 0 for s in stack.models.values()
            )
            if idle and all(published <= seqs for seqs in done.values()):
                break
        await asyncio.sleep(2.0)  # the events function's last alerts
        for task in tasks:
            task.cancel()
        await listener.close()
        archive = home / "archive"
        frame_objects = [p for p in (archive / "frames").rglob("*.jpg")]
        det_objects = Counter(
            p.name.split(".")[-2]
            for p in (archive / "detections").rglob("*.json")
            if not p.name.endswith(".meta.json")  # the local archive's metadata sidecars
        )
    by_model: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in results:
        by_model[r["model"]["name"]][r["seq"]] = r
    accident_frames = {
        s
        for s, r in by_model["accident"].items()
        if r["label"] and r["label"]["class"] == "Accident"
    }
    road_frames = {
        s for s, r in by_model["coco"].items()
        if any(b["class"] in {"person", "car"} for b in r["boxes"])
    }  # fmt: skip
    coco_labels = Counter(b["class"] for r in by_model["coco"].values() for b in r["boxes"])
    return {
        "frames_pushed": len(frames),
        "push_s": round(pushed_s, 1),
        "published": len(published),
        "results": {m: len(v) for m, v in by_model.items()},
        "published_with_result": {m: len(published & set(v)) for m, v in by_model.items()},
        "accident_top1_frames": len(accident_frames),
        "person_or_car_frames": len(road_frames),
        "both_in_same_frame": len(accident_frames & road_frames),
        "coco_boxes": dict(coco_labels.most_common(6)),
        "alerts": dict(Counter(a.get("kind", "?") for a in alerts)),
        "alert_models": sorted({str(a.get("model")) for a in alerts}),
        "frame_objects": len(frame_objects),
        "detections_objects": dict(det_objects),
        "replica_timeline": replicas,
    }


def home_parser(doc: str, repeat: int) -> argparse.ArgumentParser:
    """The command line both model runs share: the state folder and how often to push the clip."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="state folder (default: a fresh temp dir)")
    parser.add_argument("--repeat", type=int, default=repeat, help="push the clip this many times")
    return parser


def run_and_print(
    home: Path | None, run: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]]
) -> None:
    """Run in ``home`` (or a fresh temp dir), print the summary and then the replica timeline."""
    with contextlib.ExitStack() as stack:
        home = home or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        summary = asyncio.run(run(home))
    timeline = summary.pop("replica_timeline")
    print(json.dumps(summary, indent=1))
    print("replica timeline (s since start, model, desired, running):")
    for row in timeline:
        print("  ", *row)


def main() -> None:
    parser = home_parser(__doc__, repeat=1)
    parser.add_argument("--cooldown", type=int, default=10, help="each model's cooldown (s)")
    args = parser.parse_args()
    run_and_print(args.home, lambda home: run(home, args.cooldown, args.repeat))


if __name__ == "__main__":
    main()
