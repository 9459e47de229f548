"""Energy by component for one run of one mode: samples + timeline + a power profile.

The device's energy over the window (cameras on -> queue drained -> idle tail) is split as
:mod:`tripwire.meters.power_profile` describes: bare idle floor, resident model, inference,
cold starts. Where a counter measured the device (NVML for a GPU profile, RAPL for the CPU
one), the total is the measurement and ``resident`` is what is left after the modelled parts,
so the parts still add up to what was measured; otherwise every part is modelled and
``power_source`` says ``modelled: <profile>``.

What is measured in every case: frames detected (one per (camera, seq)), the time each detector
worker was alive (replica-seconds), worker starts and how long each took to load (timeline),
CPU-seconds per process (/proc) and host memory (RSS).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from tripwire import timeline
from tripwire.app.energy.workload import ModeRun
from tripwire.meters.power_profile import PowerProfile

PARTS = ("idle_floor", "resident", "inference", "cold_start")


@dataclass
class Series:
    """One value per sample; a sample covers the interval that ends at ``t_s``."""

    t_s: list[float] = field(default_factory=list)
    dt: list[float] = field(default_factory=list)
    workers: list[float] = field(default_factory=list)
    replicas: list[float] = field(default_factory=list)
    depth: list[float] = field(default_factory=list)
    processed: list[float] = field(default_factory=list)
    detector_busy: list[float] = field(default_factory=list)  # CPUs
    pipeline_busy: list[float] = field(default_factory=list)  # CPUs, every pipeline process
    host_w: list[float] = field(default_factory=list)  # RAPL package, else the CPU estimate
    host_measured: bool = False
    gpu_w: list[float] | None = None  # NVML board power, when measured
    gpu_mib: list[float] | None = None  # NVML memory of the pipeline's processes
    rss_mib: list[float] = field(default_factory=list)
    # Modelled device power per part, W (filled by account()).
    power: dict[str, list[float]] = field(default_factory=dict)
    device_mib: list[float] = field(default_factory=list)


def _readings(sample: dict[str, Any], source: str) -> list[dict[str, Any]]:
    src = sample["sources"].get(source, {})
    return list(src.get("readings", [])) if src.get("available") else []


def _value(readings: list[dict[str, Any]], metric: str, **labels: str) -> float | None:
    for r in readings:
        if r["metric"] == metric and all(r["labels"].get(k) == v for k, v in labels.items()):
            return float(r["value"])
    return None


def load_series(run: ModeRun) -> Series:
    s = Series()
    gpu_w: list[float] = []
    gpu_mib: list[float] = []
    for line in run.samples.read_text().splitlines():
        sample = json.loads(line)
        s.t_s.append((sample["t_ns"] - run.t0_ns) / 1e9)
        s.dt.append(float(sample["interval_s"]))
        pipe = _readings(sample, "pipeline")
        for name, out in (
            ("workers", s.workers),
            ("replicas", s.replicas),
            ("queue_depth", s.depth),
            ("processed", s.processed),
        ):
            value = _value(pipe, f"pipeline_{name}")
            out.append(value if value is not None else (out[-1] if out else 0.0))
        est = _readings(sample, "cpu_estimate")
        s.detector_busy.append(
            _value(est, "cpu_busy_cpus", scope="pipeline", role="detector") or 0.0
        )
        s.pipeline_busy.append(_value(est, "cpu_busy_cpus", scope="pipeline", role="all") or 0.0)
        rapl = _readings(sample, "cpu_rapl")
        if rapl:
            s.host_measured = True
            s.host_w.append(sum(r["value"] for r in rapl if r["metric"] == "power_watts"))
        else:
            s.host_w.append(_value(est, "power_watts", device="pipeline") or 0.0)
        nvml = _readings(sample, "gpu_nvml")
        if nvml:
            gpu_w.append(sum(r["value"] for r in nvml if r["metric"] == "power_watts"))
            gpu_mib.append(
                sum(r["value"] for r in nvml if r["metric"] == "gpu_process_memory_bytes") / 2**20
            )
        mem = _readings(sample, "memory")
        s.rss_mib.append(sum(r["value"] for r in mem if r["metric"] == "process_rss_bytes") / 2**20)
    if gpu_w and len(gpu_w) == len(s.t_s):
        s.gpu_w, s.gpu_mib = gpu_w, gpu_mib
    return s


def cold_starts(run: ModeRun) -> list[tuple[float, float]]:
    """(start, ready) seconds from the window's start, for every worker started inside it."""
    events = list(timeline.read(run.timeline)) if run.timeline.exists() else []
    loaded = {e["pid"]: e["t_ns"] for e in events if e["event"] == "model_loaded"}
    out = []
    for e in events:
        if e["event"] == "worker_started" and e["t_ns"] >= run.t0_ns:
            ready = loaded.get(e["worker_pid"], run.end_ns)
            out.append(((e["t_ns"] - run.t0_ns) / 1e9, (ready - run.t0_ns) / 1e9))
    return out


