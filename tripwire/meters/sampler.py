"""The sampler: reads every source each interval, writes JSONL, serves Prometheus metrics.

One sample is one JSON line::

    {"t_ns": ..., "seq": 3, "interval_s": 1.0003,
     "overhead": {"wall_s": 0.0041, "cpu_s": 0.0038},
     "sources": {"cpu_estimate": {"available": true, "read_s": ..., "readings": [
         {"metric": "power_watts", "value": 7.2, "kind": "estimated",
          "method": "estimate: busy_cpus x 10 W/cpu + ...", "labels": {"device": "pipeline"}},
         ...]},
       "gpu_nvml": {"available": false, "error": "NVML init failed: ...", "readings": []}}}

``overhead`` is the sampler's own cost for that sample: wall time and the CPU time of the
thread that read the sources (``time.thread_time``), JSONL write excluded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tripwire import timeline
from tripwire.meters.cpu_estimate import CpuEstimate
from tripwire.meters.cpu_rapl import RaplCpu
from tripwire.meters.gpu_nvml import NvmlGpu
from tripwire.meters.memory import ProcessMemory
from tripwire.meters.pipeline import Pipeline, Probe
from tripwire.meters.prometheus import exposition, registry_for
from tripwire.meters.protocol import ProcessLister, Reading, Source, SourceReport
from tripwire.meters.settings import MetricsSettings


@dataclass
class Sample:
    t_ns: int
    seq: int
    interval_s: float  # wall time since the previous sample (since start for the first)
    sources: list[SourceReport]
    overhead_wall_s: float
    overhead_cpu_s: float

    def readings(self) -> Iterator[tuple[str, Reading]]:
        for report in self.sources:
            for reading in report.readings:
                yield report.source, reading

    def to_json(self) -> dict[str, Any]:
        return {
            "t_ns": self.t_ns,
            "seq": self.seq,
            "interval_s": round(self.interval_s, 6),
            "overhead": {
                "wall_s": round(self.overhead_wall_s, 6),
                "cpu_s": round(self.overhead_cpu_s, 6),
            },
            "sources": {r.source: r.to_json() for r in self.sources},
        }


@dataclass
class Sampler:
    """Reads ``sources`` every ``interval_s``; a source that fails is reported, never raised."""

    sources: Sequence[Source]
    interval_s: float = 1.0
    jsonl: Path | None = None
    last: Sample | None = field(default=None, init=False)
    registry: CollectorRegistry = field(init=False)
    _seq: int = field(default=0, init=False)
    _last_mono_ns: int = field(default_factory=time.monotonic_ns, init=False)

    def __post_init__(self) -> None:
        self.registry = registry_for(lambda: self.last)

    @classmethod
    def from_settings(
        cls,
        settings: MetricsSettings,
        processes: ProcessLister | None = None,
        probes: Mapping[str, Probe] | None = None,
    ) -> Sampler:
        """The standard sources: NVML, RAPL (or the CPU estimate), memory, pipeline probes."""
        rapl = RaplCpu(settings.rapl_root)
        sources: list[Source] = [
            rapl,
            # Without RAPL the estimate is the CPU power figure; with it, only CPU shares.
            CpuEstimate(processes, settings.cpu, estimate_power=not rapl.available),
            ProcessMemory(processes, settings.uss_every),
        ]
        if settings.nvml:
            sources.insert(0, NvmlGpu(processes))
        if probes:
            sources.append(Pipeline(probes))
        return cls(sources, settings.interval_s, settings.jsonl)

    def sample_once(self) -> Sample:
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        t_ns = time.time_ns()
        mono = time.monotonic_ns()
        reports = [_read(source) for source in self.sources]
        self._seq += 1
        sample = Sample(
            t_ns=t_ns,
            seq=self._seq,
            interval_s=(mono - self._last_mono_ns) / 1e9,
            sources=reports,
            overhead_wall_s=time.perf_counter() - wall0,
            overhead_cpu_s=time.thread_time() - cpu0,
        )
        self._last_mono_ns = mono
        self.last = sample
        if self.jsonl is not None:
            timeline.append(self.jsonl, sample.to_json())
        return sample

    async def run(
        self, stop: asyncio.Event, on_sample: Callable[[Sample], None] | None = None
    ) -> None:
        """Sample every ``interval_s`` until ``stop`` is set, on a fixed schedule (no drift).

        Sources start their intervals when constructed; build the sampler just before.

        Reading /proc and NVML blocks, so each sample runs in a worker thread and the event
        loop it shares (the stack's supervisor) keeps serving.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # Wait first: every sample, the first included, covers one whole interval.
            next_at += self.interval_s
            now = loop.time()
            if next_at < now:  # a slow sample: skip the missed ticks instead of bursting
                next_at = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=next_at - now)
            if stop.is_set():
                return
            sample = await asyncio.to_thread(self.sample_once)
            if on_sample is not None:
                on_sample(sample)

    def prometheus_text(self) -> str:
        return exposition(self.registry)

    def close(self) -> None:
        for source in self.sources:
            # One source failing to close must not keep the others open.
            with contextlib.suppress(Exception):
                source.close()


def _read(source: Source) -> SourceReport:
    start = time.perf_counter()
    try:
        report = source.read()
    except Exception as exc:  # any failure of one source: say so, keep sampling the rest
        report = SourceReport.unavailable(source.name, f"{type(exc).__name__}: {exc}")
    report.read_s = time.perf_counter() - start
    return report
