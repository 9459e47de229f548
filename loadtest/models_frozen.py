"""Three models on one stream, one of them frozen: the others keep up, the frozen one's backlog
stays within the stream's bound, and it catches up when it comes back.

``python -m loadtest.models_frozen [--max-msgs N] [--repeat N]``

``tripwire up`` (embedded NATS unless TRIPWIRE_BROKER__URL says otherwise, local archive)
with three models (the COCO TFLite detector, the accident classifier, and a second instance
of the classifier under another name as a third), the motion
stream bounded at ``--max-msgs`` frames (``TRIPWIRE_BROKER__NATS__STREAM_MAX_MSGS``; on
RabbitMQ each model's queue: ``TRIPWIRE_BROKER__RABBITMQ__MAX_LENGTH``). The
accident model's worker is frozen (SIGSTOP) once it has started, the crash clip is pushed
``--repeat`` times, and each model's backlog (its consumer's lag) is sampled every 0.5 s.
Then the worker is resumed (SIGCONT) and the script waits until every model is idle. Printed:
frames published, results per model before and after the thaw, the highest backlog per
model while frozen, and what the frozen model lost beyond the bound.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest.models_crash import (
    ACCIDENT,
    CLIP,
    COCO,
    _listen,
    _timeline,
    clip_frames,
    home_parser,
    run_and_print,
)
from tripwire.app.stack import StackOptions, running_stack
from tripwire.brokers import open_broker, routes_of
from tripwire.camera_config import load_config
from tripwire.contract import DETECTIONS_PREFIX
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.starter import read_tokens, write_starter_config

FROZEN = "accident"


def write_config(home: Path) -> None:
    write_starter_config(home, 1, force=True)
    path = home / "cameras.yaml"
    doc = yaml.safe_load(path.read_text())
    scaling = {"cooldown_period_s": 10, "polling_interval_s": 1, "max_replicas": 1}
    doc["models"] = [
        {"name": "coco", "weights": str(COCO), "task": "detect", "device": "cpu",
         "scaling": scaling},
        {"name": FROZEN, "weights": str(ACCIDENT), "task": "classify", "device": "cpu",
         "scaling": scaling},
        {"name": "second", "weights": str(ACCIDENT), "task": "classify", "device": "cpu",
         "scaling": scaling},
    ]  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


async def run(home: Path, max_msgs: int, repeat: int) -> dict[str, Any]:
    write_config(home)
    token = read_tokens(home)["cam-1"]
    os.environ["TRIPWIRE_HOME"] = str(home)
    os.environ["TRIPWIRE_BROKER__NATS__STREAM_MAX_MSGS"] = str(max_msgs)
    os.environ["TRIPWIRE_BROKER__RABBITMQ__MAX_LENGTH"] = str(max_msgs)
    gateway = GatewaySettings(home=home, port=0, config=home / "cameras.yaml")
    detector = DetectorSettings(home=home, config=home / "cameras.yaml")
    frames = clip_frames(CLIP)
    results: list[dict[str, Any]] = []
    published: set[int] = set()
    peak: dict[str, int] = {}
    async with running_stack(StackOptions(gateway, detector, console_port=0)) as stack:
        routes = routes_of(load_config(home / "cameras.yaml"))
        readers = {}
        for route in routes:
            readers[route.model] = open_broker(
                gateway.broker, stack.endpoint.url, routes=routes, model=route.model
            )
            await readers[route.model].connect()
        listener = open_broker(gateway.broker, stack.endpoint.url, routes=())
        await listener.connect()
        listening = asyncio.create_task(_listen(listener, f"{DETECTIONS_PREFIX}.cam-1", results))
        replicas: list[tuple[float, str, int, int]] = []
        t0 = time.monotonic()
        timeline = asyncio.create_task(_timeline(stack, replicas, t0))
        await asyncio.sleep(0.5)
        url = f"{stack.gateway_url}/v1/cameras/cam-1/frames"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
        frozen_pool = stack.models[FROZEN].pool
        frozen_pid: int | None = None
        seq = 0
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(repeat):
                for body in frames:
                    seq += 1
                    sent = time.monotonic()
                    answer = await client.post(
                        url, content=body, headers={**headers, "X-Seq": str(seq),
                                                    "X-Capture-Ns": str(time.time_ns())},
                    )  # fmt: skip
                    answer.raise_for_status()
                    if answer.json()["published"]:
                        published.add(answer.json()["seq"])
                    if frozen_pid is None and frozen_pool.workers:
                        frozen_pid = frozen_pool.workers[0].process.pid
                        os.kill(frozen_pid, signal.SIGSTOP)  # frozen: alive, reads nothing
                    for name, reader in readers.items():
                        peak[name] = max(peak.get(name, 0), await reader.depth())
                    await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))
        await asyncio.sleep(5.0)  # the two live models finish what they hold
        for name, reader in readers.items():
            peak[name] = max(peak.get(name, 0), await reader.depth())
        before = {
            m: len({r["seq"] for r in results if r["model"]["name"] == m}) for m in stack.models
        }
        held = await readers[FROZEN].depth()
        thawed = time.monotonic()
        if frozen_pid is not None:
            os.kill(frozen_pid, signal.SIGCONT)
        thawed_at = round(thawed - t0, 1)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if await readers[FROZEN].depth() == 0:
                break
        caught_up_s = time.monotonic() - thawed
        for _ in range(300):  # every model back at zero
            if not any(s.scaler.replicas or s.pool.running for s in stack.models.values()):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(0.5)  # the timeline's last sample
        listening.cancel()
        timeline.cancel()
        after = {
            m: len({r["seq"] for r in results if r["model"]["name"] == m}) for m in stack.models
        }
        for reader in [*readers.values(), listener]:
            await reader.close()
    return {
        "stream_max_msgs": max_msgs,
        "frames_pushed": seq,
        "published": len(published),
        "frozen": FROZEN,
        "frozen_pid": frozen_pid,
        "results_while_frozen": before,
        "peak_backlog": peak,
        "frozen_backlog_at_thaw": held,
        "results_after_thaw": after,
        "catch_up_s": round(caught_up_s, 1),
        "frozen_lost_beyond_bound": len(published) - after[FROZEN],
        "thawed_at_s": thawed_at,
        "replica_timeline": replicas,
    }


def main() -> None:
    parser = home_parser(__doc__, repeat=3)
    parser.add_argument("--max-msgs", type=int, default=40, help="the stream's / queues' bound")
    args = parser.parse_args()
    run_and_print(args.home, lambda home: run(home, args.max_msgs, args.repeat))


if __name__ == "__main__":
    main()
