"""The pages' live feed on RabbitMQ (the browser test covers NATS): a temporary queue bound to
the events subjects, each message answered with the event's row read from the store; and the
console process stopping at once while a page's stream is open."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from console.live import LiveFeed
from console.pages import render_event_row
from tests.brokers.test_broker_subscribe import rabbit_settings
from tests.event_factory import T0, opened
from tests.rabbitmq_admin import admin
from tripwire.brokers.rabbitmq import RabbitBroker, RabbitSettings
from tripwire.contract import Header, alerts_subject, events_subject
from tripwire.embedded_nats import free_port
from tripwire.event_messages import encode
from tripwire.eventstore import Store
from tripwire.eventstore.writer import record_open
from tripwire.tokens import hash_token

EV = f"cam-1-{T0}"


@pytest.fixture
async def rabbit(rabbitmq_url: str, unique: str) -> AsyncIterator[tuple[str, RabbitSettings]]:
    settings = rabbit_settings(unique)
    yield rabbitmq_url, settings
    for queue in (settings.queue, settings.dead_letter_queue, settings.events_queue_name):
        admin("DELETE", f"queues/%2F/{quote(queue, safe='')}")
    for exchange in (settings.exchange, settings.dead_letter_exchange):
        admin("DELETE", f"exchanges/%2F/{quote(exchange, safe='')}")


async def next_of(queue: asyncio.Queue[tuple[str, dict[str, Any]]], kind: str) -> dict[str, Any]:
    while True:
        got, data = await queue.get()
        if got == kind:
            return data


async def test_rabbitmq_messages_bring_the_stores_rows_to_the_pages(
    rabbit: tuple[str, RabbitSettings], tmp_path: Path
) -> None:
    url, settings = rabbit
    store = Store(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    with store.begin() as conn:  # what the events function wrote
        record_open(conn, opened("cam-1", EV, T0), T0)
    listener = RabbitBroker(url, settings, connect_timeout_s=5, publish_timeout_s=5)
    feed = LiveFeed(store, listener, render_event_row)
    publisher = RabbitBroker(url, settings, connect_timeout_s=5, publish_timeout_s=5)
    await publisher.connect()
    await feed.start()
    browser = feed.subscribe()
    try:
        body = encode(opened("cam-1", EV, T0))
        # The temporary queue is bound asynchronously: publish until the feed has heard one.
        async with asyncio.timeout(30):
            while True:
                await publisher.publish(events_subject("cam-1"), body, {Header.ID: f"{EV}-o"})
                try:
                    async with asyncio.timeout(1.5):
                        update = await next_of(browser, "event")
                    break
                except TimeoutError:
                    continue
        assert feed.connected
        assert update["id"] == EV and update["camera"] == "cam-1" and update["status"] == "open"
        assert f'id="ev-{EV}"' in update["html"] and "<script" not in update["html"]
        alert = json.dumps({"id": "a-1", "camera": "cam-1", "event_id": EV}).encode()
        await publisher.publish(alerts_subject("cam-1"), alert, {Header.ID: "a-1"})
        async with asyncio.timeout(15):
            assert (await next_of(browser, "alerts")) == {"unacknowledged": 0}
        # The events function's queue still holds them: the feed took nothing from it.
        path = f"queues/%2F/{quote(settings.events_queue_name, safe='')}"
        for _ in range(30):  # the management statistics refresh every 5 s
            if (admin("GET", path) or {}).get("messages", 0) >= 1:
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("the events queue does not hold the messages")
    finally:
        feed.unsubscribe(browser)
        await feed.stop()
        await publisher.close()
        store.close()


def test_the_console_stops_at_once_with_a_live_stream_open(tmp_path: Path) -> None:
    """An open stream is a request that never ends; SIGTERM must not wait on it."""
    token = "operator-token-for-the-stop-test"
    config = {"cameras": [], "operators": [{"name": "ann", "token_hash": hash_token(token)}]}
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env["TRIPWIRE_HOME"] = str(tmp_path / "home")
    console = subprocess.Popen(
        [sys.executable, "-m", "tripwire.app.cli", "console", "--config",
         str(tmp_path / "cameras.yaml"), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and console.poll() is None, "console not up"
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream("GET", f"{base}/v1/live", headers=headers, timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 3000"
            console.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            rest = list(lines)  # the stream ends, cleanly
        console.wait(timeout=30)
        took = time.monotonic() - stopped
    finally:
        if console.poll() is None:
            console.kill()
        output = console.communicate()[0].decode()
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert console.returncode in (0, -signal.SIGTERM), output[-2000:]
    assert "Application shutdown complete" in output
    assert took < 4, f"took {took:.1f}s to stop"
    assert "Traceback" not in output, output[-2000:]
    assert all(not line.startswith("event: end") for line in rest)
