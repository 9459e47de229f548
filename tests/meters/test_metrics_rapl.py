"""The RAPL reader on a powercap tree written to tmp_path, and on this machine's real one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tripwire.meters.cpu_rapl import RaplCpu, energy_delta_uj
from tripwire.meters.protocol import Reading

MAX = 262_143_328_850  # a real max_energy_range_uj (Intel client parts)


def _zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = MAX) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    return path


def _set(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


def _by_device(readings: list[Reading], metric: str) -> dict[str, float]:
    return {r.labels["device"]: r.value for r in readings if r.metric == metric}


@pytest.mark.parametrize(
    ("previous", "current", "max_range", "expected"),
    [
        (100, 250, 1000, 150),  # plain increase
        (100, 100, 1000, 0),  # nothing used
        (900, 50, 1000, 150),  # wrapped once: 100 to the top, 50 after zero
        (1000, 0, 1000, 0),  # exactly at the top, then zero
        (MAX - 5, 7, MAX, 12),  # wrap at a real range
    ],
)
def test_energy_delta_handles_wrap(
    previous: int, current: int, max_range: int, expected: int
) -> None:
    assert energy_delta_uj(previous, current, max_range) == expected


def test_reader_measures_power_and_energy_on_a_fake_tree(tmp_path: Path) -> None:
    pkg0 = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 500_000)  # a subzone: part of package-0
    pkg1 = _zone(tmp_path, "intel-rapl:1", "package-1", 5_000_000, max_uj=10_000_000)

    rapl = RaplCpu(tmp_path)
    assert rapl.available, rapl.error
    assert [z.name for z in rapl.zones] == ["package-0", "package-1"]

    time.sleep(0.05)
    _set(pkg0, 3_000_000)  # +2 J
    _set(pkg1, 1_000_000)  # wrapped: +5 J to the top, +1 J after zero = 6 J
    start = time.monotonic()
    first = rapl.read()
    assert first.available
    assert {r.kind for r in first.readings} == {"measured"}
    assert all("rapl" in r.method for r in first.readings)
    assert _by_device(first.readings, "energy_joules_total") == {
        "package-0": pytest.approx(2.0),
        "package-1": pytest.approx(6.0),
    }
    power = _by_device(first.readings, "power_watts")
    # 2 J over at least the 50 ms slept and at most the time since construction.
    assert 2.0 / (time.monotonic() - start + 0.05 + 1.0) < power["package-0"] <= 2.0 / 0.05
    assert power["package-1"] == pytest.approx(3 * power["package-0"])

    _set(pkg0, 3_500_000)
    second = rapl.read()
    assert _by_device(second.readings, "energy_joules_total")["package-0"] == pytest.approx(2.5)
    assert _by_device(second.readings, "energy_joules_total")["package-1"] == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        # no powercap at all (this machine; most VMs and containers)
        (lambda root: None, "no intel-rapl"),
        # a zone without its counter (a kernel that exposes the zone but not the counter)
        (lambda root: (root / "intel-rapl:0").mkdir(), "No such file"),
    ],
)
def test_unreadable_tree_reports_unavailable(
    tmp_path: Path, build: Callable[[Path], object], reason: str
) -> None:
    build(tmp_path)
    rapl = RaplCpu(tmp_path)
    assert not rapl.available
    report = rapl.read()
    assert not report.available and report.readings == []
    assert report.error is not None and reason in report.error


def test_real_powercap_of_this_machine() -> None:
    """Readable RAPL: measured readings; otherwise unavailable with the reason, no crash."""
    rapl = RaplCpu()
    report = rapl.read()
    if rapl.available:
        assert report.available and {r.kind for r in report.readings} == {"measured"}
    else:
        assert not report.available and "RAPL not readable" in (report.error or "")
