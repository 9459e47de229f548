"""CPU package energy measured by Intel/AMD RAPL through the powercap sysfs tree.

Each top-level zone ``intel-rapl:N`` (one per CPU package; ``psys`` on some laptops) has a
cumulative ``energy_uj`` counter that wraps to zero after ``max_energy_range_uj``. Power is
the counter delta over the wall time between two reads. Subzones (``intel-rapl:N:M``: core,
uncore, dram) are left out: they are parts of their package, and adding them would count
the same joules twice.

Since Linux 5.10 ``energy_uj`` is readable by root only (the PLATYPUS side channel), so on
most machines a non-root sampler finds the zones but cannot read them; the source then
reports itself unavailable with that reason and the sampler falls back to the estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tripwire.meters.protocol import Reading, SourceReport

METHOD = "rapl powercap energy_uj"


def energy_delta_uj(previous: int, current: int, max_range_uj: int) -> int:
    """Counter increase from ``previous`` to ``current``, across one wrap-around if needed."""
    if current >= previous:
        return current - previous
    # The counter passed max_energy_range_uj and restarted from zero once; two wraps
    # within one interval would need hours at full TDP and cannot be told apart anyway.
    return max_range_uj - previous + current


@dataclass
class RaplZone:
    path: Path
    name: str
    max_range_uj: int
    last_uj: int
    total_uj: int = 0

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text())


def find_zones(root: Path) -> list[RaplZone]:
    """The readable top-level RAPL zones under ``root``; raises ``OSError`` if none is."""
    candidates = sorted(
        p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1 and p.is_dir()
    )
    if not candidates:
        raise FileNotFoundError(f"no intel-rapl:* zone under {root}")
    zones = []
    for path in candidates:
        name = (path / "name").read_text().strip()
        max_range = int((path / "max_energy_range_uj").read_text())
        last = int((path / "energy_uj").read_text())  # PermissionError when not root
        zones.append(RaplZone(path=path, name=name, max_range_uj=max_range, last_uj=last))
    return zones


@dataclass
class RaplCpu:
    """Measured CPU package power and energy from RAPL; unavailable when not readable."""

    root: Path = Path("/sys/class/powercap")
    name: str = "cpu_rapl"
    zones: list[RaplZone] = field(default_factory=list, init=False)
    error: str | None = field(default=None, init=False)
    _last_ns: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        try:
            self.zones = find_zones(self.root)
        except (OSError, ValueError) as exc:
            self.error = f"RAPL not readable: {type(exc).__name__}: {exc}"
        self._last_ns = time.monotonic_ns()

    @property
    def available(self) -> bool:
        return self.error is None

    def read(self) -> SourceReport:
        if self.error is not None:
            return SourceReport.unavailable(self.name, self.error)
        now = time.monotonic_ns()
        dt = (now - self._last_ns) / 1e9
        self._last_ns = now
        readings = []
        for zone in self.zones:
            current = zone.read_uj()
            delta = energy_delta_uj(zone.last_uj, current, zone.max_range_uj)
            zone.last_uj = current
            zone.total_uj += delta
            labels = {"device": zone.name, "zone": zone.path.name}
            if dt > 0:
                readings.append(
                    Reading("power_watts", delta / 1e6 / dt, "measured", METHOD, labels)
                )
            readings.append(
                Reading("energy_joules_total", zone.total_uj / 1e6, "measured", METHOD, labels)
            )
        return SourceReport(self.name, True, readings)

    def close(self) -> None:
        pass
