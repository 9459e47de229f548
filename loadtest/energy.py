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
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest.camera_sim import FrameSource, SimulatedCamera, scene_source, video_source
from loadtest.demo import resolve_weights
from loadtest.scenes import demo_scene
from tripwire import timeline
from tripwire.brokers import Broker, open_broker
from tripwire.contract import ALERTS_PREFIX, DETECTIONS_PREFIX
from tripwire.metrics import MetricsSettings, Sampler
from tripwire.scaler import policy_file
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.stack import Stack, StackOptions, running_stack
from tripwire.starter import read_tokens, write_starter_config

MODES = {
    "a": "every frame, always-on detector",
    "b": "motion-gated, always-on detector",
    "c": "motion-gated, scale-to-zero",
}
COOLDOWN_S = 10
CROSSING_S = 10.0  # one walker crossing in demo_scene


@dataclass
class EnergyOptions:
    cameras: int = 2
    fps: float = 10.0
    duration_s: float = 60.0
    duty_cycle: float = 0.2
    video: Path | None = None
    out: Path = Path("bench-energy")
    modes: Sequence[str] = ("a", "b", "c")
    idle_s: float = 20.0
    interval_s: float = 1.0
    weights: str | None = None
    ready_timeout_s: float = 180.0


@dataclass
class Tally:
    detections: int = 0
    alerts: int = 0
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class ModeRun:
    mode: str
    samples: Path
    t0_ns: int
    cameras_off_ns: int
    end_ns: int
    frames_sent: int
    frames_published: int
    tally: Tally
    cold_starts: int


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
    stack_options = StackOptions(gateway, detector, policy=policy, timeline_path=tl)
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


# --- analysis -------------------------------------------------------------------------


@dataclass
class Series:
    t_s: list[float] = field(default_factory=list)
    interval_s: list[float] = field(default_factory=list)
    power: dict[str, list[float]] = field(default_factory=dict)  # source label -> W
    rss: list[float] = field(default_factory=list)  # bytes, pipeline processes summed
    replicas: list[float] = field(default_factory=list)
    depth: list[float] = field(default_factory=list)


def power_sources(sample: dict[str, Any]) -> dict[str, float]:
    """Power per source of one sample: GPU (NVML, measured), CPU (RAPL measured, machine
    wide; else the estimate for the pipeline's processes)."""
    src = sample["sources"]
    out: dict[str, float] = {}
    gpu = src.get("gpu_nvml", {})
    if gpu.get("available"):
        out["gpu (measured)"] = sum(
            r["value"] for r in gpu["readings"] if r["metric"] == "power_watts"
        )
    rapl = src.get("cpu_rapl", {})
    if rapl.get("available"):
        out["cpu RAPL (measured)"] = sum(
            r["value"] for r in rapl["readings"] if r["metric"] == "power_watts"
        )
    else:
        est = src.get("cpu_estimate", {})
        out["cpu pipeline (estimated)"] = sum(
            r["value"]
            for r in est.get("readings", [])
            if r["metric"] == "power_watts" and r["labels"].get("device") == "pipeline"
        )
    return out


def load_series(run: ModeRun) -> Series:
    series = Series()
    for line in run.samples.read_text().splitlines():
        sample = json.loads(line)
        series.t_s.append((sample["t_ns"] - run.t0_ns) / 1e9)
        series.interval_s.append(sample["interval_s"])
        powers = power_sources(sample)
        for name, watts in powers.items():
            series.power.setdefault(name, []).append(watts)
        readings = sample["sources"].get("memory", {}).get("readings", [])
        series.rss.append(sum(r["value"] for r in readings if r["metric"] == "process_rss_bytes"))
        pipe = {
            r["labels"].get("probe", r["metric"]): r["value"]
            for r in sample["sources"].get("pipeline", {}).get("readings", [])
        }
        series.replicas.append(_probe(pipe, "replicas"))
        series.depth.append(_probe(pipe, "queue_depth"))
    return series


