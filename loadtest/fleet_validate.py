"""The fleet simulator against a real local run on the same motion trace.

A small trace (two cameras, one site: one detector deployment) is played for real: each
camera sends 320x240 frames at ``--fps`` to a ``tripwire up`` stack (its own embedded NATS,
gateway with the motion function, local scaler, detector workers forked from the standby),
with a moving square during the trace's events. The gateway's own event opens and closes
(heard on ``tripwire.events.<camera>``) are the trace the scaler really saw; the simulator
replays that trace with the same policy file, the cold start and stop times measured in this
run, and the same power profile. Compared:

- cold starts: worker starts (timeline) vs the simulator's: must be equal;
- energy: the energy benchmark's accounting of the real run (``tripwire.app.energy.account``,
  sampled every second) vs the simulator's split; the simulator states its error as
  ``resident_w x starts x (pollingInterval + 2 x sampling interval)``: each release is decided
  on the poll grid, whose phase the simulator does not know, and each start and stop is
  seen by the sampler to one interval;
- device-held seconds and wake -> first result latency, for information.

The policy file is the shipped one with ``maxReplicaCount: 1`` (one CPU detector here), and
for ``--policy break-even`` the keep-alive annotation. The detector waits up to 300 ms to fill
a batch, so a frame of an open event is in flight at any poll and the simulator is given
``in_flight_s`` 0.3 to match.

    python -m loadtest.fleet_validate --policy fixed-60 --out /tmp/fleet-validate
    python -m loadtest.fleet_validate --policy break-even --out /tmp/fleet-validate-be
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import yaml

from tripwire import timeline
from tripwire.app.energy.account import account
from tripwire.app.energy.bench import stack_probes
from tripwire.app.energy.workload import ModeRun, Tally
from tripwire.app.stack import Stack, StackOptions, running_stack
from tripwire.brokers import open_broker
from tripwire.contract import DETECTIONS_PREFIX, EVENTS_PREFIX
from tripwire.fleet.simulate import SimOptions, simulate_site
from tripwire.fleet.trace import CameraTrace, Event, Trace, write_trace
from tripwire.keepalive import ANNOTATION_PREFIX
from tripwire.meters import MetricsSettings, Sampler
from tripwire.meters.power_profile import load_profile
from tripwire.scaler.policy import load_policy, policy_file
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.starter import read_tokens, write_starter_config

# Seconds from the start of the window. Gaps: 10 s (warm under every policy), 40-45 s (warm
# under the shipped 60 s, cold under break-even's ~24 s), 95-115 s (cold under both).
PLAN: dict[str, list[tuple[float, float]]] = {
    "cam-1": [(15, 35), (45, 60), (100, 115), (230, 245)],
    "cam-2": [(250, 270), (315, 325), (420, 430)],
}
PLAN_S = 520.0
SAMPLE_S = 1.0


def render(index: int, fps: float, events: list[tuple[float, float]], seed: int) -> bytes:
    """One 320x240 frame: a fixed textured scene, and a square crossing it during events."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.integers(40, 200, (24, 32, 3), dtype=np.uint8), (320, 240))
    t = index / fps
    for start, end in events:
        if start <= t < end:
            x = int(10 + (t - start) * 40) % 260
            cv2.rectangle(scene, (x, 100), (x + 40, 150), (250, 250, 250), -1)
    ok, buf = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


async def send(
    client: httpx.AsyncClient, url: str, camera: str, token: str, fps: float, t0_ns: int, seed: int
) -> int:
    events = PLAN[camera]
    frames = round(PLAN_S * fps)
    errors = 0
    cache: dict[bool, bytes] = {}
    for k in range(frames):
        capture_ns = t0_ns + round(k * 1e9 / fps)
        wait = (capture_ns - time.time_ns()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        t = k / fps
        moving = any(a <= t < b for a, b in events)
        body = (
            render(k, fps, events, seed)
            if moving
            else cache.setdefault(False, render(k, fps, [], seed))
        )
        response = await client.post(
            f"{url}/v1/cameras/{camera}/frames",
            content=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "image/jpeg",
                "X-Capture-Ns": str(capture_ns),
                "X-Seq": str(k),
            },
        )
        errors += response.status_code != 202
    return errors


