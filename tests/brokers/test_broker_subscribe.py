"""``Broker.subscribe`` (transient listeners for wake-ups) on both adapters, real servers.

Subscribing takes effect asynchronously (when iteration starts, plus a round trip), so each
test first publishes pings until every listener has heard one, then the message it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests import broker_kit
from tests.broker_kit import Kit, nats_settings, rabbit_settings
from tests.rabbitmq_admin import admin as _admin
from tripwire import contract
from tripwire.brokers.jetstream import JetStreamBroker
from tripwire.brokers.protocol import Broker, Message
from tripwire.brokers.rabbitmq import RabbitBroker
from tripwire.contract import Header
from tripwire.embedded_nats import EmbeddedNats
from tripwire.errors import BrokerError, BrokerUnavailable

kit = broker_kit.kit  # the fixture: each test runs on both adapters
PING = "Test-Ping"  # header of the readiness pings, which listeners set aside
WAKE_HEADERS = {Header.ID: "wake-0001", Header.CAMERA: "cam-1", "X-Note": "a b;c=d"}


class Listener:
    """Iterates ``broker.subscribe(subject)`` in a task; what arrives waits in ``inbox``."""

    def __init__(self, broker: Broker, subject: str) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.pinged = asyncio.Event()
        self.task = asyncio.create_task(self._pump(broker.subscribe(subject)))

    async def _pump(self, messages: AsyncIterator[Message]) -> None:
        async for message in messages:
            if PING in message.headers:
                self.pinged.set()
            else:
                self.inbox.put_nowait(message)

    async def next(self, within: float = 5.0) -> Message:
        async with asyncio.timeout(within):
            return await self.inbox.get()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def until_listening(
    publisher: Broker, subject: str, *listeners: Listener, within: float = 15.0
) -> None:
    """Publish pings until every listener heard one (retrying while the publisher reconnects)."""
    for listener in listeners:
        listener.pinged.clear()
    deadline = time.monotonic() + within
    while not all(listener.pinged.is_set() for listener in listeners):
        assert time.monotonic() < deadline, "a listener never heard a ping"
        for listener in listeners:
            assert not listener.task.done(), "a listener's iterator ended"
        with contextlib.suppress(BrokerUnavailable):  # reconnecting
            await publisher.publish(subject, b"ping", {PING: "1"})
        await asyncio.sleep(0.05)


async def test_listener_receives_a_wake_with_body_and_headers(kit: Kit) -> None:
    gateway, scaler = await kit.broker(), await kit.broker()
    listener = Listener(scaler, kit.subject)
    await until_listening(gateway, kit.subject, listener)

    body = b'{"camera": "cam-1", "event": "ev-1"}\x00\xff'
    await gateway.publish(kit.subject, body, WAKE_HEADERS)
    message = await listener.next()
    assert isinstance(message, Message)
    assert message.subject == kit.subject
    assert message.body == body
    assert dict(message.headers) == WAKE_HEADERS
    assert message.deliveries == 1
    # Nothing to settle: every settlement is accepted and does nothing.
    await message.ack()
    await message.nak(delay=1.0)
    await message.in_progress()
    await message.term("not for a signal")
    assert listener.inbox.empty()


async def test_every_listener_receives_each_wake(kit: Kit) -> None:
    gateway, scaler, other = await kit.broker(), await kit.broker(), await kit.broker()
    # Two listeners on one adapter and one on another: each gets its own copy.
    listeners = [Listener(scaler, kit.subject), Listener(scaler, kit.subject)]
    listeners.append(Listener(other, kit.subject))
    await until_listening(gateway, kit.subject, *listeners)

    await gateway.publish(kit.subject, b"wake", WAKE_HEADERS)
    for listener in listeners:
        assert (await listener.next()).body == b"wake"


async def test_wake_with_no_listener_is_not_an_error(kit: Kit) -> None:
    gateway = await kit.broker()
    await gateway.publish(kit.subject, b"wake", WAKE_HEADERS)
    # Not stored for a listener that comes later.
    listener = Listener(gateway, kit.subject)
    await until_listening(gateway, kit.subject, listener)
    assert listener.inbox.empty()


async def test_listener_hears_only_its_subject(kit: Kit) -> None:
    gateway = await kit.broker()
    listener = Listener(gateway, kit.subject)
    await until_listening(gateway, kit.subject, listener)
    motion = f"{kit.subject.rsplit('.', 1)[0]}.motion.cam-1"  # a motion subject of this topology
    await gateway.publish(motion, b"frame", {})
    await gateway.publish(kit.subject, b"wake", WAKE_HEADERS)
    assert (await listener.next()).body == b"wake"
    assert listener.inbox.empty()


async def test_close_ends_the_iterator(kit: Kit) -> None:
    scaler = await kit.broker()
    listener = Listener(scaler, kit.subject)
    await until_listening(scaler, kit.subject, listener)
    await scaler.close()
    async with asyncio.timeout(5):
        await listener.task  # ended, without an error

    with pytest.raises(BrokerUnavailable):
        await anext(scaler.subscribe(kit.subject))


async def test_subscribe_before_connect_fails(kit: Kit) -> None:
    broker = kit.make()
    kit.made.append(broker)
    with pytest.raises(BrokerError, match=r"not connected|connect\(\) first"):
        await anext(broker.subscribe(kit.subject))


# -- NATS: the subscription outlives a server restart ----------------------------------------


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats.start(tmp_path / "nats")
    yield server
    server.stop()


async def test_nats_listener_survives_a_server_restart(own_nats: EmbeddedNats, unique: str) -> None:
    settings = nats_settings(unique)
    subject = f"t{unique}.wake"
    broker = JetStreamBroker(own_nats.url, settings, connect_timeout_s=10, publish_timeout_s=1)
    await broker.connect()
    listener = Listener(broker, subject)
    try:
        await until_listening(broker, subject, listener)
        own_nats.stop()
        restarted = EmbeddedNats.start(
            own_nats.store_dir, port=own_nats.port, monitor_port=own_nats.monitor_port
        )
        try:
            # The same iterator hears again once nats-py has replayed the subscription.
            await until_listening(broker, subject, listener)
            await broker.publish(subject, b"after", WAKE_HEADERS)
            assert (await listener.next()).body == b"after"
        finally:
            await broker.close()
            restarted.stop()
    finally:
        await listener.stop()


# -- RabbitMQ: temporary queues -----------------------------------------------------------------


def _bound_queues(exchange: str, key: str) -> set[str]:
    bindings = _admin("GET", f"exchanges/%2F/{quote(exchange, safe='')}/bindings/source") or []
    return {b["destination"] for b in bindings if b["routing_key"] == key}


def _queue_exists(name: str) -> bool:
    return _admin("GET", f"queues/%2F/{quote(name, safe='')}") is not None


async def _until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.fixture
async def rabbit(rabbitmq_url: str, unique: str) -> AsyncIterator[RabbitBroker]:
    settings = rabbit_settings(unique)
    broker = RabbitBroker(rabbitmq_url, settings, connect_timeout_s=5, publish_timeout_s=5)
    await broker.connect()
    yield broker
    await broker.close()
    for queue in (settings.queue, settings.dead_letter_queue, settings.events_queue_name):
        _admin("DELETE", f"queues/%2F/{quote(queue, safe='')}")
    for exchange in (settings.exchange, settings.dead_letter_exchange):
        _admin("DELETE", f"exchanges/%2F/{quote(exchange, safe='')}")


async def test_rabbitmq_temporary_queues_go_with_their_listener(
    rabbit: RabbitBroker, unique: str
) -> None:
    exchange, subject = f"test-{unique}", contract.WAKE_SUBJECT
    first, second = Listener(rabbit, subject), Listener(rabbit, subject)
    await until_listening(rabbit, subject, first, second)
    queues = _bound_queues(exchange, subject)
    assert len(queues) == 2
    for queue in queues:
        info = _admin("GET", f"queues/%2F/{quote(queue, safe='')}")
        assert info["exclusive"] and info["auto_delete"] and not info["durable"]

    await first.stop()  # the consumer is cancelled, so auto-delete removes its queue
    await _until(lambda: len(_bound_queues(exchange, subject)) == 1, "first queue stayed")
    await rabbit.close()
    await _until(lambda: not any(map(_queue_exists, queues)), "a temporary queue stayed")
    async with asyncio.timeout(5):
        await second.task


async def test_rabbitmq_listener_rebinds_after_its_connection_is_lost(
    rabbit: RabbitBroker, unique: str
) -> None:
    exchange, subject = f"test-{unique}", contract.WAKE_SUBJECT
    listener = Listener(rabbit, subject)
    await until_listening(rabbit, subject, listener)
    [before] = _bound_queues(exchange, subject)

    name = f"tripwire listener test-{unique}.motion pid {os.getpid()}"
    connections: list[str] = []

    def listed() -> bool:
        connections[:] = [
            c["name"]
            for c in _admin("GET", "connections") or []
            if c.get("client_properties", {}).get("connection_name") == name
        ]
        return bool(connections)

    await _until(listed, "the management API never listed the listener's connection")
    _admin("DELETE", f"connections/{quote(connections[0], safe='')}")

    # The same iterator hears again, through a fresh queue on a new connection.
    await until_listening(rabbit, subject, listener)
    await rabbit.publish(subject, b"after", WAKE_HEADERS)
    assert (await listener.next()).body == b"after"
    assert _bound_queues(exchange, subject) - {before}
    assert not _queue_exists(before)
    await listener.stop()
