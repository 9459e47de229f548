"""The detector's Prometheus metrics and its small HTTP endpoint (/metrics, /healthz, /readyz).

A few lines of asyncio HTTP instead of a web framework: the detector process serves three
read-only paths and should not pay a framework's import time on every cold start.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

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


class HealthServer:
    """Serves /metrics, /healthz and /readyz (200 once ``ready`` is set)."""

    def __init__(self, metrics: DetectorMetrics) -> None:
        self.metrics = metrics
        self.ready = False
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            status, ctype, body = self._route(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        path = path.split("?")[0]
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            if self.ready:
                return "200 OK", "application/json", b'{"status":"ready"}'
            return "503 Service Unavailable", "application/json", b'{"status":"warming up"}'
        return "404 Not Found", "text/plain", b"not found"