def policy_file_for(name: str, folder: Path, profile: str) -> Path:
    """The shipped policy for one keep-alive policy, with maxReplicaCount 1."""
    doc = yaml.safe_load(policy_file("nats").read_text())
    doc["spec"]["maxReplicaCount"] = 1
    annotations = doc["metadata"].setdefault("annotations", {})
    if name in ("histogram", "break-even"):
        annotations[f"{ANNOTATION_PREFIX}policy"] = name
        annotations[f"{ANNOTATION_PREFIX}profile"] = profile
    elif name == "fixed-300":
        doc["spec"]["cooldownPeriod"] = 300
    path = folder / "scaledobject.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _processes(stack: Stack) -> dict[str, list[int]]:
    pool = stack.scaler.pool
    workers = [w.process.pid for w in pool.workers if w.process.returncode is None]
    return {"detector": workers} if workers else {}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    home = out / "home"
    write_starter_config(home, 2, force=True)
    tokens = read_tokens(home)
    tl, samples = out / "timeline.jsonl", out / "samples.jsonl"
    profile = load_profile(args.profile)
    policy_path = policy_file_for(args.policy, out, args.profile)
    gateway = GatewaySettings(home=home, port=0, config=home / "cameras.yaml")
    detector = DetectorSettings(
        home=home,
        config=home / "cameras.yaml",
        weights=args.weights,
        imgsz=args.imgsz,
        batch_wait_ms=300.0,
    )
    options = StackOptions(
        gateway, detector, policy=policy_path, timeline_path=tl, prefork=True, console_port=0
    )
    opened: dict[str, tuple[str, int]] = {}  # event id -> camera, open capture_ns
    closed: dict[str, tuple[int, int]] = {}  # event id -> close capture_ns, frames published
    first_result: dict[str, int] = {}  # event id -> arrival ns of its first result
    tally = Tally()
    async with running_stack(options) as stack:
        standby = stack.scaler.pool.standby
        if standby is not None:
            await standby.wait_ready(300)
        listener = open_broker(gateway.broker, stack.endpoint.url)
        await listener.connect()

        async def events(camera: str) -> None:
            async for message in listener.subscribe(f"{EVENTS_PREFIX}.{camera}"):
                doc = json.loads(message.body)
                if doc.get("type") == "open":
                    opened[doc["event_id"]] = (camera, int(doc["capture_ns"]))
                elif doc.get("type") == "close":
                    closed[doc["event_id"]] = (int(doc["capture_ns"]), int(doc["frames_published"]))

        async def results(camera: str) -> None:
            async for message in listener.subscribe(f"{DETECTIONS_PREFIX}.{camera}"):
                doc = json.loads(message.body)
                tally.processed[(camera, int(doc["seq"]))] = len(doc.get("boxes") or [])
                first_result.setdefault(str(doc.get("event_id")), time.time_ns())

        tasks = [asyncio.create_task(f(c)) for c in PLAN for f in (events, results)]
        sampler = Sampler.from_settings(
            MetricsSettings(interval_s=SAMPLE_S, jsonl=samples, uss_every=5),
            processes=lambda: _processes(stack),
            probes=stack_probes(stack, tally),
        )
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        t0_ns = time.time_ns()
        async with httpx.AsyncClient(timeout=30) as client:
            errors = await asyncio.gather(
                *(
                    send(client, stack.gateway_url, c, tokens[c], args.fps, t0_ns, i)
                    for i, c in enumerate(PLAN)
                )
            )
        # the plan ends idle: wait (bounded) for the last replica to go and exit
        for _ in range(240):
            if not stack.replicas and not _processes(stack):
                break
            await asyncio.sleep(0.5)
        end_ns = time.time_ns()
        stop.set()
        await sampling
        sampler.close()
        for task in tasks:
            task.cancel()
        await listener.close()
    window_s = (end_ns - t0_ns) / 1e9
    # the trace the scaler saw: the gateway's own opens and closes
    cameras: dict[str, list[Event]] = {c: [] for c in PLAN}
    for event_id, (camera, open_ns) in sorted(opened.items(), key=lambda kv: kv[1][1]):
        close_ns, frames = closed.get(event_id, (end_ns, 0))
        cameras[camera].append(Event((open_ns - t0_ns) / 1e9, (close_ns - t0_ns) / 1e9, frames))
    trace = Trace(
        window_s,
        [CameraTrace(c, "site-0", ev) for c, ev in cameras.items()],
        5.0,
        "fleet_validate",
    )
    write_trace(trace, out / "trace.jsonl")
    lines = list(timeline.read(tl))
    started = {e["worker_pid"]: e["t_ns"] for e in lines if e["event"] == "worker_started"}
    loaded = {e["pid"]: e["t_ns"] for e in lines if e["event"] == "model_loaded"}
    stopping = {e["worker_pid"]: e["t_ns"] for e in lines if e["event"] == "worker_stopping"}
    stopped = {e["worker_pid"]: e["t_ns"] for e in lines if e["event"] == "worker_stopped"}
    cold_s = [(loaded[p] - t) / 1e9 for p, t in started.items() if p in loaded]
    stop_s = [(stopped[p] - stopping[p]) / 1e9 for p in stopping if p in stopped]
    held = 0.0
    last = t0_ns
    for pid, t in sorted(started.items(), key=lambda kv: kv[1]):
        end = stopped.get(pid, end_ns)
        held += max(0, end - max(t, last)) / 1e9
        last = max(last, end)
    real_run = ModeRun(
        mode="scale-to-zero",
        repeat=0,
        duty_cycle=0.0,
        folder=out,
        samples=samples,
        timeline=tl,
        t0_ns=t0_ns,
        cameras_off_ns=end_ns,
        drained_ns=end_ns,
        end_ns=end_ns,
        camera_s=PLAN_S * len(PLAN),
        frames_sent=0,
        frames_published=0,
        frames_motion=0,
        http_errors=sum(errors),
        tally=tally,
    )
    real = account(real_run, profile)
    latencies = [
        (first_result[eid] - open_ns) / 1e9
        for eid, (_, open_ns) in opened.items()
        if eid in first_result
    ]
    sim_options = SimOptions(
        cold_start_s=statistics.median(cold_s) if cold_s else 8.0,
        stop_s=statistics.median(stop_s) if stop_s else 1.0,
        first_result_s=min(latencies) if latencies else 0.1,
        in_flight_s=0.3,
        service_fps=20.0,
    )
    policy = load_policy(policy_path)
    sim = simulate_site("site-0", trace.cameras, window_s, policy, profile, sim_options, 1)
    # the simulator charges the frames the real detectors processed, as the account does
    sim.energy_j = profile.split_j(window_s, sim.held_s, len(tally.processed), sim.starts)
    bound_j = (
        profile.resident_w
        * max(sim.starts, len(started))
        * (policy.polling_interval_s + 2 * SAMPLE_S)
    )
    diff_j = sim.energy_j["total"] - real.energy_j["total"]
    report = {
        "policy": args.policy,
        "profile": profile.name,
        "window_s": round(window_s, 1),
        "events": trace.events,
        "http_errors": sum(errors),
        "cold_starts": {"real": len(started), "sim": sim.starts},
        "cold_start_s_measured": [round(x, 2) for x in cold_s],
        "stop_s_measured": [round(x, 2) for x in stop_s],
        "held_s": {
            "real_timeline": round(held, 1),
            "real_sampled": round(real.held_s, 1),
            "sim": round(sim.held_s, 1),
        },
        "energy_j": {
            "real": {k: round(v, 1) for k, v in real.energy_j.items()},
            "sim": {k: round(v, 1) for k, v in sim.energy_j.items()},
        },
        "energy_diff_j": round(diff_j, 1),
        "energy_diff_pct": round(100 * diff_j / real.energy_j["total"], 2),
        "stated_error_j": round(bound_j, 1),
        "energy_within_stated_error": abs(diff_j) <= bound_j,
        "cold_starts_equal": len(started) == sim.starts,
        "latency_s": {
            "real": sorted(round(x, 2) for x in latencies),
            "sim": sorted(round(x, 2) for x in sim.latencies),
        },
        "keep_alive": sim.keep_alive,
    }
    (out / "agreement.json").write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--policy", default="fixed-60", choices=["fixed-60", "fixed-300", "histogram", "break-even"]
    )
    parser.add_argument("--profile", default="h200")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--weights", default="yolo11n.yaml", help="default: untrained (plumbing)")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--out", type=Path, default=Path("fleet-validate"))
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(run(args))
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
