"""``tripwire bench energy``: the same seeded camera frames through every mode, equal work.

Modes are in :mod:`tripwire.app.energy.workload`. Each run of a mode is a fresh local stack
(embedded NATS, gateway, local scaler, detector workers). The measuring window opens when the
mode is ready (always-on: its replicas have loaded their model; with the standby: the standby
has done its imports), the cameras send every frame of the shared clips, the window stays open
until every published frame has been detected (the drain) and then for an idle tail. A mode
whose queue does not drain within ``drain_timeout_s`` is reported as unable to keep up.

Repeats are interleaved (repeat r runs the modes rotated by r) so that a slow minute of a
shared machine does not land on one mode. The sampler (:mod:`tripwire.meters`) records every
interval; :mod:`tripwire.app.energy.account` turns samples into energy by component.

    tripwire bench energy --cameras 2 --fps 10 --duration 60 --repeats 3 --profile v100
    tripwire bench energy --duration 60 --duty-cycle 0.01 0.05 0.2 0.5
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tripwire import timeline
from tripwire.app.camera_sim import SimulatedCamera, http_post
from tripwire.app.demo import resolve_weights
from tripwire.app.energy.account import account
from tripwire.app.energy.frames import Clip, render
from tripwire.app.energy.report import write_report
from tripwire.app.energy.workload import COOLDOWN_S, MODES, EnergyOptions, ModeRun, Tally
from tripwire.app.stack import Stack, StackOptions, running_stack
from tripwire.brokers import Broker, open_broker
from tripwire.contract import ALERTS_PREFIX, DETECTIONS_PREFIX
from tripwire.meters import MetricsSettings, Sampler
from tripwire.meters.pipeline import Probe
from tripwire.meters.power_profile import load_profile
from tripwire.scaler.policy import write_policy_copy
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.starter import read_tokens, write_starter_config

__all__ = ["EnergyOptions", "run_bench"]


def policy_copy(folder: Path, mode: str, replicas: int, max_replicas: int) -> Path:
    """The shipped policy; always-on pins min = max, scale-to-zero shortens the cooldown."""
    low, high = (replicas, replicas) if mode == "always-on" else (0, max_replicas)
    spec = {"minReplicaCount": low, "maxReplicaCount": high, "cooldownPeriod": COOLDOWN_S}
    return write_policy_copy(folder / "scaledobject.yaml", spec=spec, scale_down_window_s=0)


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


def stack_probes(stack: Stack, tally: Tally) -> dict[str, Probe]:
    """The sampler's probes of a running stack: replicas, queue depth, live detector
    workers, frames processed."""
    return {
        "replicas": lambda: stack.replicas,
        "queue_depth": lambda: stack.scaler.last_metric,
        "workers": lambda: len(_processes(stack).get("detector", [])),
        "processed": lambda: len(tally.processed),
    }


async def _listen(broker: Broker, tally: Tally, t0_ns: int) -> None:
    async def detections() -> None:
        async for message in broker.subscribe(f"{DETECTIONS_PREFIX}.*"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(message.body)
                if int(doc["capture_ns"]) < t0_ns:
                    continue  # not this run's frame: it would be counted as work done
                key = (str(doc["camera"]), int(doc["seq"]))
                if key in tally.processed:
                    tally.duplicates += 1
                    continue
                tally.processed[key] = len(doc.get("boxes") or [])
                if doc.get("event_id"):
                    tally.events.add(f"{key[0]}/{doc['event_id']}")
                tally.latencies_s.append((time.time_ns() - int(doc["capture_ns"])) / 1e9)

    async def alerts() -> None:
        async for _ in broker.subscribe(f"{ALERTS_PREFIX}.*"):
            tally.alerts += 1

    await asyncio.gather(detections(), alerts())


def _events(tl: Path) -> list[dict[str, Any]]:
    return list(timeline.read(tl)) if tl.exists() else []


async def _wait_ready(stack: Stack, mode: str, replicas: int, tl: Path, timeout_s: float) -> None:
    standby = stack.scaler.pool.standby
    if standby is not None and not await standby.wait_ready(timeout_s):
        raise TimeoutError("the prefork standby was not ready in time")
    if mode != "always-on":
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # always-on: the window opens once every model is loaded
        events = await asyncio.to_thread(_events, tl)
        if sum(e["event"] == "model_loaded" for e in events) >= replicas:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{mode}: {replicas} detector(s) did not load their model in time")


def _at_zero(stack: Stack, mode: str) -> bool:
    # A worker asked to stop still holds its model until it exits.
    return mode == "always-on" or (stack.replicas == 0 and not _processes(stack).get("detector"))


def _line(run: str, phase: str, elapsed: float, stack: Stack, t: Tally, published: int) -> str:
    depth = stack.scaler.last_metric
    return (
        f"[{run}] {elapsed:6.1f}s {phase:<9} replicas {stack.replicas} "
        f"depth {'?' if depth is None else depth} detected {len(t.processed)}/{published}"
    )


async def run_mode(
    mode: str,
    options: EnergyOptions,
    clips: list[Clip],
    weights: str,
    folder: Path,
    repeat: int,
    duty_cycle: float,
) -> ModeRun:
    home = folder / "home"
    # A fresh home: the embedded broker keeps its stream there, and a stream left by an
    # earlier run into the same --out would feed this run's detector someone else's frames.
    await asyncio.to_thread(shutil.rmtree, home, ignore_errors=True)
    write_starter_config(home, options.cameras, force=True)
    tokens = read_tokens(home)
    tl, samples = folder / "timeline.jsonl", folder / "samples.jsonl"
    for path in (tl, samples):
        path.unlink(missing_ok=True)
    gateway = GatewaySettings(home=home, port=0, config=home / "cameras.yaml")
    detector = DetectorSettings(home=home, config=home / "cameras.yaml", weights=weights)
    stack_options = StackOptions(
        gateway,
        detector,
        policy=policy_copy(
            folder, mode, options.replicas, options.max_replicas or options.replicas
        ),
        timeline_path=tl,
        prefork=mode == "scale-to-zero-standby",
        console_port=0,
    )
    senders = [
        SimulatedCamera(clip.camera_id, tokens[clip.camera_id], clip.frames, clip.fps)
        for clip in clips
    ]
    frames = {clip.camera_id: len(clip.frames) for clip in clips}
    tally = Tally()
    name = f"{mode} #{repeat + 1} duty {duty_cycle:g}"
    async with running_stack(stack_options) as stack:
        await _wait_ready(stack, mode, options.replicas, tl, options.ready_timeout_s)
        listen_from_ns = time.time_ns()
        listener = open_broker(gateway.broker, stack.endpoint.url)
        await listener.connect()
        listening = asyncio.create_task(_listen(listener, tally, listen_from_ns))

        def published() -> int:
            return sum(s.stats.published for s in senders)

        sampler = Sampler.from_settings(
            MetricsSettings(interval_s=options.interval_s, jsonl=samples, uss_every=5),
            processes=lambda: _processes(stack),
            probes={**stack_probes(stack, tally), "published": published},
        )
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        t0_ns = time.time_ns()  # the window (and the capture clock) starts here
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as client:
            url = stack.gateway_url
            # Equal work in every mode: every frame sent (late, never skipped), a busy
            # gateway's 503 tried again, each frame stamped with its place on the clock.
            sending = [
                asyncio.create_task(
                    s.run(
                        http_post(client, url, s.camera_id, s.token, busy_attempts=5),
                        frames[s.camera_id] / s.fps,
                        start_ns=t0_ns,
                        skip_late=False,
                        stamp_due=True,
                    )
                )
                for s in senders
            ]
            cameras_off_ns = drained_ns = None
            drain_deadline = idle_until = 0.0
            last_print = -10.0
            while True:
                await asyncio.sleep(0.25)
                now = time.monotonic()
                if cameras_off_ns is None and all(t.done() for t in sending):
                    for task in sending:
                        task.result()  # a sender that failed is a bench bug: say so
                    cameras_off_ns = time.time_ns()
                    drain_deadline = now + options.drain_timeout_s
                if cameras_off_ns is not None and drained_ns is None:
                    if len(tally.processed) >= published():
                        drained_ns, idle_until = time.time_ns(), now + options.idle_s
                    elif now >= drain_deadline:  # cannot keep up: stop here, report the backlog
                        idle_until = now
                phase = (
                    "cameras"
                    if cameras_off_ns is None
                    else ("draining" if drained_ns is None else "idle tail")
                )
                if now - started - last_print >= 5:
                    print(_line(name, phase, now - started, stack, tally, published()), flush=True)
                    last_print = now - started
                # Scale-to-zero ends at zero: the report extends every run to the longest window
                # in its final state, which must then be the idle one.
                settled = drained_ns is None or _at_zero(stack, mode) or now >= idle_until + 60
                if cameras_off_ns is not None and idle_until and now >= idle_until and settled:
                    break
        stop.set()
        await sampling
        sampler.close()
        end_ns = time.time_ns()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listening
        await listener.close()
    return ModeRun(
        mode=mode,
        repeat=repeat,
        duty_cycle=duty_cycle,
        folder=folder,
        samples=samples,
        timeline=tl,
        t0_ns=t0_ns,
        cameras_off_ns=cameras_off_ns or end_ns,
        drained_ns=drained_ns,
        end_ns=end_ns,
        camera_s=sum(len(c.frames) / c.fps for c in clips),
        frames_sent=sum(s.stats.sent for s in senders),
        frames_published=published(),
        frames_motion=sum(s.stats.motion for s in senders),
        http_errors=sum(s.stats.errors for s in senders),
        tally=tally,
    )


def check_options(options: EnergyOptions) -> None:
    for mode in options.modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    for duty in options.duty_cycles:
        if not 0 < duty <= 1:
            raise ValueError(f"duty cycle {duty:g} is not in (0, 1]")
    if options.repeats < 1 or options.replicas < 1 or (options.max_replicas or 1) < 1:
        raise ValueError("repeats and replicas must be at least 1")


async def run_bench(options: EnergyOptions) -> dict[str, Any]:
    check_options(options)
    profile = load_profile(options.profile)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    weights, note = resolve_weights(options.weights, out / "home")
    if note:
        print(note, flush=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    runs: list[ModeRun] = []
    for duty in options.duty_cycles:
        clips = await asyncio.to_thread(render, options, duty)
        print(f"duty {duty:g}: {sum(len(c.frames) for c in clips)} frames rendered", flush=True)
        for repeat in range(options.repeats):
            k = repeat % len(options.modes)
            for mode in [*options.modes[k:], *options.modes[:k]]:  # interleaved, rotated
                folder = (out / f"duty-{duty:g}" / mode / f"r{repeat + 1}").resolve()
                folder.mkdir(parents=True, exist_ok=True)
                run = await run_mode(mode, options, clips, weights, folder, repeat, duty)
                runs.append(run)
                print(f"{mode} #{repeat + 1}: {json.dumps(account(run, profile).brief())}")
                sys.stdout.flush()
    summary = write_report(options, weights, profile, runs, note)
    print(f"report: {out / 'report.md'}", flush=True)
    return summary