def _integral(watts: list[float], dt: list[float]) -> float:
    return sum(w * d for w, d in zip(watts, dt, strict=True))


def _overlap(a0: float, a1: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(a1, b1) - max(a0, b0)) for b0, b1 in spans)


@dataclass
class Accounting:
    run: ModeRun
    profile: PowerProfile
    series: Series
    window_s: float
    energy_j: dict[str, float]
    power_source: str
    held_s: float
    replica_s: float
    device_mib_s: float
    starts: list[tuple[float, float]]
    host_j: float
    host_source: str
    padded_s: float = 0.0

    @property
    def frames_processed(self) -> int:
        return len(self.run.tally.processed)

    @property
    def backlog(self) -> int:
        return max(0, self.run.frames_published - self.frames_processed)

    @property
    def drain_s(self) -> float | None:
        if self.run.drained_ns is None:
            return None
        return max(0.0, (self.run.drained_ns - self.run.cameras_off_ns) / 1e9)

    def brief(self) -> dict[str, Any]:
        return {
            "frames_processed": self.frames_processed,
            "backlog": self.backlog,
            "drain_s": None if self.drain_s is None else round(self.drain_s, 1),
            "energy_total_j": round(self.energy_j["total"], 1),
            "cold_starts": len(self.starts),
        }

    def record(self) -> dict[str, Any]:
        """One run's figures, as summary.json's ``runs`` lists them."""
        run, tally = self.run, self.run.tally
        total = self.energy_j["total"]
        camera_h = run.camera_s / 3600
        lat = sorted(tally.latencies_s)
        return {
            "mode": run.mode,
            "repeat": run.repeat + 1,
            "duty_cycle": run.duty_cycle,
            "frames_sent": run.frames_sent,
            "frames_motion": run.frames_motion,
            "frames_published": run.frames_published,
            "frames_processed": self.frames_processed,
            "backlog": self.backlog,
            "kept_up": run.drained_ns is not None,
            "drain_s": None if self.drain_s is None else round(self.drain_s, 2),
            "http_errors": run.http_errors,
            "duplicates": tally.duplicates,
            "window_s": round(self.window_s, 2),
            "padded_s": round(self.padded_s, 2),
            "energy_j": {k: round(v, 2) for k, v in self.energy_j.items()},
            "power_source": self.power_source,
            "avg_power_w": round(total / self.window_s, 3) if self.window_s else None,
            "events": len(tally.events),
            "objects": tally.objects,
            "alerts": tally.alerts,
            "j_per_event": round(total / len(tally.events), 2) if tally.events else None,
            "j_per_camera_hour": round(total / camera_h, 1) if camera_h else None,
            "j_per_object": round(total / tally.objects, 3) if tally.objects else None,
            "mj_per_frame": (
                round(1000 * total / self.frames_processed, 1) if self.frames_processed else None
            ),
            "cold_starts": len(self.starts),
            "cold_start_s": [round(b - a, 2) for a, b in self.starts],
            "held_s": round(self.held_s, 2),
            "replica_s": round(self.replica_s, 2),
            "device_mib_s": round(self.device_mib_s, 1),
            "device_mib_mean": round(self.device_mib_s / self.window_s, 1) if self.window_s else 0,
            "host_cpu_j": round(self.host_j, 2),
            "host_cpu_source": self.host_source,
            "rss_mean_mib": round(statistics.fmean(self.series.rss_mib), 1)
            if self.series.rss_mib
            else 0.0,
            "rss_peak_mib": round(max(self.series.rss_mib, default=0.0), 1),
            "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "latency_p95_s": round(lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))], 3)
            if lat
            else None,
        }


