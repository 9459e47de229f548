"""The detector's Prometheus metrics (served by :class:`tripwire.health_server.HealthServer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_MS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class DetectorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.batches = Counter("tripwire_detector_batches_total", "Inference calls", registry=r)
        self.batch_size = Histogram(
            "tripwire_detector_batch_size",
            "Frames per inference call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "tripwire_detector_inference_seconds",
            "Wall time of one batched inference call",
            buckets=_MS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "tripwire_detector_end_to_end_seconds",
            "Capture time to result published",
            buckets=_MS,
            registry=r,
        )
        self.acks = Counter("tripwire_detector_acks_total", "Messages acknowledged", registry=r)
        self.naks = Counter(
            "tripwire_detector_naks_total",
            "Messages returned for redelivery",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tripwire_detector_dead_letters_total",
            "Messages dead-lettered",
            ["reason"],
            registry=r,
        )
        self.archive_errors = Counter(
            "tripwire_detector_archive_errors_total", "Archive writes that failed", registry=r
        )
        self.detections = Counter(
            "tripwire_detector_detections_total", "Boxes or labels found", ["label"], registry=r
        )
        self.model_load_seconds = Gauge(
            "tripwire_detector_model_load_seconds", "Model load time", registry=r
        )
        self.first_inference_seconds = Gauge(
            "tripwire_detector_first_inference_seconds", "Warm-up inference time", registry=r
        )
        self.ready = Gauge("tripwire_detector_ready", "1 once the model is warm", registry=r)
