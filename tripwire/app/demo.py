"""``tripwire demo``: ``tripwire up`` plus simulated cameras, a live view and a summary.

Runs on a fresh machine with no network and no server installed: the broker is the embedded
NATS server, the archive a local folder, the detector ``yolo11n.pt`` when ultralytics can
fetch it, else the untrained ``yolo11n.yaml`` (and every figure is labelled so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tripwire import timeline
from tripwire.app.camera_sim import (
    FrameSource,
    SimulatedCamera,
    http_post,
    scene_source,
    video_source,
)
from tripwire.app.scenes import demo_scene
from tripwire.app.stack import Stack, StackOptions, running_stack
from tripwire.brokers import Broker, open_broker
from tripwire.contract import ALERTS_PREFIX, DETECTIONS_PREFIX
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.starter import read_tokens, write_starter_config

DEFAULT_WEIGHTS = "yolo11n.pt"
FALLBACK_WEIGHTS = "yolo11n.yaml"


@dataclass
class DemoOptions:
    cameras: int = 2
    fps: float = 10.0
    duration_s: float = 45.0
    video: Path | None = None
    weights: str | None = None
    task: str | None = None
    home: Path = Path(".tripwire") / "demo"
    drain_s: float = 120.0  # after the cameras stop: wait for the queue and scale-to-zero
    prefork: bool = True  # fork detector workers from a standby (tripwire demo --no-prefork)
    keep_open: bool = False  # keep the console (and the stack) up until Ctrl-C


def resolve_weights(requested: str | None, home: Path) -> tuple[str, str | None]:
    """(weights, note): the requested ones, a local yolo11n.pt, a fetched one, or the
    untrained architecture with a one-line note saying why."""
    if requested:
        return requested, None
    for candidate in (Path(DEFAULT_WEIGHTS), home / "weights" / DEFAULT_WEIGHTS):
        if candidate.is_file():
            return str(candidate), None
    target = home / "weights" / DEFAULT_WEIGHTS
    target.parent.mkdir(parents=True, exist_ok=True)
    fetch = (
        f"from ultralytics.utils.downloads import attempt_download_asset; "
        f"attempt_download_asset({str(target)!r})"
    )
    env = {**os.environ, "YOLO_OFFLINE": "0", "YOLO_CONFIG_DIR": str(home / "ultralytics")}
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            [sys.executable, "-c", fetch],
            env=env,
            timeout=120,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if target.is_file() and target.stat().st_size > 1_000_000:
        return str(target), None
    return FALLBACK_WEIGHTS, (
        f"{DEFAULT_WEIGHTS} could not be obtained (no network?): running the "
        f"untrained {FALLBACK_WEIGHTS}; detection figures are from an "
        "UNTRAINED model"
    )


@dataclass
class Tally:
    detections: int = 0
    boxes: int = 0
    alerts: int = 0


async def _count(broker: Broker, subject: str, tally: Tally, alerts: bool) -> None:
    async for message in broker.subscribe(subject):
        if alerts:
            tally.alerts += 1
            continue
        tally.detections += 1
        with contextlib.suppress(ValueError, KeyError):
            tally.boxes += len(json.loads(message.body)["boxes"])


def _gateway_counters(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tripwire_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metric = name.split("{")[0]
            out[metric] = out.get(metric, 0.0) + float(value)
    return out


def _view(
    stack: Stack,
    cams: list[SimulatedCamera],
    tally: Tally,
    gw: dict[str, float],
    elapsed: float,
    label: str,
    phase: str,
) -> str:
    sent = sum(c.stats.sent for c in cams)
    lines = [
        f"tripwire demo  {phase}  t={elapsed:5.1f}s  model: {label}",
        f"cameras {len(cams)}  frames sent {sent}  ({sent / max(elapsed, 1e-9):.1f} fps)",
        f"motion events {int(gw.get('tripwire_motion_events_total', 0))}  "
        f"motion frames published {int(gw.get('tripwire_motion_frames_total', 0))}",
        f"queue depth {stack.scaler.last_metric if stack.scaler.last_metric is not None else '?'}"
        f"  replicas {stack.replicas} (running {stack.running_workers})  wakes {stack.wakes}",
        f"detections {tally.detections} frames, {tally.boxes} boxes  alerts {tally.alerts}",
    ]
    return "\n".join(lines)


async def run_demo(options: DemoOptions) -> int:
    home = options.home
    write_starter_config(home, options.cameras, force=True)
    tokens = read_tokens(home)
    weights, note = resolve_weights(options.weights, home)
    label = "UNTRAINED model" if weights.endswith(".yaml") else Path(weights).name
    if note:
        print(note)
    os.environ["TRIPWIRE_HOME"] = str(home)
    gateway = GatewaySettings(home=home, port=0, config=home / "cameras.yaml")
    detector = DetectorSettings(
        home=home, config=home / "cameras.yaml", weights=weights, task=options.task
    )
    timeline_path = home / "timeline.jsonl"
    timeline_path.unlink(missing_ok=True)
    sources: list[tuple[FrameSource, float]] = []
    for i in range(options.cameras):
        if options.video is not None:
            sources.append(video_source(options.video))
        else:
            sources.append((scene_source(demo_scene(seed=i, fps=options.fps)), options.fps))
    cams = [
        SimulatedCamera(f"cam-{i + 1}", tokens[f"cam-{i + 1}"], src, fps)
        for i, (src, fps) in enumerate(sources)
    ]
    tally = Tally()
    tty = sys.stdout.isatty()
    started = time.monotonic()
    stack_options = StackOptions(
        gateway, detector, timeline_path=timeline_path, prefork=options.prefork, console_port=0
    )
    async with running_stack(stack_options) as stack:
        listener = open_broker(gateway.broker, stack.endpoint.url)
        await listener.connect()
        counters = [
            asyncio.create_task(_count(listener, f"{DETECTIONS_PREFIX}.*", tally, False)),
            asyncio.create_task(_count(listener, f"{ALERTS_PREFIX}.*", tally, True)),
        ]
        async with httpx.AsyncClient(timeout=10) as client:
            pushes = [
                asyncio.create_task(
                    c.run(
                        http_post(client, stack.gateway_url, c.camera_id, c.token),
                        options.duration_s,
                    )
                )
                for c in cams
            ]
            phase = "cameras on"
            drain_deadline: float | None = None
            last_print = 0.0
            while True:
                await asyncio.sleep(1.0)
                elapsed = time.monotonic() - started
                with contextlib.suppress(httpx.HTTPError):
                    gw = _gateway_counters((await client.get(f"{stack.gateway_url}/metrics")).text)
                if all(p.done() for p in pushes) and drain_deadline is None:
                    phase = "cameras off: draining, waiting for scale to zero"
                    drain_deadline = time.monotonic() + options.drain_s
                view = _view(stack, cams, tally, gw, elapsed, label, phase)
                if tty:
                    print("\x1b[2J\x1b[H" + view, flush=True)
                elif elapsed - last_print >= 5:
                    print(view.replace("\n", " | "), flush=True)
                    last_print = elapsed
                if drain_deadline is not None and (
                    (stack.replicas == 0 and stack.running_workers == 0)
                    or time.monotonic() > drain_deadline
                ):
                    break
        for task in counters:
            task.cancel()
        await listener.close()
        summary = _summary(stack, cams, tally, gw, time.monotonic() - started, label, timeline_path)
        print(summary["text"])
        print(json.dumps(summary["json"]))
        token_file = home / "operator-token"
        print(f"console: {stack.console_url}/ (log in with the operator token in {token_file});"
              f" events API {stack.console_url}/v1/events")  # fmt: skip
        if options.keep_open:
            print(f"--keep-open: the console stays up at {stack.console_url}/; Ctrl-C stops it",
                  flush=True)  # fmt: skip
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    return 0


def _summary(
    stack: Stack,
    cams: list[SimulatedCamera],
    tally: Tally,
    gw: dict[str, float],
    elapsed: float,
    label: str,
    timeline_path: Path,
) -> dict[str, Any]:
    events = list(timeline.read(timeline_path)) if timeline_path.exists() else []
    starts = [e for e in events if e["event"] == "worker_started"]
    decisions = [e for e in events if e["event"] == "scale_decision"]
    first_motion = next((e["t_ns"] for e in events if e["event"] == "motion_published"), None)
    first_result = next((e["t_ns"] for e in events if e["event"] == "result_stored"), None)
    cold_start_s = (
        (first_result - first_motion) / 1e9
        if first_motion and first_result and first_result > first_motion
        else None
    )
    sent = sum(c.stats.sent for c in cams)
    published = int(gw.get("tripwire_motion_frames_total", 0))
    statuses: dict[str, int] = {}
    for cam in cams:
        for code, n in cam.stats.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    gated = round(published / sent, 3) if sent else None
    data: dict[str, Any] = {
        "model": label,
        "seconds": round(elapsed, 1),
        "cameras": len(cams),
        "frames_sent": sent,
        "http_statuses": statuses,
        "motion_events": int(gw.get("tripwire_motion_events_total", 0)),
        "motion_frames_published": published,
        "gated_fraction": gated,
        "frames_detected": tally.detections,
        "boxes": tally.boxes,
        "alerts": tally.alerts,
        "worker_starts": len(starts),
        "max_replicas": max((d.get("replicas", 0) for d in decisions), default=0),
        "final_replicas": stack.replicas,
        "first_motion_to_first_result_s": round(cold_start_s, 2) if cold_start_s else None,
    }
    text = "\n".join(
        [
            "",
            f"tripwire demo summary ({label})",
            f"  {data['cameras']} cameras, {sent} frames sent in {data['seconds']} s, "
            f"HTTP {statuses}",
            f"  motion gate: {data['motion_events']} events, {published} of {sent} frames "
            f"published ({100 * (gated or 0):.1f}%)",
            f"  detector: {tally.detections} frames analysed, {tally.boxes} boxes, "
            f"{tally.alerts} alerts",
            f"  scaling: {len(starts)} worker start(s), peak {data['max_replicas']} replica(s), "
            f"now {stack.replicas}",
            f"  cold start (first motion published -> first result stored): "
            f"{data['first_motion_to_first_result_s']} s",
        ]
    )
    return {"text": text, "json": {"demo": data}}