def pad(s: Series, to_s: float) -> float:
    """Extend the series to ``to_s`` seconds in its final state (idle: nothing is sent any
    more), so that every mode is charged over the same window; returns the seconds added."""
    extra = to_s - sum(s.dt)
    if extra <= 0.01 or not s.t_s:
        return 0.0
    s.t_s.append(s.t_s[-1] + extra)
    s.dt.append(extra)
    for values in (s.workers, s.replicas, s.depth, s.processed, s.rss_mib):
        values.append(values[-1])
    s.detector_busy.append(0.0)
    s.pipeline_busy.append(0.0)
    tail = s.host_w[-3:]
    s.host_w.append(sum(tail) / len(tail))
    if s.gpu_w is not None and s.gpu_mib is not None:
        s.gpu_w.append(sum(s.gpu_w[-3:]) / len(s.gpu_w[-3:]))
        s.gpu_mib.append(s.gpu_mib[-1])
    return extra


def account(run: ModeRun, profile: PowerProfile, window_s: float | None = None) -> Accounting:
    """``window_s``: charge the run over this many seconds (see :func:`pad`)."""
    s = load_series(run)
    padded_s = pad(s, window_s) if window_s is not None else 0.0
    starts = cold_starts(run)
    p = profile
    power: dict[str, list[float]] = {part: [] for part in PARTS}
    mib: list[float] = []
    held_s = replica_s = 0.0
    prev_processed = 0.0
    for i, (t, dt) in enumerate(zip(s.t_s, s.dt, strict=True)):
        t0 = t - dt
        workers = s.workers[i]
        held = workers > 0
        held_s += dt if held else 0.0
        replica_s += workers * dt
        frames = max(0.0, s.processed[i] - prev_processed)
        prev_processed = s.processed[i]
        cold_frac = min(1.0, _overlap(t0, t, starts) / dt) if dt > 0 else 0.0
        power["idle_floor"].append(p.idle_floor_w)
        # A GPU's held context raises its idle level once, whatever the number of replicas.
        power["resident"].append(p.resident_w if held else 0.0)
        if p.inference_s_per_frame is not None and p.cold_start_j is not None:
            busy_s = frames * p.inference_s_per_frame
            power["inference"].append(p.active_w * busy_s / dt if dt > 0 else 0.0)
            cold_w = sum(
                p.cold_start_j / max(b - a, 1e-3) * max(0.0, min(t, b) - max(t0, a)) / dt
                for a, b in starts
            )
            power["cold_start"].append(cold_w)
        else:  # cpu kind: the detector's own CPU-seconds, split by whether a worker was starting
            power["inference"].append(p.active_w * s.detector_busy[i] * (1 - cold_frac))
            power["cold_start"].append(p.active_w * s.detector_busy[i] * cold_frac)
        mib.append(workers * p.resident_mib)
    s.power, s.device_mib = power, mib
    window_s = sum(s.dt)
    energy = {part: sum(w * dt for w, dt in zip(power[part], s.dt, strict=True)) for part in PARTS}
    if p.inference_s_per_frame is not None and p.cold_start_j is not None:
        # Exact counts rather than the per-sample spread (a start still loading at the end).
        energy["inference"] = p.active_w * p.inference_s_per_frame * len(run.tally.processed)
        energy["cold_start"] = p.cold_start_j * len(starts)
    source = f"modelled: {p.name}"
    measured = None
    if p.kind == "gpu" and s.gpu_w is not None:
        measured, source = _integral(s.gpu_w, s.dt), "measured: nvml"
    elif p.kind == "cpu" and s.host_measured:
        measured, source = _integral(s.host_w, s.dt), "measured: rapl"
    if measured is not None:
        rest = measured - energy["idle_floor"] - energy["inference"] - energy["cold_start"]
        energy["resident"] = max(0.0, rest)
    energy["total"] = sum(energy[part] for part in PARTS)
    device_mib_s = sum(m * dt for m, dt in zip(mib, s.dt, strict=True))
    if s.gpu_mib is not None:
        device_mib_s = sum(m * dt for m, dt in zip(s.gpu_mib, s.dt, strict=True))
        s.device_mib = s.gpu_mib
    host_j = sum(w * dt for w, dt in zip(s.host_w, s.dt, strict=True))
    host_source = (
        "measured: rapl (machine-wide package)"
        if s.host_measured
        else "estimated: pipeline CPU-seconds x W per CPU (tripwire.meters.cpu_estimate)"
    )
    return Accounting(
        run=run,
        profile=p,
        series=s,
        window_s=window_s,
        energy_j=energy,
        power_source=source,
        held_s=held_s,
        replica_s=replica_s,
        device_mib_s=device_mib_s,
        starts=starts,
        host_j=host_j,
        host_source=host_source,
        padded_s=padded_s,
    )
