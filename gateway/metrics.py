"""Prometheus metrics of the gateway, on a registry of its own (one per app instance)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.frames = Counter(
            "tripwire_frames_received_total",
            "Frames accepted for motion analysis",
            ["camera"],
            registry=r,
        )
        self.motion_frames = Counter(
            "tripwire_motion_frames_total", "Frames published as motion", ["camera"], registry=r
        )
        self.events = Counter(
            "tripwire_motion_events_total", "Motion events opened", ["camera"], registry=r
        )
        self.relearns = Counter(
            "tripwire_motion_relearns_total",
            "Lighting changes seen by the motion gate (background re-learnt), by reason",
            ["camera", "reason"],
            registry=r,
        )
        self.rejects = Counter(
            "tripwire_frames_rejected_total", "Requests refused, by reason", ["reason"], registry=r
        )
        self.publish_seconds = Histogram(
            "tripwire_publish_seconds",
            "Broker publish latency, confirm included",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.motion_seconds = Histogram(
            "tripwire_motion_seconds",
            "Motion function time per frame",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.broker_connected = Gauge(
            "tripwire_broker_connected", "1 while the broker connection is up", registry=r
        )
