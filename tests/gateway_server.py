"""Run the real gateway (uvicorn) in a background thread for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.app import create_app
from gateway.fastpath import IngestFastPath
from gateway.server import server as gateway_server
from tripwire.brokers import open_broker
from tripwire.camera_config import CamerasFile
from tripwire.contract import Header
from tripwire.embedded_nats import free_port
from tripwire.settings import BrokerSettings, GatewaySettings


@contextmanager
def running_gateway(
    settings: GatewaySettings, cameras: CamerasFile, broker_url: str, *, fast_path: bool = True
) -> Iterator[str]:
    """Yield the base URL of a gateway serving on a free port; stop it on exit.

    ``fast_path`` serves it as ``tripwire gateway`` does (the ingest route in front of
    FastAPI); False serves the plain FastAPI app, whose route must answer the same.
    A ``settings.internal_port`` is served as given (pick it with ``free_port``).
    """
    port = free_port()
    settings = settings.model_copy(
        update={"host": "127.0.0.1", "port": port, "log_level": "WARNING"}
    )
    app = create_app(settings, cameras, open_broker(settings.broker, broker_url))
    asgi = IngestFastPath(app) if fast_path else app
    server, sockets = gateway_server(asgi, settings)
    thread = threading.Thread(target=server.run, args=(sockets,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


async def drain_motion(
    url: str, camera: str, wait: float = 1.0
) -> list[tuple[bytes, dict[str, str]]]:
    """Fetch and ack every motion message on the stream; return those of ``camera``."""
    broker = open_broker(BrokerSettings(), url)
    await broker.connect()
    got = []
    try:
        while batch := await broker.fetch(64, wait):
            for m in batch:
                if m.headers.get(Header.CAMERA) == camera:
                    got.append((m.body, dict(m.headers)))
                await m.ack()
    finally:
        await broker.close()
    return got
