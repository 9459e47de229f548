"""Serving the gateway: uvicorn with a header deadline, on one port or two.

uvicorn has no deadline for a request's headers: a client that connects and sends a few
bytes now and then holds a connection (and a file descriptor) for as long as it likes.
``HeaderDeadline`` closes such a connection after ``header_timeout_s``; the body has its
own deadline in the ingest route (``body_timeout_s``).

With ``internal_port`` set, the camera-facing port serves only what a camera needs (the
ingest route and the health probes); /metrics and the API docs are on the internal port,
which a cluster does not expose. One uvicorn server listens on both sockets, so there is
one event loop, one lifespan and one broker connection; with ``tls_certfile`` both ports
speak HTTPS (cameras' frames and tokens never cross the network in clear).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tripwire.errors import ConfigError
from tripwire.settings import GatewaySettings

log = logging.getLogger(__name__)

# The only paths the camera-facing port answers when the internal port is separate.
CAMERA_PATHS = frozenset({"/healthz", "/readyz"})
_FRAMES_PREFIX = "/v1/cameras/"
GRACEFUL_SHUTDOWN_S = 15
_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose headers are late."""

    header_timeout_s = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()


def header_deadline(seconds: float) -> type[HeaderDeadline]:
    """The protocol class for uvicorn's ``http=`` with this header deadline."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": seconds})


class CameraPortOnly:
    """ASGI: on ``camera_port`` only the ingest route and the probes; the rest 404."""

    def __init__(self, app: Any, camera_port: int) -> None:
        self.app = app
        self.camera_port = camera_port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("server", (None, None))[1] == self.camera_port:
            path: str = scope["path"]
            if path not in CAMERA_PATHS and not path.startswith(_FRAMES_PREFIX):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
                return
        await self.app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def server(
    app: Any, settings: GatewaySettings, **options: Any
) -> tuple[uvicorn.Server, list[socket.socket]]:
    """A uvicorn server for ``app`` and the sockets to run it on (camera port first)."""
    sockets = [bind(settings.host, settings.port)]
    if settings.internal_port is not None:
        sockets.append(bind(settings.host, settings.internal_port))
        app = CameraPortOnly(app, sockets[0].getsockname()[1])
    scheme = "https" if settings.tls_certfile else "http"
    where = [f"{scheme}://{settings.host}:{s.getsockname()[1]}" for s in sockets]
    if len(where) == 2:
        log.info("gateway listening on %s (cameras) and %s (metrics, docs)", *where)
    else:
        log.info("gateway listening on %s", where[0])
    config = uvicorn.Config(
        app,
        http=header_deadline(settings.header_timeout_s),
        access_log=False,
        log_config=None,  # the process's logging: one redacted format for every line
        log_level=settings.log_level.lower(),
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        # A request still in flight at SIGTERM (a camera stalled mid-body) must not hold the
        # exit past the pod's grace period (30 s, 5 of them in preStop).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **options,
    )
    return uvicorn.Server(config), sockets
