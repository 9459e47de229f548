"""``tripwire bench fleet``: every keep-alive policy over the same simulated fleet.

For each fleet size the same generated trace (seeded) runs once per policy through
:mod:`tripwire.fleet.simulate`; the policies are the shipped ScaledObject with one change
each, read by the policy parser the local scaler uses:

- ``fixed-300``: ``cooldownPeriod: 300`` (KEDA's default);
- ``fixed-60``: the shipped file as it is (``cooldownPeriod: 60``);
- ``histogram``: annotation ``keepalive.tripwire.dev/policy: histogram``;
- ``break-even``: ``policy: break-even`` with the bench's power profile.

Per policy: energy split as the energy benchmark splits it, worker starts (cold starts),
events served cold, wake -> first result latency p50/p95/p99, GPU-hours held; and the
simulator's own speed in simulated camera-hours per wall-clock second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tripwire.errors import TripwireError
from tripwire.fleet.generate import FleetShape, generate_fleet
from tripwire.fleet.simulate import SimOptions, SiteResult, simulate_site
from tripwire.fleet.trace import Trace
from tripwire.keepalive import ANNOTATION_PREFIX
from tripwire.meters.power_profile import PowerProfile, load_profile
from tripwire.scaler.policy import ScalingPolicy, policy_file, policy_from_object

POLICIES = ("fixed-300", "fixed-60", "histogram", "break-even")
PARTS = ("idle_floor", "resident", "inference", "cold_start")


def policy_variant(name: str, profile: str, base: Path | None = None) -> ScalingPolicy:
    """The shipped policy file (or ``base``) changed for one keep-alive policy."""
    path = base or policy_file("nats")
    doc = yaml.safe_load(path.read_text())
    annotations = doc["metadata"].setdefault("annotations", {})
    if name == "fixed-300":
        doc["spec"]["cooldownPeriod"] = 300
    elif name == "histogram":
        annotations[f"{ANNOTATION_PREFIX}policy"] = "histogram"
    elif name == "break-even":
        annotations[f"{ANNOTATION_PREFIX}policy"] = "break-even"
        annotations[f"{ANNOTATION_PREFIX}profile"] = profile
    elif name != "fixed-60":
        raise ValueError(f"unknown policy {name!r}: use one of {', '.join(POLICIES)}")
    return policy_from_object(doc, f"{path} ({name})")


@dataclass
class PolicyRun:
    policy: str
    cameras: int
    hours: float
    sites: list[SiteResult] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.concatenate([np.asarray(s.latencies) for s in self.sites] or [np.zeros(0)])
        energy = {p: sum(s.energy_j[p] for s in self.sites) for p in (*PARTS, "total")}
        pct = (
            {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}
            if len(lat)
            else {"p50": None, "p95": None, "p99": None}
        )
        camera_h = self.cameras * self.hours
        return {
            "policy": self.policy,
            "cameras": self.cameras,
            "sites": len(self.sites),
            "hours": self.hours,
            "events": sum(s.events for s in self.sites),
            "frames": sum(s.frames for s in self.sites),
            "energy_kwh": {k: v / 3.6e6 for k, v in energy.items()},
            "cold_starts": sum(s.starts for s in self.sites),
            "prewarms": sum(s.prewarms for s in self.sites),
            "cold_events": sum(s.cold_events for s in self.sites),
            "latency_s": pct,
            "gpu_h_held": sum(s.replica_s for s in self.sites) / 3600,
            "device_h_held": sum(s.held_s for s in self.sites) / 3600,
            "decisions": sum(s.decisions for s in self.sites),
            "wall_s": self.wall_s,
            "camera_h_per_s": camera_h / self.wall_s if self.wall_s else None,
        }


def run_policy(
    trace: Trace,
    policy_name: str,
    profile: PowerProfile,
    options: SimOptions,
    hours: float,
    base: Path | None = None,
) -> PolicyRun:
    policy = policy_variant(policy_name, profile.name, base)
    run = PolicyRun(policy_name, len(trace.cameras), hours)
    started = time.perf_counter()
    for index, (site, cameras) in enumerate(sorted(trace.sites().items())):
        seed = options.seed * 1_000_003 + index  # the same draws for every policy
        run.sites.append(
            simulate_site(site, cameras, trace.duration_s, policy, profile, options, seed)
        )
    run.wall_s = time.perf_counter() - started
    return run


@dataclass
class FleetOptions:
    cameras: Sequence[int] = (10, 100, 1000, 10000)
    hours: float = 24.0
    policies: Sequence[str] = POLICIES
    profile: str = "h200"
    site_size: int = 10
    events_per_hour: float = 4.0
    seed: int = 1
    trace: Path | None = None  # replay this trace instead of generating (cameras ignored)
    template: Path | None = None  # event lengths from this recorded trace
    sim: SimOptions = field(default_factory=SimOptions)
    out: Path | None = None


def _fmt_ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| cameras | policy | energy kWh (floor / resident / inference / cold) | cold starts "
        "| p50 / p95 / p99 wake->result s | GPU-h held |\n|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        e, lat = r["energy_kwh"], r["latency_s"]
        split = " / ".join(f"{e[p]:.1f}" for p in PARTS)
        lats = " / ".join("-" if lat[q] is None else f"{lat[q]:.2f}" for q in ("p50", "p95", "p99"))
        lines.append(
            f"| {r['cameras']:,} | {r['policy']} | {e['total']:.1f} ({split}) "
            f"| {r['cold_starts']:,} | {lats} | {r['gpu_h_held']:.1f} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    """Each learnt policy against KEDA's default 300 s and the shipped 60 s, per fleet size;
    ``*`` marks the size's least-energy policy. "above floor" leaves out the idle floor that
    no keep-alive policy can change."""
    lines = [
        "| cameras | policy | energy vs 300 s / 60 s | above floor vs 300 s / 60 s "
        "| cold starts vs 300 s / 60 s | p95 vs 300 s / 60 s |",
        "|---|---|---|---|---|---|",
    ]

    def measure(r: dict[str, Any], key: str) -> float:
        e = r["energy_kwh"]
        if key == "energy":
            return float(e["total"])
        if key == "above":
            return float(e["total"] - e["idle_floor"])
        if key == "cold":
            return float(r["cold_starts"])
        return float(r["latency_s"]["p95"] or 0.0)

    for cameras in sorted({r["cameras"] for r in rows}):
        mine = {r["policy"]: r for r in rows if r["cameras"] == cameras}
        if "fixed-300" not in mine or "fixed-60" not in mine:
            continue
        best = min(mine.values(), key=lambda r: r["energy_kwh"]["total"])["policy"]
        for name, row in mine.items():
            if name.startswith("fixed-"):
                continue
            cells = [
                " / ".join(
                    _fmt_ratio(measure(row, key), measure(mine[base], key))
                    for base in ("fixed-300", "fixed-60")
                )
                for key in ("energy", "above", "cold", "p95")
            ]
            mark = " *" if name == best else ""
            lines.append(f"| {cameras:,} | {name}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class FleetBenchError(TripwireError):
    """The bench cannot run as asked; the message says why."""


def run_fleet(options: FleetOptions) -> dict[str, Any]:
    profile = load_profile(options.profile)
    if options.out is not None:  # before hours of simulation, not after
        try:
            options.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FleetBenchError(f"{options.out}: cannot write the report: {exc}") from None
    template = None
    if options.template is not None:
        from tripwire.fleet.trace import read_trace

        template = read_trace(options.template)
    rows: list[dict[str, Any]] = []
    sizes: list[tuple[int, Trace, float]] = []
    if options.trace is not None:
        from tripwire.fleet.trace import read_trace

        trace = read_trace(options.trace)
        sizes.append((len(trace.cameras), trace, trace.duration_s / 3600))
    for cameras in [] if options.trace is not None else options.cameras:
        shape = FleetShape(
            cameras=cameras,
            hours=options.hours,
            site_size=options.site_size,
            events_per_hour=options.events_per_hour,
            seed=options.seed,
        )
        started = time.perf_counter()
        trace = generate_fleet(shape, template)
        print(
            f"{cameras:,} cameras x {options.hours:g} h: {trace.events:,} events generated "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        sizes.append((cameras, trace, options.hours))
    for _cameras, trace, hours in sizes:
        for name in options.policies:
            run = run_policy(trace, name, profile, options.sim, hours)
            row = run.summary()
            rows.append(row)
            print(
                f"  {name:<10} {row['energy_kwh']['total']:10.1f} kWh  cold starts "
                f"{row['cold_starts']:8,}  p95 {row['latency_s']['p95'] or 0:6.2f} s  "
                f"{row['camera_h_per_s']:,.0f} camera-h/s",
                flush=True,
            )
    total_h = sum(r["cameras"] * r["hours"] for r in rows)
    total_s = sum(r["wall_s"] for r in rows)
    summary = {
        "profile": profile.name,
        "sim": options.sim.__dict__,
        "site_size": options.site_size,
        "events_per_hour": options.events_per_hour,
        "seed": options.seed,
        "rows": rows,
        "camera_h_per_s": total_h / total_s if total_s else None,
    }
    if options.out is not None:
        (options.out / "summary.json").write_text(json.dumps(summary, indent=1))
        (options.out / "report.md").write_text(
            f"# Fleet keep-alive bench ({profile.name})\n\n{table(rows)}\n\n{ratios(rows)}\n\n"
            f"Simulator speed: {summary['camera_h_per_s']:,.0f} camera-hours per second.\n"
        )
    return summary
