"""/metrics, /healthz and /readyz for a process that has no web app of its own (the detector,
the wake controller): a Starlette router served by uvicorn on the process's event loop.

/healthz answers while the process serves; /readyz is 200 while ``ready()`` is true, else 503
with ``not_ready`` as the reason; /metrics is the Prometheus text of ``registry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds it owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """Serve the three probes on ``host:port`` (0 = a free port, then read :attr:`port`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        *,
        not_ready: str = "not ready",
        before_scrape: Callable[[], object] | None = None,
    ) -> None:
        self.port = 0
        self._registry = registry
        self._ready = ready
        self._not_ready = not_ready
        self._before_scrape = before_scrape
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        app = Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/readyz", self._readyz),
                Route("/metrics", self._metrics),
            ]
        )
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve([sock]), name="health-server")
        while not self._server.started:
            if self._task.done():  # it failed to start: say why
                await self._task
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 3.0)
        self._server = self._task = None

    async def _healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, _request: Request) -> Response:
        if self._ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": self._not_ready}, status_code=503)

    async def _metrics(self, _request: Request) -> Response:
        if self._before_scrape is not None:
            self._before_scrape()
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)
