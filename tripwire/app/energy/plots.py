"""The PNGs of ``tripwire bench energy``: one y axis for every mode, units and sources named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tripwire.app.energy.account import PARTS, Accounting
from tripwire.app.energy.model import DutyModel
from tripwire.meters.power_profile import PowerProfile

COLOURS = {
    "idle_floor": "#9e9e9e",
    "resident": "#f2a541",
    "inference": "#2e86ab",
    "cold_start": "#c73e1d",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(
    out: Path,
    profile: PowerProfile,
    groups: dict[str, list[Accounting]],
    summary: dict[str, Any],
    models: dict[str, DutyModel],
) -> None:
    firsts = {mode: runs[0] for mode, runs in groups.items()}
    _power(out / "power.png", profile, firsts)
    _energy(out / "energy.png", summary)
    _memory(out / "memory.png", profile, firsts)
    if summary["sweep"]:
        _sweep(out / "sweep.png", summary, models)


def _steps(
    t_s: list[float], dt: list[float], values: list[float]
) -> tuple[list[float], list[float]]:
    """Sample i covers (t_s[i] - dt[i], t_s[i]]: prepend the start of the first interval, to
    be drawn with ``step="pre"``."""
    if not t_s:
        return [], []
    return [t_s[0] - dt[0], *t_s], [values[0], *values]


def _power(path: Path, profile: PowerProfile, runs: dict[str, Accounting]) -> None:
    plt = _plt()
    n = max(1, len(runs))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n), sharex=True, sharey=True, squeeze=False)
    for ax, (mode, acc) in zip(axes[:, 0], runs.items(), strict=False):
        s = acc.series
        stacks = [_steps(s.t_s, s.dt, s.power[p]) for p in PARTS]
        ax.stackplot(
            stacks[0][0],
            *[ys for _, ys in stacks],
            labels=[p.replace("_", " ") for p in PARTS],
            colors=[COLOURS[p] for p in PARTS],
            step="pre",
        )
        if s.gpu_w is not None:
            xs, ys = _steps(s.t_s, s.dt, s.gpu_w)
            ax.step(xs, ys, where="pre", color="black", lw=1, label="GPU (measured, NVML)")
        off = (acc.run.cameras_off_ns - acc.run.t0_ns) / 1e9
        ax.axvspan(0, off, color="grey", alpha=0.08)
        if acc.run.drained_ns is not None:
            ax.axvline((acc.run.drained_ns - acc.run.t0_ns) / 1e9, color="k", ls=":", lw=1)
        for start, _ in acc.starts:
            ax.axvline(start, color=COLOURS["cold_start"], lw=0.8, alpha=0.6)
        ax.set_ylabel("W")
        ax.set_title(
            f"{mode}: {acc.energy_j['total']:.0f} J ({acc.power_source}), "
            f"{len(acc.starts)} cold start(s)",
            fontsize=9,
        )
    axes[0][0].legend(loc="upper right", fontsize=7, ncol=5)
    axes[-1][0].set_xlabel(
        "seconds from the first frame (shaded: cameras on; dotted: queue drained; "
        "red: worker starts)"
    )
    fig.suptitle(f"Device power by component, profile {profile.name} (first repeat)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _energy(path: Path, summary: dict[str, Any]) -> None:
    plt = _plt()
    modes = summary["modes"]
    names = list(modes)
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(names)
    for part in PARTS:
        values = [modes[m]["energy_j"][part] for m in names]
        ax.bar(names, values, bottom=bottom, color=COLOURS[part], label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    totals = [modes[m]["energy_j"]["total"] for m in names]
    low = [t - modes[m]["energy_j_spread"]["total"][0] for t, m in zip(totals, names, strict=True)]
    high = [modes[m]["energy_j_spread"]["total"][1] - t for t, m in zip(totals, names, strict=True)]
    ax.errorbar(names, totals, yerr=[low, high], fmt="none", ecolor="black", capsize=4)
    src = modes[names[0]]["power_source"] if names else ""
    ax.set_ylabel("J (device)")
    ax.set_title(
        f"Energy by component, median of {summary['repeats']} repeat(s), bars min-max ({src})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _memory(path: Path, profile: PowerProfile, runs: dict[str, Accounting]) -> None:
    plt = _plt()
    n = max(1, len(runs))
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.4 * n), sharex=True, sharey="col", squeeze=False)
    for k, (mode, acc) in enumerate(runs.items()):
        s = acc.series
        dev, host = axes[k][0], axes[k][1]
        measured = s.gpu_mib is not None
        xs, ys = _steps(s.t_s, s.dt, s.device_mib)
        dev.step(xs, ys, where="pre", color="tab:purple")
        dev.fill_between(xs, ys, step="pre", color="tab:purple", alpha=0.2)
        dev.set_ylabel("MiB")
        how = "measured, NVML" if measured else f"modelled: {profile.name}"
        dev.set_title(
            f"{mode}: device memory ({how}), {acc.device_mib_s:,.0f} MiB-s",
            fontsize=9,
        )
        host.step(*_steps(s.t_s, s.dt, s.rss_mib), where="pre", color="tab:green")
        host.set_title(f"{mode}: host RSS of the pipeline (measured)", fontsize=9)
        host.set_ylabel("MiB")
    axes[-1][0].set_xlabel("seconds from the first frame")
    axes[-1][1].set_xlabel("seconds from the first frame")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sweep(path: Path, summary: dict[str, Any], models: dict[str, DutyModel]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    grid = [10 ** (-3 + 3 * i / 200) for i in range(201)]
    for name, model in models.items():
        ax.plot(
            grid,
            [100 * model.saved_fraction(d) for d in grid],
            ls="-" if name == "bench" else "--",
            label=f"model, keep-alive {model.keep_alive_s:g} s ({name})",
        )
        cross = model.crossover_duty()
        if cross is not None:
            ax.axvline(cross, color="grey", ls=":", lw=1)
    for mode in ("scale-to-zero", "scale-to-zero-standby"):
        xs, ys, lo, hi = [], [], [], []
        for row in summary["sweep"]:
            ratio = row["modes"].get(mode, {}).get("ratio_to_always_on")
            if ratio:
                xs.append(row["realised_duty"] or row["duty_cycle"])
                ys.append(100 * (1 - ratio["median"]))
                lo.append(100 * (ratio["max"] - ratio["median"]))
                hi.append(100 * (ratio["median"] - ratio["min"]))
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=f"measured: {mode}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("motion duty cycle (measured points: share of frames with motion)")
    ax.set_ylabel("device energy saved vs always-on, %")
    ax.set_title(
        f"Scale-to-zero vs always-on, profile {summary['profile']} (dotted: crossover)", fontsize=9
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
