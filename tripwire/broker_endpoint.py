"""Resolve the broker a process should use: the configured URL, or the embedded NATS server.

Several local processes (gateway, pull-mode motion, detectors) share one embedded server:
the first one starts it and records its URL in ``<home>/nats/server.json``; the others find
a live one there and attach. Only the process that started it stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tripwire.brokers import Broker, open_broker, routes_of
from tripwire.camera_config import load_config
from tripwire.embedded_nats import EmbeddedNats
from tripwire.settings import CommonSettings
from tripwire.urls import redact

log = logging.getLogger(__name__)


@dataclass
class BrokerEndpoint:
    url: str
    embedded: EmbeddedNats | None  # set when this process owns the server

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def _alive(pid: int, port: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        socket.create_connection(("127.0.0.1", port), 1.0).close()
    except OSError:
        return False
    return True


def embedded_nats(home: Path) -> BrokerEndpoint:
    """Attach to the embedded server under ``home`` if one is running, else start one."""
    state = home / "nats"
    record = state / "server.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        info = json.loads(record.read_text())
        if _alive(int(info["pid"]), int(info["port"])):
            return BrokerEndpoint(str(info["url"]), None)
    server = EmbeddedNats.start(state)
    record.write_text(
        json.dumps(
            {
                "url": server.url,
                "pid": server.process.pid,
                "port": server.port,
                "monitor_url": server.monitor_url,
            }
        )
    )
    return BrokerEndpoint(server.url, server)


def resolve_broker(settings: CommonSettings) -> BrokerEndpoint:
    if settings.broker.url:
        return BrokerEndpoint(settings.broker.url, None)
    return embedded_nats(settings.home)


@contextlib.asynccontextmanager
async def connected_broker(
    settings: CommonSettings, model: str | None = None
) -> AsyncIterator[Broker]:
    """A connected broker for the process's lifetime (embedded NATS when no URL is set),
    declaring the motion route of every model of the config; ``fetch`` reads ``model``'s."""
    endpoint = resolve_broker(settings)
    routes = routes_of(load_config(settings.config_path()))
    broker = open_broker(settings.broker, endpoint.url, routes=routes, model=model)
    try:
        await broker.connect()
        log.info("broker %s connected (%s)", broker.name, redact(endpoint.url))
        yield broker
    finally:
        await broker.close()
        endpoint.stop()
