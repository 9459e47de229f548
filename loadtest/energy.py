"""``tripwire bench energy``: one camera workload in three modes, energy and memory side by side.

Modes (each a fresh local stack: embedded NATS, gateway, local scaler, detector workers):

- ``a``: every frame to an always-on detector (the classic "intelligent CCTV"): the gateway
  runs with ``motion_gate`` false and the policy's minReplicaCount is 1;
- ``b``: motion-gated, always-on detector (minReplicaCount 1);
- ``c``: motion-gated, scale-to-zero (the shipped policy, minReplicaCount 0).

All three use a copy of ``deploy/keda/nats/scaledobject.yaml`` whose cooldownPeriod is
shortened to ``COOLDOWN_S`` and whose scale-down stabilization window is 0, so that (c)
reaches zero within the idle tail (the shipped 60 s + 30 s would need a longer tail).

The workload is a generated 1280x720 scene per camera in which someone crosses for 10 s every
10 / duty_cycle s (or a looped ``--video``). For an always-on detector the measurement
starts once its model is loaded (an always-on service loaded it long ago); for (c) once the
prefork standby is ready. Then the cameras run for ``--duration`` s, then an idle tail of
``--idle`` s shows the idle floor. The sampler (:mod:`tripwire.metrics`) follows the
gateway, the detector workers and the prefork standby; every sample goes to JSONL.

    tripwire bench energy --cameras 2 --fps 10 --duration 60 --duty-cycle 0.2
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest.camera_sim import FrameSource, SimulatedCamera, scene_source, video_source
from loadtest.demo import resolve_weights
from loadtest.energy_report import Series, load_series, summarise, write_report
from loadtest.energy_workload import (
    COOLDOWN_S,
    CROSSING_S,
    MODES,
    EnergyOptions,
    ModeRun,
    Tally,
)
from loadtest.scenes import demo_scene
from tripwire import timeline
from tripwire.brokers import Broker, open_broker
from tripwire.contract import ALERTS_PREFIX, DETECTIONS_PREFIX
from tripwire.metrics import MetricsSettings, Sampler
from tripwire.scaler import policy_file
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.stack import Stack, StackOptions, running_stack
from tripwire.starter import read_tokens, write_starter_config

__all__ = ["EnergyOptions", "run_bench"]


def policy_copy(folder: Path, min_replicas: int) -> Path:
    doc = yaml.safe_load(policy_file("nats").read_text())
    doc["spec"]["minReplicaCount"] = min_replicas
    doc["spec"]["cooldownPeriod"] = COOLDOWN_S
    behavior = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["stabilizationWindowSeconds"] = 0
    path = folder / f"scaledobject-min{min_replicas}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _processes(stack: Stack) -> dict[str, list[int]]:
    pool = stack.scaler.pool
    out: dict[str, list[int]] = {}
    if stack.gateway.returncode is None:
        out["gateway"] = [stack.gateway.pid]
    workers = [w.process.pid for w in pool.workers if w.process.returncode is None]
    if workers:
        out["detector"] = workers
    standby = pool.standby
    if standby is not None and standby.process is not None and standby.process.returncode is None:
        out["standby"] = [standby.process.pid]
    return out


async def _listen(broker: Broker, tally: Tally) -> None:
    async def detections() -> None:
        async for message in broker.subscribe(f"{DETECTIONS_PREFIX}.*"):
            tally.detections += 1
            with contextlib.suppress(ValueError, KeyError, TypeError):
                capture = int(json.loads(message.body)["capture_ns"])
                tally.latencies_s.append((time.time_ns() - capture) / 1e9)

    async def alerts() -> None:
        async for _ in broker.subscribe(f"{ALERTS_PREFIX}.*"):
            tally.alerts += 1

    await asyncio.gather(detections(), alerts())


def _events(tl: Path) -> list[dict[str, Any]]:
    return list(timeline.read(tl)) if tl.exists() else []


async def _wait_ready(stack: Stack, mode: str, tl: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    standby = stack.scaler.pool.standby
    if standby is not None and not await standby.wait_ready(timeout_s):
        raise TimeoutError("the prefork standby was not ready in time")
    if mode == "c":
        return
    while time.monotonic() < deadline:  # always-on: measure once its model is loaded
        events = await asyncio.to_thread(_events, tl)
        if any(e["event"] == "model_loaded" for e in events):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"mode {mode}: the always-on detector did not load its model in time")


def _progress(mode: str, phase: str, elapsed: float, total: float, stack: Stack, t: Tally) -> str:
    width = 24
    done = min(1.0, elapsed / total) if total else 1.0
    bar = "#" * round(done * width) + "." * (width - round(done * width))
    depth = stack.scaler.last_metric
    return (
        f"[{mode}] [{bar}] {elapsed:5.1f}/{total:.0f}s {phase:<10} replicas {stack.replicas} "
        f"depth {'?' if depth is None else depth} analysed {t.detections} alerts {t.alerts}"
    )


async def run_mode(mode: str, options: EnergyOptions, weights: str, folder: Path) -> ModeRun:
    home = folder / "home"
    write_starter_config(home, options.cameras, force=True)
    tokens = read_tokens(home)
    tl = folder / "timeline.jsonl"
    samples = folder / "samples.jsonl"
    for path in (tl, samples):
        path.unlink(missing_ok=True)
    policy = policy_copy(folder, 0 if mode == "c" else 1)
    gateway = GatewaySettings(
        home=home, port=0, config=home / "cameras.yaml", motion_gate=mode != "a"
    )
    detector = DetectorSettings(home=home, config=home / "cameras.yaml", weights=weights)
    sources: list[tuple[FrameSource, float]] = []
    for i in range(options.cameras):
        if options.video is not None:
            sources.append(video_source(options.video))
        else:
            period = CROSSING_S / max(options.duty_cycle, 1e-3)
            scene = demo_scene(seed=i, fps=options.fps, period_s=period)
            sources.append((scene_source(scene), options.fps))
    cams = [
        SimulatedCamera(f"cam-{i + 1}", tokens[f"cam-{i + 1}"], src, fps)
        for i, (src, fps) in enumerate(sources)
    ]
    tally = Tally()
    stack_options = StackOptions(gateway, detector, policy=policy, timeline_path=tl, console_port=0)
    tty = sys.stdout.isatty()
    async with running_stack(stack_options) as stack:
        await _wait_ready(stack, mode, tl, options.ready_timeout_s)
        listener = open_broker(gateway.broker, stack.endpoint.url)
        await listener.connect()
        listening = asyncio.create_task(_listen(listener, tally))
        sampler = Sampler.from_settings(
            MetricsSettings(interval_s=options.interval_s, jsonl=samples, uss_every=5),
            processes=lambda: _processes(stack),
            probes={
                "replicas": lambda: stack.replicas,
                "queue_depth": lambda: stack.scaler.last_metric,
                "detections": lambda: tally.detections,
                "alerts": lambda: tally.alerts,
            },
        )
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        t0_ns = time.time_ns()
        started = time.monotonic()
        total = options.duration_s + options.idle_s
        async with httpx.AsyncClient(timeout=10) as client:
            pushes = [
                asyncio.create_task(c.run(client, stack.gateway_url, options.duration_s))
                for c in cams
            ]
            cameras_off_ns: int | None = None
            idle_until = 0.0
            last_print = -10.0
            while True:
                await asyncio.sleep(0.5)
                elapsed = time.monotonic() - started
                if cameras_off_ns is None and all(p.done() for p in pushes):
                    cameras_off_ns = time.time_ns()
                    idle_until = time.monotonic() + options.idle_s
                phase = "cameras" if cameras_off_ns is None else "idle tail"
                line = _progress(mode, phase, elapsed, total, stack, tally)
                if tty:
                    print("\r" + line, end="", flush=True)
                elif elapsed - last_print >= 5:
                    print(line, flush=True)
                    last_print = elapsed
                if cameras_off_ns is not None and time.monotonic() >= idle_until:
                    break
        if tty:
            print(flush=True)
        stop.set()
        await sampling
        sampler.close()
        end_ns = time.time_ns()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listening
        await listener.close()
    events = _events(tl)
    cold = sum(1 for e in events if e["event"] == "worker_started" and e["t_ns"] >= t0_ns)
    return ModeRun(
        mode=mode,
        samples=samples,
        t0_ns=t0_ns,
        cameras_off_ns=cameras_off_ns or end_ns,
        end_ns=end_ns,
        frames_sent=sum(c.stats.sent for c in cams),
        frames_published=sum(c.stats.published for c in cams),
        tally=tally,
        cold_starts=cold,
    )


async def run_bench(options: EnergyOptions) -> dict[str, Any]:
    for mode in options.modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected a, b or c")
    if not 0 < options.duty_cycle <= 1:
        raise ValueError("duty cycle must be in (0, 1]")
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    weights, note = resolve_weights(options.weights, out / "home")
    if note:
        print(note, flush=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    rows: list[dict[str, Any]] = []
    series: dict[str, Series] = {}
    for mode in options.modes:
        print(f"mode ({mode}): {MODES[mode]}", flush=True)
        folder = (out / mode).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        run = await run_mode(mode, options, weights, folder)
        series[mode] = load_series(run)
        rows.append(summarise(run, series[mode]))
        print(json.dumps(rows[-1]), flush=True)
    write_report(options, weights, rows, series, note)
    print(f"report: {out / 'report.md'}", flush=True)
    return {"energy_bench": rows}
