"""Cold-start benchmark: first motion -> first stored detection, by stage, for a detector
scaled to zero, with and without push activation, at pollingInterval 1 s and 30 s, with
workers forked from the prefork standby or started from scratch.

For each configuration a local stack (embedded NATS, gateway, local scaler, detector
workers) runs from a copy of deploy/keda/nats/scaledobject.yaml with pollingInterval set
and cooldownPeriod shortened (so each run starts from zero without waiting minutes). A
camera sends still frames, then a walker; stages come from the shared timeline:
motion published -> scale decision -> worker started -> model loaded -> result stored.

With prefork on, measuring starts once the standby reports ready (its imports done), as
it is a few seconds after ``tripwire up``; its resident size is printed.

    python -m loadtest.coldstart [--runs 3] [--weights yolo11n.yaml]
    python -m loadtest.coldstart --polling 1 --push on --prefork on off
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tripwire import timeline
from tripwire.app.scenes import Scene, Walker
from tripwire.app.stack import Stack, StackOptions, running_stack
from tripwire.scaler.policy import write_policy_copy
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.starter import read_tokens, write_starter_config

STAGES = ["scale_decision", "worker_started", "model_loaded", "first_inference", "result_stored"]
COOLDOWN_S = 3


def policy_copy(folder: Path, polling_s: int) -> Path:
    # The HPA's scale-down window would hold one replica for 30 s more: not what we measure.
    return write_policy_copy(
        folder / f"scaledobject-poll{polling_s}.yaml",
        spec={"pollingInterval": polling_s, "cooldownPeriod": COOLDOWN_S},
        scale_down_window_s=0,
    )


async def _send(
    client: httpx.AsyncClient, url: str, token: str, scene: Scene, first: int, count: int
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
    for i in range(first, first + count):
        started = time.monotonic()
        body = await asyncio.to_thread(scene.jpeg, i)
        await client.post(url, content=body, headers={**headers, "X-Seq": str(i)})
        await asyncio.sleep(max(0.0, 1 / scene.fps - (time.monotonic() - started)))


def _stages(events: list[dict[str, Any]], since_ns: int) -> dict[str, float] | None:
    later = [e for e in events if e["t_ns"] >= since_ns]
    motion = next((e["t_ns"] for e in later if e["event"] == "motion_published"), None)
    if motion is None:
        return None
    out: dict[str, float] = {}
    for stage in STAGES:
        t = next((e["t_ns"] for e in later if e["event"] == stage and e["t_ns"] >= motion), None)
        if t is not None:
            out[stage] = (t - motion) / 1e9
    return out if "result_stored" in out else None


async def _idle(stack: Stack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while stack.replicas or stack.running_workers or stack.scaler.pool.workers:
        if time.monotonic() > deadline:
            raise TimeoutError("detector did not scale to zero")
        await asyncio.sleep(0.2)


async def measure(
    home: Path, policy: Path, push: bool, runs: int, weights: str, prefork: bool = True
) -> list[dict[str, float]]:
    write_starter_config(home, 1, force=True)
    token = read_tokens(home)["cam-1"]
    tl = home / "timeline.jsonl"
    tl.unlink(missing_ok=True)
    options = StackOptions(
        GatewaySettings(home=home, port=0, config=home / "cameras.yaml"),
        DetectorSettings(home=home, config=home / "cameras.yaml", weights=weights),
        policy=policy,
        timeline_path=tl,
        push_activation=push,
        prefork=prefork,
        console_port=0,
    )
    # A walker crosses from t=3 s on: frames 0..29 are still, the rest show motion.
    scene = Scene(fps=10.0, walkers=[Walker(x=-80, y=280, w=70, h=180, vx=120, start_s=3.0)])
    results = []
    async with running_stack(options) as stack, httpx.AsyncClient(timeout=10) as client:
        standby = stack.scaler.pool.standby
        if standby is not None:
            if not await standby.wait_ready(120):
                raise TimeoutError("the prefork standby was not ready within 120 s")
            info = standby.info or {}
            print(
                f"  prefork standby ready: imports {info.get('import_s')} s, "
                f"RSS {info.get('rss_kib', 0) / 1024:.0f} MiB",
                flush=True,
            )
        url = f"{stack.gateway_url}/v1/cameras/cam-1/frames"
        await _send(client, url, token, scene, 0, 25)  # calibrate on a still scene
        for _ in range(runs):
            await _idle(stack, 120)
            since = time.time_ns()
            send = asyncio.create_task(_send(client, url, token, scene, 25, 100))
            stages = None
            deadline = time.monotonic() + 90
            while stages is None and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                stages = _stages(list(timeline.read(tl)) if tl.exists() else [], since)
            send.cancel()
            if stages is None:
                raise TimeoutError("no detection stored within 90 s of the first motion")
            results.append(stages)
            await _send(client, url, token, scene, 0, 15)  # still again: the event closes
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights", default="yolo11n.yaml")
    parser.add_argument("--polling", type=int, nargs="+", default=[1, 30])
    parser.add_argument("--push", choices=["on", "off"], nargs="+", default=["on", "off"])
    parser.add_argument("--prefork", choices=["on", "off"], nargs="+", default=["on"])
    args = parser.parse_args()
    table: dict[str, dict[str, float]] = {}
    configs = [
        (polling, push == "on", prefork == "on")
        for polling in args.polling
        for push in args.push
        for prefork in args.prefork
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for polling, push, prefork in configs:
            policy = policy_copy(Path(tmp), polling)
            name = (
                f"poll {polling:>2}s, push {'on ' if push else 'off'}, "
                f"prefork {'on ' if prefork else 'off'}"
            )
            home = Path(tmp) / f"p{polling}-{int(push)}-{int(prefork)}"
            runs = asyncio.run(measure(home, policy, push, args.runs, args.weights, prefork))
            table[name] = {
                s: statistics.median(r[s] for r in runs if s in r)
                for s in STAGES
                if any(s in r for r in runs)
            }
            print(
                f"{name}: {len(runs)} cold starts, first motion -> stored "
                f"{[round(r['result_stored'], 2) for r in runs]} s",
                flush=True,
            )
    print(
        f"\nmedian seconds after the first motion frame was published ({args.weights}, "
        f"{args.runs} runs each)"
    )
    print(f"{'configuration':<36}" + "".join(f"{s:>17}" for s in STAGES))
    for name, row in table.items():
        print(f"{name:<36}" + "".join(f"{row.get(s, float('nan')):>17.2f}" for s in STAGES))
    print(
        json.dumps({"coldstart": {"weights": args.weights, "runs": args.runs, "median_s": table}})
    )


if __name__ == "__main__":
    main()
