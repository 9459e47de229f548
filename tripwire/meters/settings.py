"""The sampler's settings block (``TRIPWIRE_METRICS__*`` when nested in a process's settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class CpuEstimateSettings(BaseModel):
    """Parameters of the CPU power estimate used when RAPL is not readable."""

    model_config = ConfigDict(extra="forbid")

    tdp_per_core_w: float = Field(
        10.0,
        gt=0,
        le=100,
        description="CPU TDP divided by the CPUs the kernel counts, W (65 W / 12 = 5.4)",
    )
    idle_w: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="idle CPU power charged to the pipeline whatever its load, W",
    )


class MetricsSettings(BaseModel):
    """Which sources the sampler reads, how often, and where samples go."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(1.0, ge=0.05, le=3600, description="time between samples, s")
    jsonl: Path | None = Field(None, description="append one JSON line per sample here")
    nvml: bool = Field(True, description="read NVIDIA GPUs through NVML when present")
    rapl_root: Path = Field(
        Path("/sys/class/powercap"), description="powercap sysfs root holding intel-rapl:* zones"
    )
    uss_every: int = Field(
        1, ge=1, le=3600, description="read USS every Nth sample (about 3 ms per process)"
    )
    cpu: CpuEstimateSettings = Field(default_factory=CpuEstimateSettings)
