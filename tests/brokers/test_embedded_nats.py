"""The embedded default broker: started on demand, shared through server.json, stopped clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tripwire.broker_endpoint import connected_broker, embedded_nats
from tripwire.brokers import open_broker
from tripwire.errors import BrokerUnavailable
from tripwire.settings import BrokerSettings, CommonSettings


def test_start_attach_stop(tmp_path: Path) -> None:
    first = embedded_nats(tmp_path)
    try:
        assert first.embedded is not None, "the first caller owns the server"
        record = json.loads((tmp_path / "nats" / "server.json").read_text())
        assert record["url"] == first.url
        second = embedded_nats(tmp_path)
        assert second.url == first.url and second.embedded is None, "later callers attach"
        second.stop()  # a no-op: it does not own the server
        assert first.embedded.process.poll() is None
    finally:
        first.stop()
    assert first.embedded.process.poll() is not None, "the owner stops it; no orphan"
    third = embedded_nats(tmp_path)  # the record is stale now: a fresh server starts
    try:
        assert third.embedded is not None
    finally:
        third.stop()


async def test_connected_broker_uses_embedded_nats_without_url(tmp_path: Path) -> None:
    settings = CommonSettings(home=tmp_path)
    async with connected_broker(settings) as broker:
        assert broker.name == "nats" and broker.connected
        await broker.publish("tripwire.motion.cam-1", b"\x00\xff", {"Tripwire-Id": "x"})
        assert await broker.depth() == 1
    record = json.loads((tmp_path / "nats" / "server.json").read_text())
    # The server was stopped on exit: a new broker cannot connect to it.
    late = open_broker(BrokerSettings(connect_timeout_s=0.5), record["url"])
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        await late.connect()
