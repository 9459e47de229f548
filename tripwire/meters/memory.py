"""Memory of every pipeline process (RSS and USS) and of the machine, from the kernel.

RSS counts every resident page a process maps, shared ones included (libraries, pages a
prefork standby shares copy-on-write with its workers), so RSS summed over processes counts
shared pages several times. USS counts the pages only that process holds: what stopping it
would free. USS comes from ``/proc/<pid>/smaps`` (psutil ``memory_full_info``), which the
kernel walks page table by page table: a few ms for a process that maps a large model.
Where it is not readable (another user's process) USS is left out and RSS stays; with
``uss_every`` N > 1, USS is read every Nth sample only, RSS every sample.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import psutil

from tripwire.meters.protocol import ProcessLister, Reading, SourceReport

METHOD = "psutil memory_full_info (/proc/<pid>/smaps)"
SYSTEM_METHOD = "psutil virtual_memory (/proc/meminfo)"


@dataclass
class ProcessMemory:
    """RSS and USS per pipeline process (a process that is gone is left out), system memory."""

    processes: ProcessLister | None = None
    uss_every: int = 1  # USS costs a page-table walk (~3 ms a process); RSS ~0.05 ms
    name: str = "memory"
    _reads: int = field(default=0, init=False)

    def read(self) -> SourceReport:
        readings: list[Reading] = []
        with_uss = self._reads % self.uss_every == 0
        self._reads += 1
        if self.processes is not None:
            for role, pids in sorted(self.processes().items()):
                for pid in pids:
                    readings += _process(role, pid, with_uss)
        vm = psutil.virtual_memory()
        for metric, value in (
            ("system_memory_used_bytes", vm.used),
            ("system_memory_available_bytes", vm.available),
            ("system_memory_total_bytes", vm.total),
        ):
            readings.append(Reading(metric, float(value), "measured", SYSTEM_METHOD))
        return SourceReport(self.name, True, readings)

    def close(self) -> None:
        pass


def _process(role: str, pid: int, with_uss: bool) -> list[Reading]:
    labels = {"role": role, "pid": str(pid)}
    uss: float | None = None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return []  # exited, not yet reaped: it holds no memory
        rss = float(proc.memory_info().rss)
        if with_uss:
            with contextlib.suppress(psutil.AccessDenied):  # another user's process: RSS only
                full = proc.memory_full_info()
                rss, uss = float(full.rss), float(full.uss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []  # gone between listing and reading (ZombieProcess included): nothing to say
    readings = [Reading("process_rss_bytes", rss, "measured", METHOD, labels)]
    if uss is not None:
        readings.append(Reading("process_uss_bytes", uss, "measured", METHOD, labels))
    return readings
