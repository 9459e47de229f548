"""CPU power ESTIMATED from CPU time, for machines where RAPL cannot be read.

The model (every figure it produces is labelled ``estimated`` and carries it in ``method``)::

    busy_cpus  = sum over processes of  delta(user + system CPU time) / delta(wall time)
    power_w    = busy_cpus * tdp_per_core_w + idle_w
    energy_j  += power_w * delta(wall time)

- ``busy_cpus`` is measured: the kernel's per-process CPU accounting (``/proc/<pid>/stat``
  through psutil) for the pipeline's processes, and ``/proc/stat`` (all CPUs minus idle and
  iowait) for the whole machine. 1.0 means one CPU busy for the whole interval.
- ``tdp_per_core_w`` is configured: the CPU's TDP divided by the CPUs the kernel counts. TDP is
  a thermal design figure, not a measured draw, so the estimate is linear in load by
  assumption: a CPU under full load is taken to draw its TDP, an idle one ``idle_w``.
- ``idle_w`` is configured: the share of the CPU's idle power charged to the pipeline
  whatever it does (0 by default: the pipeline is charged for the CPU time it uses only).

The same approach as CodeCarbon's fallback (TDP x CPU load when RAPL is absent) and
Kepler's model-based mode (power ratio by CPU time). Known biases: SMT siblings count as two
CPUs while drawing less than two cores' power; turbo and frequency scaling are ignored;
a process that exits between two samples loses its CPU time of that last interval; a
process first seen in a sample counts from its start if it started within the interval and
from that sample otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from tripwire.meters.protocol import ProcessLister, ProcessMap, Reading, SourceReport
from tripwire.meters.settings import CpuEstimateSettings

PROC_METHOD = "psutil cpu_times (/proc/<pid>/stat)"
MACHINE_METHOD = "psutil cpu_times (/proc/stat)"


def _busy_seconds(times: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds summed over all CPUs since boot."""
    total = float(sum(times))
    idle = float(times.idle + getattr(times, "iowait", 0.0))
    return total - idle, total


def _since_boot() -> float:
    """Now on the clock process start times use: seconds since boot, in jiffies (10 ms).

    Process start times are jiffies since boot; psutil adds the boot time, which the kernel
    gives in whole seconds, so comparing them with ``time.time()`` would be off by up to 1 s.
    """
    return time.clock_gettime(time.CLOCK_BOOTTIME) - _JIFFY


_JIFFY = 0.01  # a process started in the same jiffy as the sample counts as born after it


@dataclass
class _Tracked:
    process: psutil.Process
    last_cpu_s: float


@dataclass
class CpuEstimate:
    """Estimated CPU power of the pipeline's processes and of the machine, from CPU time."""

    processes: ProcessLister | None = None
    settings: CpuEstimateSettings = field(default_factory=CpuEstimateSettings)
    estimate_power: bool = True  # False where RAPL measures it: CPU shares only
    name: str = "cpu_estimate"
    _tracked: dict[tuple[int, float], _Tracked] = field(default_factory=dict, init=False)
    _last_since_boot: float = field(default=0.0, init=False)
    _boot: float = field(default=0.0, init=False)
    _last_mono_ns: int = field(default=0, init=False)
    _last_machine: tuple[float, float] = field(default=(0.0, 0.0), init=False)
    _energy_j: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._boot = psutil.boot_time()
        self._last_since_boot = _since_boot()
        self._last_mono_ns = time.monotonic_ns()
        self._last_machine = _busy_seconds(psutil.cpu_times())
        if self.processes is not None:
            self._pipeline_cpu_s(self.processes(), prime=True)

    @property
    def method(self) -> str:
        s = self.settings
        return (
            f"estimate: busy_cpus x {s.tdp_per_core_w:g} W/cpu + {s.idle_w:g} W idle "
            "(CPU-time share x configured TDP)"
        )

    def _pipeline_cpu_s(self, processes: ProcessMap, prime: bool) -> dict[str, float]:
        """CPU seconds used by each role since the previous call (all zero when priming)."""
        used: dict[str, float] = {}
        seen: set[tuple[int, float]] = set()
        for role, pids in processes.items():
            used.setdefault(role, 0.0)
            for pid in pids:
                try:
                    proc = psutil.Process(pid)
                    key = (pid, proc.create_time())
                    t = proc.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if key in seen:
                    continue  # listed under two roles (motion inside the gateway): count once
                cpu_s = t.user + t.system
                seen.add(key)
                tracked = self._tracked.get(key)
                if tracked is None:
                    # Born within this interval: all its CPU time belongs here. Older but
                    # first seen now: its past is unknown, count from this sample on.
                    born_here = not prime and key[1] - self._boot >= self._last_since_boot
                    tracked = _Tracked(proc, 0.0 if born_here else cpu_s)
                    self._tracked[key] = tracked
                used[role] += max(0.0, cpu_s - tracked.last_cpu_s)
                tracked.last_cpu_s = cpu_s
        for key in set(self._tracked) - seen:
            del self._tracked[key]
        return used

    def _power(self, device: str, busy_cpus: float, dt: float) -> list[Reading]:
        if not self.estimate_power or dt <= 0:
            return []
        s = self.settings
        watts = busy_cpus * s.tdp_per_core_w + s.idle_w
        self._energy_j[device] = self._energy_j.get(device, 0.0) + watts * dt
        labels = {"device": device}
        return [
            Reading("power_watts", watts, "estimated", self.method, labels),
            Reading(
                "energy_joules_total", self._energy_j[device], "estimated", self.method, labels
            ),
        ]

    def read(self) -> SourceReport:
        now_ns = time.monotonic_ns()
        dt = (now_ns - self._last_mono_ns) / 1e9
        readings: list[Reading] = []

        busy, total = _busy_seconds(psutil.cpu_times())
        d_busy, d_total = busy - self._last_machine[0], total - self._last_machine[1]
        self._last_machine = (busy, total)
        ncpu = psutil.cpu_count() or 1
        util = d_busy / d_total if d_total > 0 else 0.0
        machine = {"scope": "machine"}
        readings.append(Reading("cpu_utilization_ratio", util, "measured", MACHINE_METHOD, machine))
        readings.append(Reading("cpu_busy_cpus", util * ncpu, "measured", MACHINE_METHOD, machine))
        readings += self._power("machine", util * ncpu, dt)

        if self.processes is not None:
            used = self._pipeline_cpu_s(self.processes(), prime=False)
            for role, cpu_s in sorted(used.items()):
                busy_cpus = cpu_s / dt if dt > 0 else 0.0
                labels = {"scope": "pipeline", "role": role}
                readings.append(
                    Reading("cpu_busy_cpus", busy_cpus, "measured", PROC_METHOD, labels)
                )
            if dt > 0:
                pipeline_busy = sum(used.values()) / dt
                readings.append(
                    Reading(
                        "cpu_busy_cpus",
                        pipeline_busy,
                        "measured",
                        PROC_METHOD,
                        {"scope": "pipeline", "role": "all"},
                    )
                )
                readings += self._power("pipeline", pipeline_busy, dt)

        self._last_mono_ns = now_ns
        self._last_since_boot = _since_boot()
        return SourceReport(self.name, True, readings)

    def close(self) -> None:
        pass
