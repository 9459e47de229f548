"""``report.md`` of a ``tripwire bench energy`` run, from its summary (tables to paste)."""

from __future__ import annotations

from typing import Any

from tripwire.app.energy.workload import COOLDOWN_S, CROSSING_S, EnergyOptions
from tripwire.meters.power_profile import FIELDS, PowerProfile

# The paper's always-on vs FaaS figures (V100, measured), shown beside ours.
PAPER = {"power_saved_w": 65.0, "memory_saved_mib": 858.0, "gpu": "V100"}


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(
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
            "model's curves (`tripwire/app/energy/model.py`). Measured points include the drain "
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
