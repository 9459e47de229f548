"""The events function's Prometheus metrics (served by prometheus_client's own server)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class EventsMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "tripwire_events_messages_total", "Messages written and acked", registry=r
        )
        self.results = Counter("tripwire_events_results_total", "Frame results stored", registry=r)
        self.duplicates = Counter(
            "tripwire_events_duplicates_total", "Redelivered results that changed nothing",
            registry=r,
        )  # fmt: skip
        self.alerts = Counter(
            "tripwire_events_alerts_total", "Alerts raised and published", ["kind"], registry=r
        )
        self.dead_letters = Counter(
            "tripwire_events_dead_letters_total", "Messages dead-lettered", registry=r
        )
        self.db_retries = Counter(
            "tripwire_events_db_retries_total", "Batches retried while the db was down",
            registry=r,
        )  # fmt: skip
        self.write_seconds = Histogram(
            "tripwire_events_write_seconds",
            "Wall time to write one batch (retries included)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=r,
        )
