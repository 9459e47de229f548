"""NVIDIA GPUs measured through NVML (the ``nvidia-ml-py`` package, module ``pynvml``).

Per device: board power (``nvmlDeviceGetPowerUsage``, mW; on recent GPUs a 1 s average), the
total-energy counter since the driver loaded (``nvmlDeviceGetTotalEnergyConsumption``, mJ;
Volta and newer), memory used, GPU utilization, and the GPU memory of each compute process
(``nvmlDeviceGetComputeRunningProcesses``; ``None`` per process where the driver will not
say, e.g. inside some containers). A reading a device does not support is left out.

Energy is reported as joules since this source started. From the counter it is measured;
where a GPU has no counter it is power x interval summed over samples, labelled
``estimated`` because what happened between two samples is not seen.

No driver, no library or no GPU: the source reports itself unavailable with the reason.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tripwire.meters.protocol import ProcessLister, Reading, SourceReport, role_of

METHOD = "nvml"


@dataclass
class _Device:
    index: int
    handle: Any
    model: str
    energy_start_mj: int | None  # None: no energy counter on this device
    integrated_j: float = 0.0


@dataclass
class NvmlGpu:
    """Measured GPU power, energy, memory and utilization; unavailable without a GPU."""

    processes: ProcessLister | None = None
    name: str = "gpu_nvml"
    error: str | None = field(default=None, init=False)
    devices: list[_Device] = field(default_factory=list, init=False)
    _nvml: Any = field(default=None, init=False)
    _last_ns: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        try:
            import pynvml  # type: ignore[import-untyped]
        except ImportError as exc:
            self.error = f"nvidia-ml-py not installed: {exc}"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.error = f"NVML init failed: {type(exc).__name__}: {exc}"
            return
        self._nvml = pynvml
        try:
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                model = pynvml.nvmlDeviceGetName(handle)
                if isinstance(model, bytes):
                    model = model.decode()
                self.devices.append(_Device(index, handle, str(model), self._energy_mj(handle)))
        except pynvml.NVMLError as exc:
            self.error = f"NVML device enumeration failed: {type(exc).__name__}: {exc}"
        if self.error is None and not self.devices:
            self.error = "NVML found no GPU"
        if self.error is not None:
            self.close()
        self._last_ns = time.monotonic_ns()

    @property
    def available(self) -> bool:
        return self.error is None

    def _energy_mj(self, handle: Any) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except self._nvml.NVMLError:
            return None

    def _optional(self, call: str, handle: Any) -> Any:
        """An NVML query that a device may not support: ``None`` when it does not."""
        try:
            return getattr(self._nvml, call)(handle)
        except self._nvml.NVMLError_NotSupported:
            return None

    def read(self) -> SourceReport:
        if self.error is not None:
            return SourceReport.unavailable(self.name, self.error)
        now = time.monotonic_ns()
        dt = (now - self._last_ns) / 1e9
        self._last_ns = now
        roles = role_of(self.processes()) if self.processes is not None else {}
        readings: list[Reading] = []
        for dev in self.devices:
            labels = {"device": str(dev.index), "model": dev.model}
            power_mw = self._optional("nvmlDeviceGetPowerUsage", dev.handle)
            if power_mw is not None:
                watts = float(power_mw) / 1e3
                readings.append(Reading("power_watts", watts, "measured", METHOD, labels))
                dev.integrated_j += watts * dt
            if dev.energy_start_mj is not None:
                joules = (self._energy_mj(dev.handle) or dev.energy_start_mj) - dev.energy_start_mj
                readings.append(
                    Reading(
                        "energy_joules_total",
                        joules / 1e3,
                        "measured",
                        "nvml total energy counter",
                        labels,
                    )
                )
            elif power_mw is not None:
                readings.append(
                    Reading(
                        "energy_joules_total",
                        dev.integrated_j,
                        "estimated",
                        "nvml power x sample interval (device has no energy counter)",
                        labels,
                    )
                )
            memory = self._optional("nvmlDeviceGetMemoryInfo", dev.handle)
            if memory is not None:
                readings.append(
                    Reading("gpu_memory_used_bytes", float(memory.used), "measured", METHOD, labels)
                )
                readings.append(
                    Reading(
                        "gpu_memory_total_bytes", float(memory.total), "measured", METHOD, labels
                    )
                )
            util = self._optional("nvmlDeviceGetUtilizationRates", dev.handle)
            if util is not None:
                readings.append(
                    Reading(
                        "gpu_utilization_ratio", float(util.gpu) / 100, "measured", METHOD, labels
                    )
                )
            for proc in self._optional("nvmlDeviceGetComputeRunningProcesses", dev.handle) or []:
                if proc.usedGpuMemory is None:
                    continue  # the driver will not say (no permission, some containers)
                pid = int(proc.pid)
                plabels = {
                    "device": str(dev.index),
                    "pid": str(pid),
                    "role": roles.get(pid, "other"),
                }
                readings.append(
                    Reading(
                        "gpu_process_memory_bytes",
                        float(proc.usedGpuMemory),
                        "measured",
                        METHOD,
                        plabels,
                    )
                )
        return SourceReport(self.name, True, readings)

    def close(self) -> None:
        if self.error is None:
            self.error = "closed"
        if self._nvml is not None:
            nvml, self._nvml = self._nvml, None
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
