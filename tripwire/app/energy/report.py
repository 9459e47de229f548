"""``report.md`` and ``summary.json`` of a ``tripwire bench energy`` run.

summary.json (schema ``tripwire.bench.energy/2``)::

    {"schema": "tripwire.bench.energy/2", "date": "...", "profile": "v100",
     "profile_device": "...", "repeats": 3, "duty_cycle": 0.2, "duty_cycles": [0.2],
     "equal_work": true,            # every run detected the same number of frames, none left
     "modes": {"<mode>": {          # the first --duty-cycle; medians over the repeats
         "label": "...", "frames_processed": 412, "backlog": 0, "kept_up": true,
         "drain_s": 3.1, "energy_j": {"idle_floor": .., "resident": .., "inference": ..,
         "cold_start": .., "total": ..}, "energy_j_spread": {"total": [min, max], ...},
         "power_source": "modelled: v100" | "measured: nvml" | "measured: rapl",
         "j_per_event": .., "j_per_camera_hour": .., "j_per_object": .., "device_mib_s": ..,
         "ratio_to_always_on": {"median": .., "min": .., "max": ..}, "runs": [<run>, ...]}},
     "paper_comparison": {...}, "sweep": [{"duty_cycle": .., "modes": {...}}, ...],
     "crossover": {...}}

A ``<run>`` is :meth:`tripwire.app.energy.account.Accounting.record`.
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Sequence
from typing import Any

from tripwire.app.energy.account import PARTS, Accounting, account
from tripwire.app.energy.markdown import PAPER, markdown
from tripwire.app.energy.model import DutyModel
from tripwire.app.energy.plots import plot_all
from tripwire.app.energy.workload import (
    COOLDOWN_S,
    CROSSING_S,
    MODES,
    SHIPPED_COOLDOWN_S,
    EnergyOptions,
    ModeRun,
)
from tripwire.meters.power_profile import PowerProfile, load_profile, profile_names

SCHEMA = "tripwire.bench.energy/2"
POLLING_S = 5.0  # the shipped policy's pollingInterval: a scale-in is seen up to one poll late


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _spread(values: Sequence[float]) -> list[float]:
    return [round(min(values), 2), round(max(values), 2)]


def _mode_summary(accs: list[Accounting], base: list[Accounting] | None) -> dict[str, Any]:
    records = [a.record() for a in accs]
    energy = {k: round(_median([a.energy_j[k] for a in accs]), 2) for k in (*PARTS, "total")}
    out: dict[str, Any] = {
        "label": MODES[accs[0].run.mode],
        "frames_processed": int(_median([r["frames_processed"] for r in records])),
        "frames_processed_runs": [r["frames_processed"] for r in records],
        "backlog": max(r["backlog"] for r in records),
        "kept_up": all(r["kept_up"] for r in records),
        "drain_s": _opt_median([r["drain_s"] for r in records]),
        "energy_j": energy,
        "energy_j_spread": {k: _spread([a.energy_j[k] for a in accs]) for k in (*PARTS, "total")},
        "power_source": accs[0].power_source,
    }
    for key in (
        "window_s",
        "avg_power_w",
        "j_per_event",
        "j_per_camera_hour",
        "j_per_object",
        "mj_per_frame",
        "cold_starts",
        "held_s",
        "replica_s",
        "device_mib_s",
        "device_mib_mean",
        "host_cpu_j",
        "rss_mean_mib",
        "rss_peak_mib",
        "latency_p50_s",
        "latency_p95_s",
        "events",
        "objects",
    ):
        out[key] = _opt_median([r[key] for r in records])
    out["host_cpu_source"] = records[0]["host_cpu_source"]
    if base:
        # Pair repeat r of this mode with repeat r of always-on: the spread is of the ratios.
        ratios = [
            a.energy_j["total"] / b.energy_j["total"]
            for a, b in zip(accs, base, strict=False)
            if b.energy_j["total"]
        ]
        if ratios:
            out["ratio_to_always_on"] = {
                "median": round(_median(ratios), 3),
                "min": round(min(ratios), 3),
                "max": round(max(ratios), 3),
            }
    out["runs"] = records
    return out


def _opt_median(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    m = _median(present)
    return round(m, 3)


def _group(accs: list[Accounting], duty: float) -> dict[str, list[Accounting]]:
    out: dict[str, list[Accounting]] = {}
    for a in accs:
        if a.run.duty_cycle == duty:
            out.setdefault(a.run.mode, []).append(a)
    for runs in out.values():
        runs.sort(key=lambda a: a.run.repeat)
    return out


def _modes(groups: dict[str, list[Accounting]]) -> dict[str, Any]:
    base = groups.get("always-on")
    return {
        mode: _mode_summary(runs, None if mode == "always-on" else base)
        for mode, runs in groups.items()
    }


def _faas(modes: dict[str, Any]) -> str | None:
    for name in ("scale-to-zero-standby", "scale-to-zero"):
        if name in modes:
            return name
    return None


def _paper(modes: dict[str, Any], profile: PowerProfile) -> dict[str, Any] | None:
    faas = _faas(modes)
    if "always-on" not in modes or faas is None:
        return None
    ao, fs = modes["always-on"], modes[faas]
    return {
        "faas_mode": faas,
        "paper": PAPER,
        "profile": profile.name,
        "power_source": ao["power_source"],
        # With no motion, always-on holds floor + context; scale-to-zero only the floor.
        "idle_power_saved_w": profile.resident_w,
        "avg_power_saved_w": round((ao["avg_power_w"] or 0) - (fs["avg_power_w"] or 0), 2),
        "memory_saved_mib": round(ao["device_mib_mean"] - fs["device_mib_mean"], 1),
        "idle_memory_saved_mib": profile.resident_mib,
        "bare_floor_w": profile.idle_floor_w,
    }


def _duty_model(profile: PowerProfile, modes: dict[str, Any], keep_alive_s: float) -> DutyModel:
    cold_j = profile.cold_start_j
    faas = _faas(modes)
    if cold_j is None and faas is not None and modes[faas]["cold_starts"]:
        cold_j = modes[faas]["energy_j"]["cold_start"] / modes[faas]["cold_starts"]
    ao = modes.get("always-on")
    inference_w = 0.0
    if ao and ao["window_s"]:
        inference_w = ao["energy_j"]["inference"] / max(1.0, ao["events"] or 1) / CROSSING_S
    return DutyModel(
        idle_floor_w=profile.idle_floor_w,
        resident_w=profile.resident_w,
        cold_start_j=cold_j or 0.0,
        inference_w=inference_w,
        event_s=CROSSING_S,
        keep_alive_s=keep_alive_s,
    )


def _sweep(accs: list[Accounting], duties: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    for duty in duties:
        modes = _modes(_group(accs, duty))
        first = next(iter(modes.values()))["runs"][0]
        # The scene's first crossing starts 5 s in: a run shorter than one period (10 s /
        # duty) sees more motion than the nominal duty. The gate's share of frames with motion
        # is what the run actually had.
        realised = first["frames_motion"] / first["frames_sent"] if first["frames_sent"] else 0
        row: dict[str, Any] = {
            "duty_cycle": duty,
            "realised_duty": round(realised, 4),
            "modes": {},
        }
        for mode, m in modes.items():
            row["modes"][mode] = {
                "energy_total_j": m["energy_j"]["total"],
                "spread": m["energy_j_spread"]["total"],
                "frames_processed": m["frames_processed"],
                "backlog": m["backlog"],
                "cold_starts": m["cold_starts"],
                "ratio_to_always_on": m.get("ratio_to_always_on"),
            }
        out.append(row)
    return out


def _every_profile(runs: list[ModeRun], windows: dict[float, float], duty: float) -> dict[str, Any]:
    """The same runs charged with every shipped profile: what the device changes."""
    out: dict[str, Any] = {}
    for name in profile_names():
        profile = load_profile(name)
        groups = _group([account(r, profile, windows[r.duty_cycle]) for r in runs], duty)
        totals = {m: _median([a.energy_j["total"] for a in accs]) for m, accs in groups.items()}
        base = totals.get("always-on")
        keep_alive = COOLDOWN_S + POLLING_S
        model = _duty_model(profile, _modes(groups), SHIPPED_COOLDOWN_S + POLLING_S)
        out[name] = {
            "device": profile.device,
            "energy_total_j": {m: round(t, 1) for m, t in totals.items()},
            "ratio_to_always_on": {
                m: round(t / base, 3) for m, t in totals.items() if base and m != "always-on"
            },
            "crossover_duty_bench": _duty_model(
                profile, _modes(groups), keep_alive
            ).crossover_duty(),
            "crossover_duty_shipped": model.crossover_duty(),
        }
    return out


def write_report(
    options: EnergyOptions,
    weights: str,
    profile: PowerProfile,
    runs: list[ModeRun],
    note: str | None,
) -> dict[str, Any]:
    # Every run of one duty cycle is charged over the same window: the longest one, the
    # shorter ones extended in their final idle state (a mode that drained sooner idles on).
    windows: dict[float, float] = {}
    for run in runs:
        w = account(run, profile).window_s
        windows[run.duty_cycle] = max(windows.get(run.duty_cycle, 0.0), w)
    accs = [account(run, profile, windows[run.duty_cycle]) for run in runs]
    duties = list(options.duty_cycles)
    main = _group(accs, duties[0])
    modes = _modes(main)
    processed = {r for m in modes.values() for r in m["frames_processed_runs"]}
    equal = len(processed) == 1 and all(m["backlog"] == 0 for m in modes.values())
    models = {
        "bench": _duty_model(profile, modes, COOLDOWN_S + POLLING_S),
        "shipped": _duty_model(profile, modes, SHIPPED_COOLDOWN_S + POLLING_S),
    }
    crossover = {
        name: {
            "keep_alive_s": m.keep_alive_s,
            "cold_start_j": round(m.cold_start_j, 1),
            "duty": None if m.crossover_duty() is None else round(m.crossover_duty() or 0, 4),
        }
        for name, m in models.items()
    }
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "profile": profile.name,
        "profile_device": profile.device,
        "repeats": options.repeats,
        "duty_cycle": duties[0],
        "duty_cycles": duties,
        "cameras": options.cameras,
        "fps": options.fps,
        "duration_s": options.duration_s,
        "idle_s": options.idle_s,
        "replicas_always_on": options.replicas,
        "max_replicas": options.max_replicas or options.replicas,
        "weights": weights,
        "equal_work": equal,
        "modes": modes,
        "paper_comparison": _paper(modes, profile),
        "sweep": _sweep(accs, duties) if len(duties) > 1 else [],
        "crossover": crossover,
        "every_profile": _every_profile(
            [r for r in runs if r.duty_cycle == duties[0]], windows, duties[0]
        ),
    }
    out = options.out
    plot_all(out, profile, main, summary, models)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown(options, weights, profile, summary, note))
    return summary
