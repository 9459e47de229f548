"""``tripwire bench energy``: a short real run (local stack, real detector) does equal work in
every mode and writes the summary contract, the report and the plots; plus the power profiles
and the duty-cycle model on their own.

Nothing here depends on the machine being idle: the run ends when the queue has drained
(generous timeouts), and every assertion is about counts and the accounting, not timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tripwire.app.energy.bench import EnergyOptions, run_bench
from tripwire.app.energy.model import DutyModel
from tripwire.meters.power_profile import (
    FIELDS,
    ProfileError,
    load_profile,
    profile_names,
)

MODES = ("always-on", "scale-to-zero", "scale-to-zero-standby")
PARTS = ("idle_floor", "resident", "inference", "cold_start")


@pytest.mark.timeout(900)
async def test_short_run_does_equal_work_and_writes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    options = EnergyOptions(
        cameras=1,
        fps=10.0,
        duration_s=8.0,
        duty_cycles=(0.5,),
        out=out,
        modes=MODES,
        idle_s=2.0,
        weights="yolo11n.yaml",  # untrained architecture: no download
        drain_timeout_s=400.0,  # a busy machine drains late, never differently
        ready_timeout_s=400.0,
        profile="v100",
    )
    await run_bench(options)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "v100" and summary["repeats"] == 1
    modes = summary["modes"]
    assert set(modes) == set(MODES)
    profile = load_profile("v100")
    assert profile.inference_s_per_frame is not None and profile.cold_start_j is not None
    processed = set()
    for name, m in modes.items():
        run = m["runs"][0]
        # Equal work: every published frame detected, once per (camera, seq), nothing left.
        assert m["backlog"] == 0 and m["kept_up"], name
        assert m["frames_processed"] == run["frames_published"] > 0, name
        assert run["frames_sent"] == 80 and run["http_errors"] == 0, name
        processed.add(m["frames_processed"])
        energy = m["energy_j"]
        assert set(energy) == {*PARTS, "total"}
        assert energy["total"] == pytest.approx(sum(energy[p] for p in PARTS), abs=0.05)
        assert m["power_source"] in ("modelled: v100", "measured: nvml"), name
        if m["power_source"] == "modelled: v100":
            # The bare floor is drawn over the whole window whatever the mode does.
            assert energy["idle_floor"] == pytest.approx(
                profile.idle_floor_w * run["window_s"], rel=0.02
            )
            assert energy["inference"] == pytest.approx(
                profile.active_w * profile.inference_s_per_frame * m["frames_processed"],
                rel=0.01,
            )
            assert energy["cold_start"] == pytest.approx(
                profile.cold_start_j * m["cold_starts"], rel=0.01
            )
    assert len(processed) == 1 and summary["equal_work"] is True
    # Always-on is started and loaded before the window and pinned: no start inside it.
    assert modes["always-on"]["cold_starts"] == 0
    assert modes["always-on"]["energy_j"]["resident"] > 0
    # From zero, the first motion frame must start a worker.
    for name in ("scale-to-zero", "scale-to-zero-standby"):
        assert modes[name]["cold_starts"] >= 1, name
        assert modes[name]["energy_j"]["cold_start"] > 0, name
        assert "ratio_to_always_on" in modes[name]
    # Always-on holds the model for the whole window; scale-to-zero did not hold it before
    # the first motion frame (5 s into the scene).
    ao, s2z = modes["always-on"], modes["scale-to-zero-standby"]
    assert ao["held_s"] == pytest.approx(ao["window_s"], rel=0.05)
    assert s2z["held_s"] < s2z["window_s"] - 3

    paper = summary["paper_comparison"]
    assert paper["paper"]["power_saved_w"] == 65 and paper["paper"]["memory_saved_mib"] == 858
    assert paper["idle_power_saved_w"] == profile.resident_w

    for png in ("power.png", "energy.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    report = (out / "report.md").read_text()
    for heading in (
        "## Equal work",
        "## Device energy by component",
        "## Per unit of work",
        "## Memory",
        "beside the paper",
        "## Duty cycle and the crossover",
        "every number and its source",
    ):
        assert heading in report, heading
    for name in MODES:
        lines = (out / "duty-0.5" / name / "r1" / "samples.jsonl").read_text().splitlines()
        assert len(lines) >= 8, name


@pytest.mark.timeout(600)
async def test_a_mode_that_cannot_keep_up_is_reported_and_not_compared(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    options = EnergyOptions(
        cameras=1,
        duration_s=7.0,
        duty_cycles=(0.5,),  # someone enters at 5 s: the wake comes 2 s before the cameras stop
        out=out,
        modes=("scale-to-zero",),  # a worker started from scratch: imports, then the model
        idle_s=0.0,
        weights="yolo11n.yaml",
        drain_timeout_s=0.0,  # no time at all to drain: the last motion frames are still queued
        ready_timeout_s=400.0,
    )
    summary = await run_bench(options)

    mode = summary["modes"]["scale-to-zero"]
    assert mode["backlog"] > 0 and mode["kept_up"] is False
    assert mode["frames_processed"] + mode["backlog"] == mode["runs"][0]["frames_published"]
    assert summary["equal_work"] is False
    assert "**no: not compared**" in (out / "report.md").read_text()


def test_every_shipped_profile_loads_with_a_source_for_each_number() -> None:
    names = profile_names()
    for wanted in ("v100", "t4", "a10", "a40", "a100", "h100", "h200", "cpu"):
        assert wanted in names
    for name in names:
        profile = load_profile(name)
        assert all(profile.sources[f].strip() for f in FIELDS), name
        if profile.kind == "gpu":
            assert profile.resident_w > 0 and profile.resident_mib > 0, name
    assert load_profile("cpu").idle_floor_w > 0  # a real floor, not zero


def test_a_profile_without_a_source_or_an_unknown_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no power profile 'v99'"):
        load_profile("v99")
    text = Path(str(load_profile.__globals__["_folder"]() / "t4.yaml")).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  cold_start_j:", "  cold_start_x:"))
    with pytest.raises(ProfileError, match="no source for cold_start_j"):
        load_profile(str(bad))


def test_duty_model_crossover_is_where_the_saving_changes_sign() -> None:
    model = DutyModel(
        idle_floor_w=25,
        resident_w=35,
        cold_start_j=400,
        inference_w=5,
        event_s=10,
        keep_alive_s=15,
    )
    cross = model.crossover_duty()
    assert cross is not None
    # gap* = 15 + 400 / 35 s; duty* = 10 / (10 + gap*)
    assert cross == pytest.approx(10 / (10 + 15 + 400 / 35))
    assert model.saved_j(cross * 0.9) > 0 > model.saved_j(cross * 1.1)
    assert model.saved_j(0.5) == 0  # gap (10 s) under the keep-alive: never reaches zero
    cpu = DutyModel(20, 0, 50, 5, 10, 15)
    assert cpu.crossover_duty() is None and cpu.saved_j(0.01) < 0


def _sample(t_ns: int, gpu_w: float | None, workers: int, processed: int) -> dict[str, object]:
    def reading(metric: str, value: float, **labels: str) -> dict[str, object]:
        return {
            "metric": metric,
            "value": value,
            "kind": "measured",
            "method": "x",
            "labels": labels,
        }

    sources: dict[str, object] = {
        "pipeline": {
            "available": True,
            "readings": [
                reading("pipeline_workers", workers),
                reading("pipeline_processed", processed),
            ],
        },
        "cpu_estimate": {"available": True, "readings": []},
    }
    if gpu_w is not None:
        sources["gpu_nvml"] = {
            "available": True,
            "readings": [
                reading("power_watts", gpu_w, gpu="0"),
                reading("gpu_process_memory_bytes", 300 * 2**20, pid="1"),
            ],
        }
    return {"t_ns": t_ns, "seq": 1, "interval_s": 1.0, "sources": sources}


def test_a_gpu_counter_replaces_the_model_and_the_parts_still_add_up(tmp_path: Path) -> None:
    """Samples as the sampler writes them on a GPU machine (NVML available): the total is the
    measured one, labelled so, and the modelled parts are taken out of it, not added to it."""
    from tripwire.app.energy.account import account
    from tripwire.app.energy.workload import ModeRun, Tally

    t0 = 1_000_000_000_000
    for name, gpu_w, source in (("nvml", 100.0, "measured: nvml"), ("model", None, None)):
        samples = tmp_path / f"{name}.jsonl"
        samples.write_text(
            "\n".join(
                json.dumps(_sample(t0 + (k + 1) * 10**9, gpu_w, 1, 10 * (k + 1))) for k in range(5)
            )
        )
        run = ModeRun(
            mode="always-on",
            repeat=0,
            duty_cycle=0.2,
            folder=tmp_path,
            samples=samples,
            timeline=tmp_path / "none.jsonl",
            t0_ns=t0,
            cameras_off_ns=t0 + 4 * 10**9,
            drained_ns=t0 + 5 * 10**9,
            end_ns=t0 + 5 * 10**9,
            camera_s=5.0,
            frames_sent=50,
            frames_published=50,
            frames_motion=50,
            http_errors=0,
            tally=Tally(processed={("cam-1", k): 0 for k in range(50)}),
        )
        acc = account(run, load_profile("v100"), window_s=7.0)  # padded by 2 s
        profile = load_profile("v100")
        assert profile.inference_s_per_frame is not None
        energy = acc.energy_j
        assert acc.window_s == pytest.approx(7.0)
        assert energy["total"] == pytest.approx(sum(energy[p] for p in PARTS))
        assert energy["idle_floor"] == pytest.approx(profile.idle_floor_w * 7.0)
        assert energy["inference"] == pytest.approx(
            profile.active_w * profile.inference_s_per_frame * 50
        )
        if source is not None:
            assert acc.power_source == source
            assert energy["total"] == pytest.approx(100.0 * 7.0)  # the counter's, padded at 100 W
            assert acc.device_mib_s == pytest.approx(300 * 7.0)  # NVML's per-process memory
        else:
            assert acc.power_source == "modelled: v100"
            assert energy["resident"] == pytest.approx(profile.resident_w * 7.0)
            assert acc.device_mib_s == pytest.approx(profile.resident_mib * 7.0)
