"""Power, memory and pipeline metrics: one source per file behind :class:`Source`.

Sources: :class:`NvmlGpu` (GPU, measured), :class:`RaplCpu` (CPU, measured where readable),
:class:`CpuEstimate` (CPU, estimated; the model is in its module docstring),
:class:`ProcessMemory` (RSS/USS, measured), :class:`Pipeline` (the caller's probes).
:class:`Sampler` reads them on an interval and writes JSONL and Prometheus metrics.
"""

from tripwire.meters.cpu_estimate import CpuEstimate
from tripwire.meters.cpu_rapl import RaplCpu
from tripwire.meters.gpu_nvml import NvmlGpu
from tripwire.meters.memory import ProcessMemory
from tripwire.meters.pipeline import Pipeline
from tripwire.meters.protocol import Kind, ProcessMap, Reading, Source, SourceReport
from tripwire.meters.sampler import Sample, Sampler
from tripwire.meters.settings import CpuEstimateSettings, MetricsSettings

__all__ = [
    "CpuEstimate",
    "CpuEstimateSettings",
    "Kind",
    "MetricsSettings",
    "NvmlGpu",
    "Pipeline",
    "ProcessMap",
    "ProcessMemory",
    "RaplCpu",
    "Reading",
    "Sample",
    "Sampler",
    "Source",
    "SourceReport",
]
