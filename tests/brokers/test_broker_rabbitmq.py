"""The RabbitMQ adapter against the machine's RabbitMQ (AMQP on 5672, management on 15672).

Every test declares its own exchanges and queues (named with ``unique``) and deletes them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import pika
import pytest
from pydantic import ValidationError

from tests.broker_kit import fetch, frame_headers
from tests.rabbitmq_admin import admin as _admin
from tripwire.brokers.rabbitmq import RabbitBroker, topic_matches
from tripwire.brokers.settings import RabbitSettings
from tripwire.contract import Header, motion_subject
from tripwire.errors import BrokerError, BrokerUnavailable

SUBJECT = motion_subject("cam-1")


@pytest.fixture
def settings(unique: str) -> Iterator[RabbitSettings]:
    names = RabbitSettings(
        exchange=f"test-{unique}",
        queue=f"test-{unique}.motion",
        dead_letter_exchange=f"test-{unique}.dlx",
        dead_letter_queue=f"test-{unique}.dead",
        max_length=100,
    )
    yield names
    for queue in (names.queue, names.dead_letter_queue, names.events_queue_name):
        _admin("DELETE", f"queues/%2F/{quote(queue, safe='')}")
    for exchange in (names.exchange, names.dead_letter_exchange):
        _admin("DELETE", f"exchanges/%2F/{quote(exchange, safe='')}")


def _broker(url: str, settings: RabbitSettings, **timeouts: float) -> RabbitBroker:
    return RabbitBroker(
        url,
        settings,
        connect_timeout_s=timeouts.get("connect_timeout_s", 5.0),
        publish_timeout_s=timeouts.get("publish_timeout_s", 5.0),
    )


@pytest.fixture
async def broker(rabbitmq_url: str, settings: RabbitSettings) -> AsyncIterator[RabbitBroker]:
    rabbit = _broker(rabbitmq_url, settings)
    await rabbit.connect()
    yield rabbit
    await rabbit.close()


def _raw_get(url: str, queue: str) -> tuple[Any, bytes]:
    """basic.get one message (auto-ack) with plain pika: what another client would see."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        _method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        assert properties is not None, f"{queue} is empty"
        return properties, body
    finally:
        connection.close()


async def test_publish_is_persistent_with_content_type_and_message_id(
    broker: RabbitBroker, rabbitmq_url: str, settings: RabbitSettings
) -> None:
    headers = frame_headers(seq=7)
    await broker.publish(SUBJECT, b"\xff\xd8 jpeg", headers)
    properties, body = await asyncio.to_thread(_raw_get, rabbitmq_url, settings.queue)
    assert body == b"\xff\xd8 jpeg"
    assert properties.delivery_mode == 2
    assert properties.content_type == "image/jpeg"
    assert properties.message_id == headers[Header.ID]


@pytest.mark.parametrize(
    ("queue_type", "most"),
    [
        ("classic", 3),  # classic queues stop at exactly x-max-length
        ("quorum", 4),  # quorum queues check the limit before an enqueue: one more fits
    ],
)
async def test_full_queue_refuses_publish_and_keeps_max_length(
    rabbitmq_url: str, settings: RabbitSettings, queue_type: str, most: int
) -> None:
    settings = settings.model_copy(update={"queue_type": queue_type, "max_length": 3})
    broker = _broker(rabbitmq_url, settings)
    await broker.connect()
    try:
        stored = 0
        with pytest.raises(BrokerUnavailable) as refused:
            for seq in range(10):
                await broker.publish(SUBJECT, b"frame", frame_headers(seq))
                stored += 1
        assert f"queue {settings.queue} is full (x-max-length 3, overflow reject-publish)" in str(
            refused.value
        )
        assert 3 <= stored <= most
        assert len(await fetch(broker, stored)) == stored
        assert await broker.fetch(1, 0.5) == []
    finally:
        await broker.close()


async def test_unroutable_motion_publish_is_an_error(
    broker: RabbitBroker, settings: RabbitSettings
) -> None:
    binding = f"e/{quote(settings.exchange, safe='')}/q/{quote(settings.queue, safe='')}"
    _admin("DELETE", f"bindings/%2F/{binding}/{quote(settings.binding_key, safe='')}")
    with pytest.raises(BrokerError, match="not routed to any queue"):
        await broker.publish(SUBJECT, b"frame", frame_headers())
    # Results and alerts go to whoever listens: nobody listening is not an error.
    await broker.publish("tripwire.detections.cam-1", b"{}", {})


