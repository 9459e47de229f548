"""The Broker Protocol's work-queue contract, one suite run over both adapters (real servers):
publish, fetch, ack, nak (now and later), term to the dead-letter route, depth, and an
unreachable server. What only one broker has (JetStream dedup and stream limits, RabbitMQ
queue arguments and the management API) is tested in test_broker_nats.py and
test_broker_rabbitmq.py."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests import broker_kit
from tests.broker_kit import Kit, depth_becomes, fetch, frame_headers
from tripwire.brokers.protocol import Broker, Message
from tripwire.contract import FrameMeta, Header
from tripwire.errors import BrokerUnavailable

kit = broker_kit.kit  # the fixture: each test runs on both adapters


async def test_round_trip_keeps_body_bytes_and_every_header(kit: Kit) -> None:
    broker = await kit.broker()
    assert isinstance(broker, Broker)
    body = b"\x00\xff\xd8\x00" + os.urandom(200_000) + b"\x00\r\n\x00"  # no text decoding
    headers = frame_headers() | {"X-Extra": "a b;c=d"}
    await broker.publish(kit.motion, body, headers)

    [message] = await fetch(broker, 1)
    assert isinstance(message, Message)
    assert message.subject == kit.motion
    assert message.body == body
    assert dict(message.headers) == headers
    assert message.deliveries == 1
    assert FrameMeta.from_headers(message.headers).seq == 1
    await message.ack()


async def test_unacked_messages_count_in_depth_and_ack_removes_them(kit: Kit) -> None:
    broker = await kit.broker()
    for seq in range(3):
        await broker.publish(kit.motion, b"frame", frame_headers(seq))
    await depth_becomes(broker, 3)  # waiting
    messages = await fetch(broker, 3)
    await depth_becomes(broker, 3)  # in flight, none waiting: unacked counts
    for message in messages:
        await message.ack()
    await depth_becomes(broker, 0)
    assert await broker.fetch(1, 0.5) == []


async def test_nak_redelivers_and_counts_deliveries(kit: Kit) -> None:
    broker = await kit.broker()
    await broker.publish(kit.motion, b"frame", frame_headers())
    [first] = await fetch(broker, 1)
    await first.nak()
    [again] = await fetch(broker, 1)
    assert again.body == b"frame"
    assert again.deliveries == 2
    await again.ack()


async def test_nak_with_delay_is_not_redelivered_before_the_delay(kit: Kit) -> None:
    broker = await kit.broker()
    await broker.publish(kit.motion, b"frame", frame_headers())
    [first] = await fetch(broker, 1)
    delay = 2.0
    started = time.monotonic()
    await first.nak(delay=delay)
    assert time.monotonic() - started < delay  # the caller does not wait out the delay
    [again] = await fetch(broker, 1, within=delay + 10)
    # Not before the delay, however busy the machine: ``started`` precedes the nak.
    assert time.monotonic() - started >= delay
    assert again.deliveries == 2
    await again.ack()


async def test_term_dead_letters_with_reason_and_never_redelivers(kit: Kit) -> None:
    broker = await kit.broker()
    body = os.urandom(1000)
    headers = frame_headers()
    await broker.publish(kit.motion, body, headers)
    [message] = await fetch(broker, 1)
    await message.term("not a JPEG:\nbad SOI marker")

    assert await broker.fetch(1, 1.0) == []
    await depth_becomes(broker, 0)
    assert kit.dead_letter is not None
    dead_body, dead = await kit.dead_letter()
    assert dead_body == body
    assert dead[Header.DEAD_REASON] == "not a JPEG: bad SOI marker"  # one line
    assert dead[Header.DEAD_SUBJECT] == kit.motion
    for name, value in headers.items():
        assert dead[name] == value


async def test_closed_port_is_unavailable_within_the_deadline_without_the_password(
    kit: Kit,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scheme, user = kit.scheme_user.split("://")
    broker = kit.unconnected(f"{scheme}://{user}:secret@127.0.0.1:{port}/")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as failed:
        await broker.connect()
    # Its connect timeout is 1 s: it gives up then, not after the default 30 s.
    assert time.monotonic() - started < 10
    text = f"{failed.value} {failed.value!r}"
    assert "secret" not in text
    assert f"{kit.scheme_user}:***@127.0.0.1:{port}" in text
    assert not broker.connected
