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

A ``<run>`` is :meth:`loadtest.energy_account.Accounting.record`.
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Sequence
from typing import Any

from loadtest.energy_account import PARTS, Accounting, account
from loadtest.energy_model import DutyModel
from loadtest.energy_plots import plot_all
from loadtest.energy_workload import (
    COOLDOWN_S,
    CROSSING_S,
    MODES,
    SHIPPED_COOLDOWN_S,
    EnergyOptions,
    ModeRun,
)
from tripwire.metrics.power_profile import FIELDS, PowerProfile, load_profile, profile_names

SCHEMA = "tripwire.bench.energy/2"
PAPER = {"power_saved_w": 65.0, "memory_saved_mib": 858.0, "gpu": "V100"}
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
    (out / "report.md").write_text(_markdown(options, weights, profile, summary, note))
    return summary


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _markdown(
    options: EnergyOptions,
    weights: str,
    profile: PowerProfile,
    s: dict[str, Any],
    note: str | None,
) -> str:
    modes: dict[str, Any] = s["modes"]
    workload = (
        f"`{options.video}` looped"
        if options.video
        else f"generated 1280x720 scene, someone crossing {100 * s['duty_cycle']:g}% of the time"
    )
    src = next(iter(modes.values()))["power_source"] if modes else "n/a"
    lines = [
        "# tripwire bench energy",
        "",
        f"{s['date']}. Workload: {options.cameras} camera(s) x {options.fps:g} fps x "
        f"{options.duration_s:g} s ({workload}), the same pre-rendered frames in every mode and "
        f"repeat; every frame sent (late rather than dropped) with its capture time on the "
        f"camera's clock. Detector weights `{weights}`. Device profile **{profile.name}** "
        f"({profile.device}); device energy **{src}**. Repeats: {s['repeats']} (interleaved); "
        "figures are medians, [min-max] over repeats.",
        "",
    ]
    if note:
        lines += [f"Note: {note}", ""]
    lines += ["## Equal work", ""]
    lines += [
        "| mode | frames sent | with motion | published | detected (each repeat) | backlog | "
        "drain s | kept up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in modes.items():
        r0 = m["runs"][0]
        lines.append(
            f"| {name} | {r0['frames_sent']} | {r0['frames_motion']} | {r0['frames_published']} | "
            f"{', '.join(map(str, m['frames_processed_runs']))} | {m['backlog']} | "
            f"{_f(m['drain_s'])} | {'yes' if m['kept_up'] else '**no: not compared**'} |"
        )
    lines += [
        "",
        "Equal work: **"
        + ("yes" if s["equal_work"] else "NO")
        + "** (every run of every mode detected the same frames and left none queued).",
        "",
        f"## Device energy by component ({src})",
        "",
        "| mode | idle floor J | resident J | inference J | cold start J | total J [min-max] | "
        "avg W | vs always-on [min-max] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in modes.items():
        e, sp = m["energy_j"], m["energy_j_spread"]
        ratio = m.get("ratio_to_always_on")
        ratio_s = f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]" if ratio else "-"
        if not m["kept_up"]:
            ratio_s = "not compared (backlog)"
        lines.append(
            f"| {name} | {_f(e['idle_floor'])} | {_f(e['resident'])} | {_f(e['inference'])} | "
            f"{_f(e['cold_start'])} | {_f(e['total'])} [{_f(sp['total'][0])}-"
            f"{_f(sp['total'][1])}] | {_f(m['avg_power_w'], 2)} | {ratio_s} |"
        )
    lines += [
        "",
        "## Per unit of work",
        "",
        "| mode | J per motion event | J per camera-hour | J per detected object | "
        "mJ per detected frame | events | objects |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in modes.items():
        lines.append(
            f"| {name} | {_f(m['j_per_event'], 2)} | {_f(m['j_per_camera_hour'])} | "
            f"{_f(m['j_per_object'], 3)} | {_f(m['mj_per_frame'])} | {_f(m['events'], 0)} | "
            f"{_f(m['objects'], 0)} |"
        )
    lines += [
        "",
        "## Memory",
        "",
        "| mode | device MiB-s | mean device MiB | replica-s | model held s | cold starts | "
        "host RSS mean MiB (measured) | host RSS peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in modes.items():
        lines.append(
            f"| {name} | {_f(m['device_mib_s'], 0)} | {_f(m['device_mib_mean'])} | "
            f"{_f(m['replica_s'])} | {_f(m['held_s'])} | {_f(m['cold_starts'], 0)} | "
            f"{_f(m['rss_mean_mib'])} | {_f(m['rss_peak_mib'])} |"
        )
    lines += [
        "",
        "## Host CPU and latency",
        "",
        "| mode | host CPU J | latency p50 s | latency p95 s |",
        "|---|---|---|---|",
    ]
    for name, m in modes.items():
        lines.append(
            f"| {name} | {_f(m['host_cpu_j'])} | {_f(m['latency_p50_s'], 2)} | "
            f"{_f(m['latency_p95_s'], 2)} |"
        )
    if modes:
        host = next(iter(modes.values()))["host_cpu_source"]
        lines += ["", f"Host CPU: {host}; the gateway and the detector on this machine's CPUs."]
    paper = s["paper_comparison"]
    if paper:
        lines += [
            "",
            f"## Always-on vs FaaS ({paper['faas_mode']}), beside the paper",
            "",
            f"| figure | paper ({PAPER['gpu']}, measured) | ours ({paper['profile']}, "
            f"{paper['power_source']}) |",
            "|---|---|---|",
            f"| GPU power saved while no motion, W | {PAPER['power_saved_w']:g} | "
            f"{paper['idle_power_saved_w']:g} (the held context; the bare floor of "
            f"{paper['bare_floor_w']:g} W stays) |",
            f"| GPU power saved on average over this workload, W | - | "
            f"{paper['avg_power_saved_w']:g} |",
            f"| GPU memory saved while no motion, MiB | {PAPER['memory_saved_mib']:g} | "
            f"{paper['idle_memory_saved_mib']:g} |",
            f"| GPU memory saved on average over this workload, MiB | - | "
            f"{paper['memory_saved_mib']:g} |",
        ]
    lines += ["", "## Duty cycle and the crossover", ""]
    cross = s["crossover"]
    for name, c in cross.items():
        label = (
            f"the bench's cooldown ({COOLDOWN_S} s)"
            if name == "bench"
            else "the shipped policy (cooldown 60 s + 30 s stabilization)"
        )
        if c["duty"] is None:
            lines.append(
                f"- With {label}: scale-to-zero never pays back a cold start in energy on "
                f"this profile (no resident power); it saves memory only."
            )
        else:
            lines.append(
                f"- With {label}, keep-alive {c['keep_alive_s']:g} s, a cold start of "
                f"{c['cold_start_j']:g} J: scale-to-zero saves energy below a duty cycle of "
                f"**{100 * c['duty']:.1f}%** (events of {CROSSING_S:g} s); above it, "
                "always-on costs less."
            )
    if s["sweep"]:
        lines += [
            "",
            "| duty cycle (nominal) | frames with motion | "
            + " | ".join(f"{m} J [min-max]" for m in s["sweep"][0]["modes"])
            + " | saved vs always-on (measured) |",
            "|---" * (len(s["sweep"][0]["modes"]) + 3) + "|",
        ]
        for row in s["sweep"]:
            cells = [
                f"{_f(v['energy_total_j'])} [{_f(v['spread'][0])}-{_f(v['spread'][1])}]"
                + ("" if v["backlog"] == 0 else f" (backlog {v['backlog']})")
                for v in row["modes"].values()
            ]
            saved = [
                f"{k}: {100 * (1 - v['ratio_to_always_on']['median']):.0f}%"
                for k, v in row["modes"].items()
                if v.get("ratio_to_always_on")
            ]
            lines.append(
                f"| {row['duty_cycle']:g} | {100 * row['realised_duty']:.0f}% | "
                + " | ".join(cells)
                + f" | {'; '.join(saved)} |"
            )
        lines += [
            "",
            "`sweep.png`: measured points at the share of frames that had motion (a run shorter "
            "than one period, 10 s / duty, sees more motion than its nominal duty) and the "
            "model's curves (`loadtest/energy_model.py`). Measured points include the drain "
            "and the idle tail after the cameras stop: where the detector is slower than the "
            "cameras (a CPU), that tail, not the duty cycle, decides them.",
        ]
    every = s["every_profile"]
    if every:
        names = list(next(iter(every.values()))["energy_total_j"])
        lines += [
            "",
            "## The same runs under every shipped profile (modelled)",
            "",
            "| profile | "
            + " | ".join(f"{m} J" for m in names)
            + " | ratios to always-on | crossover duty (bench / shipped keep-alive) |",
            "|---" * (len(names) + 3) + "|",
        ]
        for name, e in every.items():
            ratios = ", ".join(f"{m} {r:.2f}" for m, r in e["ratio_to_always_on"].items())
            cross = " / ".join(
                "never" if c is None else f"{100 * c:.1f}%"
                for c in (e["crossover_duty_bench"], e["crossover_duty_shipped"])
            )
            lines.append(
                f"| {name} | "
                + " | ".join(_f(e["energy_total_j"].get(m)) for m in names)
                + f" | {ratios or '-'} | {cross} |"
            )
    lines += [
        "",
        f"## Profile `{profile.name}`: every number and its source",
        "",
        "| field | value | source |",
        "|---|---|---|",
    ]
    for field in FIELDS:
        value = getattr(profile, field)
        lines.append(
            f"| {field} | {'measured' if value is None else value} | {profile.sources[field]} |"
        )
    lines += [
        "",
        "## How to read this",
        "",
        "- Window: from the cameras' first frame until every published frame was detected "
        f"(the drain), then an idle tail of {options.idle_s:g} s; every run of a duty cycle is "
        "charged over the longest of these windows, a shorter one extended in its final idle "
        "state (`padded_s` in summary.json). A mode that does not drain "
        f"within {options.drain_timeout_s:g} s is marked `kept up: no` and not compared.",
        "- Modes: `always-on` runs a fixed number of replicas "
        f"({options.replicas}; minReplicaCount = maxReplicaCount, so no decision changes it), "
        "loaded before the window, no prefork standby; `scale-to-zero` starts every worker "
        "from scratch; `scale-to-zero-standby` forks them from the prefork standby. Both "
        f"scale-to-zero modes use the shipped policy with 0..{s['max_replicas']} replicas, "
        f"cooldownPeriod {COOLDOWN_S} s and "
        "scale-down stabilization 0 s (shortened so a short bench reaches zero).",
        "- idle floor: the device's bare idle power over the whole window, in every mode: a "
        "powered GPU draws it with no pod on it, so scale-to-zero cannot save it (only "
        "powering the node off can). resident: the held CUDA context + model while a replica "
        "is alive. inference: the device time of the frames detected. cold start: one "
        "profile cold-start energy per worker started inside the window.",
        "- `modelled: <profile>`: replica-seconds, frames and starts are measured here, the "
        "watts come from the profile. `measured: nvml|rapl`: the total is the counter's; "
        "resident is then the measured total less the modelled other parts.",
        "- Per camera-hour: per hour of video sent (cameras x duration), not per hour of "
        "window. Per object: per box the detector returned (an untrained model finds few or "
        "none: then n/a).",
        "",
        "Plots (shared axes across modes): `power.png` (device power by component over time), "
        "`energy.png` (energy by component, spread over repeats), `memory.png` (device memory "
        "and host RSS over time)" + (", `sweep.png`" if s["sweep"] else "") + ". Raw: "
        "`duty-*/<mode>/r*/samples.jsonl` and `timeline.jsonl`; `summary.json`.",
        "",
    ]
    return "\n".join(lines)
