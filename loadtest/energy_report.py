"""The analysis of a ``tripwire bench energy`` run: power and memory series from the sampler's
JSONL, one summary row per mode, ``report.md`` and the PNG plots."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.energy_workload import COOLDOWN_S, MODES, EnergyOptions, ModeRun


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
