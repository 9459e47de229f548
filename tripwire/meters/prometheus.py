"""The latest sample as Prometheus metrics, on a registry of the sampler's own.

A custom collector renders :attr:`Sampler.last` at scrape time, so a scrape never reads a
source itself and counters keep the values the sources computed (energy since start, frames
in). Every reading becomes ``tripwire_<metric>{source, kind, <its labels>}``; ``kind`` is
``measured`` or ``estimated``, as in the JSONL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from tripwire.meters.sampler import Sample

PREFIX = "tripwire_"

HELP = {
    "power_watts": "Power draw, W (kind says measured or estimated; JSONL says how)",
    "energy_joules_total": "Energy since the sampler started, J",
    "gpu_memory_used_bytes": "GPU memory in use on the device",
    "gpu_memory_total_bytes": "GPU memory on the device",
    "gpu_utilization_ratio": "Fraction of the last period a GPU kernel was running",
    "gpu_process_memory_bytes": "GPU memory held by one process",
    "cpu_utilization_ratio": "Fraction of all CPUs busy over the last interval",
    "cpu_busy_cpus": "CPUs kept busy over the last interval (1.0 = one CPU all the time)",
    "process_rss_bytes": "Resident memory of a pipeline process, shared pages included",
    "process_uss_bytes": "Memory only this pipeline process holds (freed when it exits)",
    "system_memory_used_bytes": "Memory in use on the machine",
    "system_memory_available_bytes": "Memory available for new processes",
    "system_memory_total_bytes": "Memory of the machine",
    "pipeline_replicas": "Detector replicas",
    "pipeline_queue_depth": "Motion frames waiting in the broker",
    "pipeline_frames_in_total": "Frames received from cameras",
    "pipeline_motion_frames_total": "Frames published as motion",
    "pipeline_detections_total": "Objects detected",
}


class SampleCollector:
    """Renders the sample ``latest()`` returns (nothing before the first one)."""

    def __init__(self, latest: Callable[[], Sample | None]) -> None:
        self._latest = latest

    def describe(self) -> list[Metric]:
        return []  # families depend on what the sources found; do not pre-register names

    def collect(self) -> Iterator[Metric]:
        sample = self._latest()
        if sample is None:
            return
        grouped: dict[str, list[tuple[dict[str, str], float]]] = {}
        for report in sample.sources:
            for r in report.readings:
                labels = {"source": report.source, "kind": r.kind, **r.labels}
                grouped.setdefault(r.metric, []).append((labels, r.value))
        for metric, rows in grouped.items():
            names = sorted({k for labels, _ in rows for k in labels})
            doc = HELP.get(metric, metric.replace("_", " "))
            family: GaugeMetricFamily | CounterMetricFamily
            if metric.endswith("_total"):
                family = CounterMetricFamily(PREFIX + metric, doc, labels=names)
            else:
                family = GaugeMetricFamily(PREFIX + metric, doc, labels=names)
            for labels, value in rows:
                family.add_metric([labels.get(n, "") for n in names], value)
            yield family

        up = GaugeMetricFamily(
            PREFIX + "metrics_source_up", "1 if the source could be read", labels=["source"]
        )
        for report in sample.sources:
            up.add_metric([report.source], 1.0 if report.available else 0.0)
        yield up
        yield GaugeMetricFamily(
            PREFIX + "metrics_sample_seconds",
            "Wall time the sampler took for its last sample",
            value=sample.overhead_wall_s,
        )
        yield GaugeMetricFamily(
            PREFIX + "metrics_sample_cpu_seconds",
            "CPU time the sampler used for its last sample",
            value=sample.overhead_cpu_s,
        )


def registry_for(latest: Callable[[], Sample | None]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SampleCollector(latest))
    return registry


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()
