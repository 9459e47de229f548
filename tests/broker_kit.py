"""Adapters of each broker kind on an isolated topology: the ``kit`` fixture that runs one
test suite over both adapters (tests/brokers/test_broker_contract.py,
tests/brokers/test_broker_subscribe.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote

import nats
import pika
import pytest

from tests.rabbitmq_admin import admin as _admin
from tripwire import contract
from tripwire.brokers.jetstream import JetStreamBroker
from tripwire.brokers.protocol import Broker, Message
from tripwire.brokers.rabbitmq import RabbitBroker
from tripwire.brokers.settings import MiB, NatsSettings, RabbitSettings
from tripwire.contract import FrameMeta

# The last dead letter of a kit's motion subject: its body and headers.
DeadLetter = tuple[bytes, dict[str, str]]


def nats_settings(unique: str) -> NatsSettings:
    """Streams of this test only; its wake subject is in the results stream, as in production."""
    return NatsSettings(
        stream=f"M_{unique}",
        subjects=[f"t{unique}.motion.>"],
        results_stream=f"R_{unique}",
        results_subjects=[f"t{unique}.detections.>", f"t{unique}.wake"],
        dead_stream=f"D_{unique}",
        dead_prefix=f"t{unique}.dead",
        # nats-server reserves each stream's max_bytes up front: the GiB defaults of many
        # tests would exhaust the shared server's JetStream storage.
        stream_max_bytes=8 * MiB,
        results_max_bytes=8 * MiB,
        dead_max_bytes=8 * MiB,
        reconnect_wait_s=0.05,
        reconnect_max_wait_s=0.5,
    )


def rabbit_settings(unique: str) -> RabbitSettings:
    return RabbitSettings(
        exchange=f"test-{unique}",
        queue=f"test-{unique}.motion",
        dead_letter_exchange=f"test-{unique}.dlx",
        dead_letter_queue=f"test-{unique}.dead",
    )


def frame_headers(seq: int = 1) -> dict[str, str]:
    meta = FrameMeta(
        camera="cam-1",
        seq=seq,
        capture_ns=1_700_000_000_000_000_000 + seq,
        receive_ns=1_700_000_000_000_500_000 + seq,
        width=1280,
        height=720,
        content_type="image/jpeg",
        motion_score=0.125,
        boxes=((1, 2, 30, 40), (50, 60, 70, 80)),
        event_id="ev-1",
    )
    return meta.to_headers()


async def fetch(broker: Broker, count: int, within: float = 10.0) -> list[Message]:
    """Exactly ``count`` messages, fetched in as many batches as it takes."""
    got: list[Message] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        got += await broker.fetch(count - len(got), deadline - time.monotonic())
    assert len(got) == count
    return got


async def depth_becomes(broker: Broker, expected: int, within: float = 30.0) -> None:
    # RabbitMQ's management API refreshes queue statistics every 5 s; JetStream's is exact.
    deadline = time.monotonic() + within
    while (depth := await broker.depth()) != expected:
        assert time.monotonic() < deadline, f"depth stayed {depth}, expected {expected}"
        await asyncio.sleep(0.25)


@dataclass
class Kit:
    """Adapters of one kind on one isolated topology, closed at teardown."""

    make: Callable[[], Broker]
    subject: str  # a wake subject (transient signals)
    kind: str = ""
    motion: str = ""  # a motion subject (the work queue fetch reads)
    dead_letter: Callable[[], Awaitable[DeadLetter]] | None = None
    # An adapter for ``url`` (connect timeout 1 s); a URL's scheme and user for this kind.
    make_for: Callable[[str], Broker] | None = None
    scheme_user: str = ""
    made: list[Broker] = field(default_factory=list)

    async def broker(self) -> Broker:
        broker = self.make()
        self.made.append(broker)
        await broker.connect()
        return broker

    def unconnected(self, url: str) -> Broker:
        assert self.make_for is not None
        broker = self.make_for(url)
        self.made.append(broker)
        return broker


async def _nats_dead_letter(url: str, settings: NatsSettings, motion: str) -> DeadLetter:
    nc = await nats.connect(url)
    try:
        dead = await nc.jetstream().get_last_msg(
            settings.dead_stream, f"{settings.dead_prefix}.{motion}"
        )
    finally:
        await nc.close()
    return dead.data or b"", dict(dead.headers or {})


def _rabbit_dead_letter(url: str, queue: str) -> DeadLetter:
    """basic.get one message (auto-ack) with plain pika: what another client would see."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        _method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        assert properties is not None, f"{queue} is empty"
    finally:
        connection.close()
    headers = {
        k: v.decode() if isinstance(v, bytes) else str(v)
        for k, v in (properties.headers or {}).items()
        if isinstance(v, bytes | str | int | Decimal)
    }
    return body, headers


@pytest.fixture(params=["nats", "rabbitmq"])
async def kit(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Kit]:
    if request.param == "nats":
        url = request.getfixturevalue("nats_url")
        settings = nats_settings(unique)
        motion = f"t{unique}.motion.cam-1"

        def make_nats(at: str = url, timeout_s: float = 10) -> Broker:
            return JetStreamBroker(at, settings, connect_timeout_s=timeout_s, publish_timeout_s=2)

        kit = Kit(
            make_nats,
            f"t{unique}.wake",
            kind="nats",
            motion=motion,
            dead_letter=lambda: _nats_dead_letter(url, settings, motion),
            make_for=lambda at: make_nats(at, 1.0),
            scheme_user="nats://user",
        )
    else:
        url = request.getfixturevalue("rabbitmq_url")
        rabbit = rabbit_settings(unique)

        def make_rabbit(at: str = url, timeout_s: float = 5) -> Broker:
            return RabbitBroker(at, rabbit, connect_timeout_s=timeout_s, publish_timeout_s=5)

        kit = Kit(
            make_rabbit,
            contract.WAKE_SUBJECT,
            kind="rabbitmq",
            motion=contract.motion_subject("cam-1"),
            dead_letter=lambda: asyncio.to_thread(
                _rabbit_dead_letter, url, rabbit.dead_letter_queue
            ),
            make_for=lambda at: make_rabbit(at, 1.0),
            scheme_user="amqp://guest",
        )
    yield kit
    for broker in kit.made:
        await broker.close()
    if request.param == "rabbitmq":
        for queue in (rabbit.queue, rabbit.dead_letter_queue, rabbit.events_queue_name):
            _admin("DELETE", f"queues/%2F/{quote(queue, safe='')}")
        for exchange in (rabbit.exchange, rabbit.dead_letter_exchange):
            _admin("DELETE", f"exchanges/%2F/{quote(exchange, safe='')}")