async def test_closing_a_consumer_returns_unacked_messages(
    rabbitmq_url: str, settings: RabbitSettings
) -> None:
    first = _broker(rabbitmq_url, settings)
    await first.connect()
    for seq in range(2):
        await first.publish(SUBJECT, f"frame {seq}".encode(), frame_headers(seq))
    held = await fetch(first, 2)
    await first.close()

    second = _broker(rabbitmq_url, settings)
    await second.connect()
    try:
        again = await fetch(second, 2)
        assert sorted(m.body for m in again) == sorted(m.body for m in held)
        assert all(m.deliveries == 2 for m in again)
        for message in again:
            await message.ack()
    finally:
        await second.close()


async def test_event_loop_runs_while_a_publish_awaits_its_confirm(broker: RabbitBroker) -> None:
    publish = asyncio.create_task(broker.publish(SUBJECT, os.urandom(1024 * 1024), frame_headers()))
    turns = 0
    while not publish.done():
        turns += 1
        await asyncio.sleep(0)
    await publish
    # One turn starts the publish; a publish that blocked the loop until its confirm would
    # be done by the second. More turns: this task ran while the publish was in flight.
    assert turns >= 3

    # Many publishes are in flight at once on one channel, each confirmed on its own.
    body = os.urandom(64 * 1024)
    await asyncio.gather(*(broker.publish(SUBJECT, body, frame_headers(n)) for n in range(20)))
    assert len(await fetch(broker, 21)) == 21


async def test_publish_during_an_outage_fails_then_reconnects(
    broker: RabbitBroker, settings: RabbitSettings
) -> None:
    name = f"tripwire publisher {settings.queue} pid {os.getpid()}"
    deadline = time.monotonic() + 10
    while not (
        mine := [
            c["name"]
            for c in _admin("GET", "connections") or []
            if c.get("client_properties", {}).get("connection_name") == name
        ]
    ):
        assert time.monotonic() < deadline, "the management API never listed the connection"
        await asyncio.sleep(0.2)
    _admin("DELETE", f"connections/{quote(mine[0], safe='')}")

    deadline = time.monotonic() + 10
    while broker.connected:  # publish right after the adapter noticed, before it reconnects
        assert time.monotonic() < deadline, "never noticed the connection was closed"
        await asyncio.sleep(0.005)
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.publish(SUBJECT, b"frame", frame_headers())
    deadline = time.monotonic() + 10
    while not broker.connected:
        assert time.monotonic() < deadline, "did not reconnect"
        await asyncio.sleep(0.05)
    await broker.publish(SUBJECT, b"frame", frame_headers())


async def test_consumer_recovers_when_its_queue_is_deleted(
    broker: RabbitBroker, settings: RabbitSettings
) -> None:
    assert await broker.fetch(1, 0.1) == []  # the consumer is running
    _admin("DELETE", f"queues/%2F/{quote(settings.queue, safe='')}")
    # The broker cancels the consumer; the adapter reconnects and declares the queue again.
    deadline = time.monotonic() + 10
    while _admin("GET", f"queues/%2F/{quote(settings.queue, safe='')}") is None:
        assert time.monotonic() < deadline, "the queue was not declared again"
        await asyncio.sleep(0.1)
    await broker.publish(SUBJECT, b"after", frame_headers())
    [message] = await fetch(broker, 1)
    assert message.body == b"after"
    await message.ack()


async def test_depth_without_management_api_is_unavailable(
    rabbitmq_url: str, settings: RabbitSettings
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings.model_copy(update={"management_url": f"http://127.0.0.1:{port}"})
    broker = _broker(rabbitmq_url, settings)
    with pytest.raises(BrokerUnavailable, match="depth unknown"):
        await broker.depth()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, None),  # the defaults are valid
        ({"queue_type": "classic", "overflow": "reject-publish-dlx"}, None),  # classic allows it
        ({"overflow": "reject-publish-dlx"}, "quorum queues do not support"),  # quorum does not
        ({"queue_type": "classic", "delivery_limit": 5}, "needs queue_type quorum"),
        ({"dead_letter_queue": "tripwire.motion"}, "must differ"),  # dead letters would loop
        ({"management_url": "ftp://host"}, "http:// or https://"),
        ({"prefetch": 0}, "greater than or equal to 1"),
        ({"max_lenght": 5}, "Extra inputs are not permitted"),  # a typo is an error
    ],
)
def test_settings_validation(fields: dict[str, Any], error: str | None) -> None:
    if error is None:
        RabbitSettings(**fields)
    else:
        with pytest.raises(ValidationError, match=error):
            RabbitSettings(**fields)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("tripwire.motion.#", "tripwire.motion.cam-1", True),
        ("tripwire.motion.#", "tripwire.motion", True),  # '#' matches zero words
        ("tripwire.motion.#", "tripwire.detections.cam-1", False),
        ("tripwire.*.cam-1", "tripwire.alerts.cam-1", True),
        ("tripwire.*", "tripwire.alerts.cam-1", False),  # '*' is exactly one word
    ],
)
def test_topic_matches(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches
