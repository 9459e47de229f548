"""Events write throughput: how many results per second the events function sustains.

A backlog of detector results (with their events' open/close messages) is published to a
broker first, then one events function drains it; the figure is results written (and acked)
per second of wall time, with the process's CPU time per result. Alert rules are on (an
intrusion rule on every camera), as in production.

    python -m loadtest.events_bench --results 6000 --cameras 50 --db sqlite postgresql

The pipeline's worst case at 50 cameras is every camera in an event at once, each publishing
``max_publish_fps`` (5) frames/s to the detectors: 250 results/s. Prints a table, then one
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from functions.events.worker import EventsFunction
from tests.events_db import fresh_database
from tripwire.alert_rules import AlertRule
from tripwire.brokers import Broker, open_broker
from tripwire.camera_config import CameraConfig, CamerasFile
from tripwire.contract import Header, detections_subject, events_subject
from tripwire.embedded_nats import EmbeddedNats
from tripwire.event_messages import (
    DetectedBox,
    EventClosed,
    EventOpened,
    FrameResult,
    ModelInfo,
    encode,
)
from tripwire.eventstore import Store
from tripwire.settings import BrokerSettings, EventsSettings

S = 1_000_000_000
LABELS = ["person", "car", "bicycle", "dog", "truck"]


def workload(results: int, cameras: int, frames_per_event: int) -> Iterator[tuple[str, bytes]]:
    """(subject, body): each camera's events in turn, 5 frames/s, 0-4 boxes per frame."""
    rng = random.Random(1)
    t0 = 1_765_000_000 * S
    made = 0
    event = 0
    while made < results:
        for c in range(cameras):
            camera = f"cam-{c}"
            start = t0 + event * 60 * S
            event_id = f"{camera}-{start}"
            yield (
                events_subject(camera),
                encode(
                    EventOpened(
                        type="open",
                        camera=camera,
                        event_id=event_id,
                        capture_ns=start,
                        sent_ns=start,
                    )
                ),
            )
            for i in range(frames_per_event):
                capture = start + i * S // 5
                boxes = [
                    DetectedBox.model_validate(
                        {
                            "class": rng.choice(LABELS),
                            "confidence": round(rng.uniform(0.3, 0.95), 3),
                            "xyxy": (rng.uniform(0, 600), rng.uniform(300, 600), 700.0, 710.0),
                        }
                    )
                    for _ in range(rng.randint(0, 4))
                ]
                result = FrameResult.model_validate(
                    {
                        "camera": camera,
                        "seq": event * 1000 + i,
                        "capture_ns": capture,
                        "stored_ns": capture + S // 3,
                        "event_id": event_id,
                        "width": 1280,
                        "height": 720,
                        "model": ModelInfo(name="yolo"),
                        "boxes": boxes,
                        "archive": {"frame": f"frames/{camera}/{capture}.jpg"},
                    }
                )
                yield detections_subject(camera), encode(result)
                made += 1
            yield (
                events_subject(camera),
                encode(
                    EventClosed(
                        type="close",
                        camera=camera,
                        event_id=event_id,
                        capture_ns=start + frames_per_event * S // 5,
                        frames_seen=100,
                        frames_analysed=50,
                        frames_published=frames_per_event,
                        sent_ns=start,
                    )
                ),
            )
        event += 1


def config(cameras: int) -> CamerasFile:
    zone = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
    return CamerasFile(
        cameras=[
            CameraConfig(id=f"cam-{c}", token_hash="sha256:" + "0" * 64, zones={"yard": zone})
            for c in range(cameras)
        ],
        alerts=[
            AlertRule(
                kind="intrusion", classes=["person"], zones=["yard"], min_frames=2, cooldown_s=30
            )
        ],
    )


async def publish_all(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    for start in range(0, len(messages), 200):
        chunk = messages[start : start + 200]
        await asyncio.gather(
            *(
                broker.publish(
                    subject,
                    body,
                    {Header.ID: f"m{start + i}", Header.CONTENT_TYPE: "application/json"},
                )
                for i, (subject, body) in enumerate(chunk)
            )
        )


async def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(kind, Path(tmp), prefix="tw_bench") as url,
    ):
        nats = EmbeddedNats.start(Path(tmp) / "nats")
        store = Store(url)
        try:
            store.migrate()
            messages = list(workload(args.results, args.cameras, args.frames_per_event))
            settings = EventsSettings(home=Path(tmp), batch_size=args.batch, fetch_wait_s=0.5)
            publisher = open_broker(BrokerSettings(), nats.url)
            await publisher.connect()
            await publish_all(publisher, messages)
            await publisher.close()
            feed = open_broker(BrokerSettings(), nats.url, feed="events")
            await feed.connect()
            function = EventsFunction(settings, config(args.cameras), feed, store)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            task = asyncio.create_task(function.run())
            while function.counts.acked < len(messages):
                await asyncio.sleep(0.05)
                if task.done():
                    task.result()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            function.stop()
            await task
            await feed.close()
        finally:
            store.close()
            nats.stop()
    results = function.counts.results
    return {
        "db": kind,
        "results": results,
        "messages": len(messages),
        "alerts": function.counts.alerts,
        "seconds": round(wall, 2),
        "results_per_s": round(results / wall, 1),
        "cpu_ms_per_result": round(cpu * 1000 / results, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=6000)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--frames-per-event", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="events function batch_size")
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    rows = [asyncio.run(run_one(kind, args)) for kind in args.db]
    print(
        f"{'db':12} {'results':>8} {'seconds':>8} {'results/s':>10} {'CPU ms/result':>14} "
        f"{'alerts':>7}"
    )
    for r in rows:
        print(
            f"{r['db']:12} {r['results']:8} {r['seconds']:8} {r['results_per_s']:10} "
            f"{r['cpu_ms_per_result']:14} {r['alerts']:7}"
        )
    print("worst case at 50 cameras: 250 results/s (every camera in an event, 5 published/s)")
    print(json.dumps({"events_bench": rows, "args": vars(args)}))


if __name__ == "__main__":
    main()
