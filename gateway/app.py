"""The FastAPI application of the edge gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gateway.edge import Edge
from gateway.metrics import GatewayMetrics
from gateway.routers import frames, health
from tripwire import __version__
from tripwire.brokers import Broker
from tripwire.camera_config import CamerasFile
from tripwire.errors import ConfigError
from tripwire.settings import GatewaySettings

# Room for what travels beside a frame: contract headers, message id, dead-letter notes.
HEADER_ROOM = 64 * 1024


def check_frame_limit(settings: GatewaySettings, broker: Broker) -> None:
    """Refuse a frame limit the connected broker can never store: such frames would be
    accepted by the HTTP layer and then fail to publish every time."""
    limit = broker.max_payload
    if limit is not None and settings.max_frame_bytes + HEADER_ROOM > limit:
        raise ConfigError(
            f"max_frame_bytes {settings.max_frame_bytes} (+{HEADER_ROOM} for headers) is over "
            f"the broker's max payload of {limit} bytes: lower TRIPWIRE_MAX_FRAME_BYTES or "
            "raise the broker's limit (nats-server max_payload)"
        )


async def preflight(settings: GatewaySettings, broker: Broker) -> None:
    """Connect ``broker`` once and check the settings against it (before serving)."""
    await broker.connect()
    try:
        check_frame_limit(settings, broker)
    finally:
        await broker.close()


async def _report_status(edge: Edge, interval_s: float) -> None:
    """Every ``interval_s``: each camera's status for the events function (best effort)."""
    while True:
        await asyncio.sleep(interval_s)
        await edge.report_status()  # a failed publish is counted, never raised


def create_app(settings: GatewaySettings, cameras: CamerasFile, broker: Broker) -> FastAPI:
    """Build the app; it connects ``broker`` at start-up if needed and closes it at shutdown."""
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not broker.connected:
            await broker.connect()
        check_frame_limit(settings, broker)
        edge = Edge(cameras, broker, metrics, settings.motion_threads, settings.motion_gate)
        app.state.edge = edge
        status = asyncio.create_task(_report_status(edge, settings.status_interval_s))
        try:
            yield
        finally:
            status.cancel()
            await asyncio.gather(status, return_exceptions=True)
            await edge.report_status()  # the last counts of an open event
            edge.close()
            await broker.close()

    app = FastAPI(
        title="tripwire gateway",
        version=__version__,
        description="Camera ingest with motion gating; motion frames go to the broker.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line ("header x-seq: ...") instead of FastAPI's list, and counted.
        metrics.rejects.labels("invalid_request").inc()
        parts = [f"{' '.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    app.include_router(frames.router)
    app.include_router(health.router)
    return app