def _probe(values: dict[str, Any], name: str) -> float:
    for key, value in values.items():
        if name in key:
            return float(value)
    return float("nan")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(run: ModeRun, series: Series) -> dict[str, Any]:
    energy = {
        name: sum(w * dt for w, dt in zip(watts, series.interval_s, strict=True))
        for name, watts in series.power.items()
    }
    seconds = sum(series.interval_s)
    total_j = sum(energy.values())
    off_s = (run.cameras_off_ns - run.t0_ns) / 1e9
    tail = [
        i for i, t in enumerate(series.t_s) if t > off_s + (run.end_ns - run.cameras_off_ns) / 2e9
    ]
    idle_floor = (
        statistics.fmean(sum(w[i] for w in series.power.values()) for i in tail) if tail else None
    )
    analysed = run.tally.detections
    return {
        "mode": run.mode,
        "label": MODES[run.mode],
        "seconds": round(seconds, 1),
        "energy_j": {k: round(v, 1) for k, v in energy.items()},
        "energy_total_j": round(total_j, 1),
        "avg_power_w": {k: round(v / seconds, 2) for k, v in energy.items()} if seconds else {},
        "avg_power_total_w": round(total_j / seconds, 2) if seconds else None,
        "idle_floor_w": None if idle_floor is None else round(idle_floor, 2),
        "rss_peak_mib": round(max(series.rss, default=0) / 2**20, 1),
        "rss_mean_mib": round(statistics.fmean(series.rss) / 2**20, 1) if series.rss else 0,
        "frames_sent": run.frames_sent,
        "frames_published": run.frames_published,
        "frames_analysed": analysed,
        "alerts": run.tally.alerts,
        "latency_p50_s": _round(_pct(run.tally.latencies_s, 0.5)),
        "latency_p95_s": _round(_pct(run.tally.latencies_s, 0.95)),
        "cold_starts": run.cold_starts,
        "final_queue_depth": series.depth[-1] if series.depth else None,
        "mj_per_frame": round(1000 * total_j / analysed, 1) if analysed else None,
        "j_per_alert": round(total_j / run.tally.alerts, 1) if run.tally.alerts else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else str(value)


def write_report(
    options: EnergyOptions,
    weights: str,
    rows: list[dict[str, Any]],
    series: dict[str, Series],
    note: str | None,
) -> None:
    out = options.out
    _plot_power(out / "power.png", rows, series, options.duration_s)
    _plot_memory(out / "memory.png", rows)
    sources = sorted({k for r in rows for k in r["energy_j"]})
    gpu = any("gpu" in s for s in sources)
    workload = (
        f"`{options.video}` looped"
        if options.video
        else f"generated scene, someone in view {100 * options.duty_cycle:.0f}% of the time"
    )
    lines = [
        "# tripwire bench energy",
        "",
        f"Workload: {options.cameras} camera(s) x {options.fps:g} fps for "
        f"{options.duration_s:g} s, "
        f"{workload}; then an idle tail of {options.idle_s:g} s. Detector weights `{weights}`. "
        f"Sampling every {options.interval_s:g} s (gateway, detector workers, prefork standby).",
        "",
    ]
    if note:
        lines += [f"Note: {note}", ""]
    lines += [
        "## Energy and power",
        "",
        "| mode | seconds | "
        + " | ".join(f"energy {s} J" for s in sources)
        + " | energy total J | avg power W | idle floor W | mJ per analysed frame | J per alert |",
        "|---" * (6 + len(sources)) + "|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']}: {r['label']} | {r['seconds']} | "
            + " | ".join(_fmt(r["energy_j"].get(s)) for s in sources)
            + f" | {r['energy_total_j']} | {_fmt(r['avg_power_total_w'])} | "
            f"{_fmt(r['idle_floor_w'])} | {_fmt(r['mj_per_frame'])} | {_fmt(r['j_per_alert'])} |"
        )
    lines += [
        "",
        "## Memory (RSS summed over the pipeline's processes, measured)",
        "",
        "| mode | peak RSS MiB | mean RSS MiB |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']}: {r['label']} | {r['rss_peak_mib']} | {r['rss_mean_mib']} |")
    lines += [
        "",
        "## Pipeline",
        "",
        "| mode | frames sent | frames published | frames analysed | alerts | "
        "latency p50 s | latency p95 s | cold starts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']}: {r['label']} | {r['frames_sent']} | {r['frames_published']} | "
            f"{r['frames_analysed']} | {r['alerts']} | {_fmt(r['latency_p50_s'])} | "
            f"{_fmt(r['latency_p95_s'])} | {r['cold_starts']} |"
        )
    backlog = [r for r in rows if (r["final_queue_depth"] or 0) > 0]
    for r in backlog:
        lines.append(
            f"\nMode ({r['mode']}): {r['final_queue_depth']:.0f} frames still queued at the end: "
            "the detector could not keep up, so its idle floor is backlog work, not idle power."
        )
    by_mode = {r["mode"]: r for r in rows}
    ratios = []
    if "c" in by_mode:
        for other in ("a", "b"):
            if other in by_mode and by_mode[other]["energy_total_j"]:
                ratio = by_mode["c"]["energy_total_j"] / by_mode[other]["energy_total_j"]
                ratios.append(f"- energy of (c) / energy of ({other}): **{ratio:.2f}**")
    if ratios:
        lines += ["", "## Headline", "", *ratios]
    lines += [
        "",
        "## How to read this",
        "",
        "- `estimated` figures come from the CPU-time model of `tripwire.metrics.cpu_estimate`"
        " (pipeline processes' CPU time x configured W per CPU); `measured` ones from RAPL"
        " or NVML.",
        "- Energy is power x sample interval summed over the measured window (cameras + idle tail);"
        " the idle floor is the mean power over the second half of the idle tail.",
        "- GPU: "
        + (
            "measured through NVML (whole device)."
            if gpu
            else "NVML absent on this machine, so no GPU figure. On a GPU machine an idle GPU "
            "still draws its idle power when the detector pod is gone (scale-to-zero frees its "
            "memory and its utilisation, not the card's idle watts) unless the node itself is "
            "scaled down."
        ),
        f"- All modes use the shipped policy with cooldownPeriod {COOLDOWN_S} s and scale-down "
        "stabilization 0 s (shortened for the bench); (a) and (b) set minReplicaCount 1.",
        "- Measuring starts once an always-on detector has loaded its model (a/b) or the "
        "prefork standby is ready (c); cold starts counts worker starts inside the window.",
        "- Latency: capture time (camera) to the detection message seen on the broker.",
        "",
        "Plots: `power.png` (power, replicas and queue depth per mode), `memory.png`. "
        "Raw samples: `<mode>/samples.jsonl`; timeline: `<mode>/timeline.jsonl`; "
        "summary: `summary.json`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps({"energy_bench": rows}, indent=2))


def _plot_power(
    path: Path, rows: list[dict[str, Any]], series: dict[str, Series], duration_s: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, axes = plt.subplots(2 * n, 1, figsize=(10, 3.2 * n), sharex=True, squeeze=False)
    for k, r in enumerate(rows):
        s = series[r["mode"]]
        ax_p, ax_r = axes[2 * k][0], axes[2 * k + 1][0]
        for name, watts in s.power.items():
            ax_p.plot(s.t_s, watts, label=name)
        ax_p.set_ylabel("W")
        ax_p.set_title(f"({r['mode']}) {r['label']}: {r['energy_total_j']} J", fontsize=10)
        ax_p.legend(loc="upper right", fontsize=8)
        ax_r.step(s.t_s, s.replicas, where="post", color="tab:green", label="replicas")
        ax_r.set_ylabel("replicas")
        ax_d = ax_r.twinx()
        ax_d.plot(s.t_s, s.depth, color="tab:red", alpha=0.7, label="queue depth")
        ax_d.set_ylabel("queue depth")
        ax_r.legend(loc="upper left", fontsize=8)
        ax_d.legend(loc="upper right", fontsize=8)
        for ax in (ax_p, ax_r):
            ax.axvspan(0, duration_s, color="grey", alpha=0.08)
    axes[-1][0].set_xlabel("seconds (shaded: cameras on)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_memory(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["rss_peak_mib"] for r in rows], 0.4, label="peak RSS")
    ax.bar([x + 0.2 for x in xs], [r["rss_mean_mib"] for r in rows], 0.4, label="mean RSS")
    ax.set_xticks(list(xs), [f"({r['mode']})" for r in rows])
    ax.set_ylabel("MiB (pipeline processes)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
