"""Memory and CPU-time figures of real child processes, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tripwire.meters.cpu_estimate import CpuEstimate
from tripwire.meters.memory import ProcessMemory
from tripwire.meters.protocol import Reading
from tripwire.meters.settings import CpuEstimateSettings

MiB = 1024 * 1024
# Holds 64 MiB of its own (touched, so resident and unshared), then waits for stdin to close.
HOLDER = "import sys; b = bytearray(64 * 1024 * 1024); print('ready', flush=True); sys.stdin.read()"
# Burns about 0.3 s of CPU, then waits.
BURNER = (
    "import sys, time\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.3: pass\n"
    "print('ready', flush=True); sys.stdin.read()"
)


def _child(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _values(readings: list[Reading], metric: str) -> dict[str, float]:
    return {r.labels["pid"]: r.value for r in readings if r.metric == metric}


def test_rss_and_uss_of_children_and_a_child_that_exits(
    children: list[subprocess.Popen[str]],
) -> None:
    holder, other = _child(HOLDER), _child(HOLDER)
    children += [holder, other]
    roles = {"detector": [holder.pid, other.pid], "gateway": [999_999_999]}  # no such pid
    memory = ProcessMemory(lambda: roles)

    report = memory.read()
    assert report.available and report.error is None
    rss, uss = (
        _values(report.readings, "process_rss_bytes"),
        _values(report.readings, "process_uss_bytes"),
    )
    assert set(rss) == set(uss) == {str(holder.pid), str(other.pid)}
    for pid in rss:
        assert uss[pid] >= 64 * MiB  # the bytearray is its own memory
        assert rss[pid] >= uss[pid]
    assert {r.kind for r in report.readings} == {"measured"}
    assert all(
        r.labels["role"] == "detector" for r in report.readings if r.metric.startswith("process")
    )
    system = {r.metric: r.value for r in report.readings if r.metric.startswith("system")}
    assert 0 < system["system_memory_used_bytes"] < system["system_memory_total_bytes"]
    assert system["system_memory_available_bytes"] > 0

    # Exited but not reaped yet (a zombie): it holds no memory and is left out.
    other.kill()
    deadline = time.monotonic() + 5
    while str(other.pid) in _values(memory.read().readings, "process_rss_bytes"):
        assert time.monotonic() < deadline, "a killed child still reported"
        time.sleep(0.02)
    other.wait()  # reaped: gone from /proc
    after = memory.read()
    assert after.available
    assert set(_values(after.readings, "process_rss_bytes")) == {str(holder.pid)}


def test_cpu_estimate_follows_the_model_for_a_busy_child(
    children: list[subprocess.Popen[str]],
) -> None:
    settings = CpuEstimateSettings(tdp_per_core_w=5.0, idle_w=2.0)
    roles: dict[str, list[int]] = {"detector": []}
    estimate = CpuEstimate(lambda: roles, settings)
    # Started after the estimate: born within the interval, so all its CPU time counts.
    burner = _child(BURNER)
    children.append(burner)
    roles["detector"].append(burner.pid)
    report = estimate.read()
    assert report.available

    by = {(r.metric, r.labels.get("device") or r.labels.get("role")): r for r in report.readings}
    busy = by[("cpu_busy_cpus", "detector")]
    assert busy.kind == "measured" and busy.value > 0
    power = by[("power_watts", "pipeline")]
    assert power.kind == "estimated"
    assert "5 W/cpu" in power.method and "2 W idle" in power.method
    # the documented model: busy CPUs x TDP per CPU + idle
    assert power.value == pytest.approx(by[("cpu_busy_cpus", "all")].value * 5.0 + 2.0)
    assert by[("energy_joules_total", "pipeline")].value > 0
    machine = by[("cpu_utilization_ratio", None)]
    assert machine.kind == "measured" and 0 <= machine.value <= 1
    assert by[("power_watts", "machine")].kind == "estimated"

    # Idle now: only the configured idle power is charged; the CPU time it burnt is not again.
    burner.kill()
    burner.wait()
    idle = estimate.read()
    idle_power = next(
        r for r in idle.readings if r.metric == "power_watts" and r.labels["device"] == "pipeline"
    )
    assert idle_power.value == pytest.approx(2.0)


def test_cpu_estimate_without_power_when_rapl_measures_it() -> None:
    estimate = CpuEstimate(lambda: {"sampler": [1]}, estimate_power=False)
    report = estimate.read()
    assert report.available
    assert not [r for r in report.readings if r.metric in ("power_watts", "energy_joules_total")]
    assert any(r.metric == "cpu_utilization_ratio" for r in report.readings)


def test_uss_every_nth_sample_rss_every_sample() -> None:
    memory = ProcessMemory(lambda: {"sampler": [os.getpid()]}, uss_every=2)
    metrics = [{r.metric for r in memory.read().readings} for _ in range(3)]
    assert ["process_uss_bytes" in m for m in metrics] == [True, False, True]
    assert all("process_rss_bytes" in m for m in metrics)
