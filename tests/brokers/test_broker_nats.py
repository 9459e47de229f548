"""JetStreamBroker against a real nats-server (the session fixture, or a dedicated one)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamInfo

from tests.broker_kit import frame_headers
from tripwire import embedded_nats
from tripwire.brokers.jetstream import JetStreamBroker
from tripwire.brokers.protocol import Message
from tripwire.brokers.settings import NatsSettings
from tripwire.embedded_nats import EmbeddedNats
from tripwire.errors import BrokerError, BrokerUnavailable, PublishTimeout

MakeBroker = Callable[..., JetStreamBroker]


def isolated(unique: str, **overrides: Any) -> NatsSettings:
    """Settings whose stream names and subjects no other test shares."""
    fields: dict[str, Any] = {
        "stream": f"M_{unique}",
        "subjects": [f"t{unique}.motion.>"],
        "results_stream": f"R_{unique}",
        "results_subjects": [f"t{unique}.detections.>"],
        "dead_stream": f"D_{unique}",
        "dead_prefix": f"t{unique}.dead",
        "reconnect_wait_s": 0.05,
        "reconnect_max_wait_s": 0.5,
        # nats-server reserves each stream's max_bytes up front: the production defaults
        # (GiBs) of many test streams would exhaust the test server's store.
        "stream_max_bytes": 64 * 1024 * 1024,
        "results_max_bytes": 16 * 1024 * 1024,
        "dead_max_bytes": 16 * 1024 * 1024,
    }
    fields.update(overrides)
    return NatsSettings(**fields)


@pytest.fixture
async def make_broker() -> AsyncIterator[MakeBroker]:
    """Build adapters (unconnected) and close every one of them at teardown."""
    made: list[JetStreamBroker] = []

    def make(
        url: str,
        settings: NatsSettings,
        *,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 2.0,
    ) -> JetStreamBroker:
        broker = JetStreamBroker(
            url, settings, connect_timeout_s=connect_timeout_s, publish_timeout_s=publish_timeout_s
        )
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
async def broker(make_broker: MakeBroker, nats_url: str, unique: str) -> JetStreamBroker:
    connected = make_broker(nats_url, isolated(unique))
    await connected.connect()
    return connected


def subject(broker: JetStreamBroker, camera: str = "cam-1") -> str:
    return broker.settings.subjects[0].replace(">", camera)


async def fetch_one(broker: JetStreamBroker, wait: float = 2.0) -> Message:
    got = await broker.fetch(1, wait)
    assert len(got) == 1, "expected exactly one message"
    return got[0]


async def stream_info(url: str, stream: str) -> StreamInfo:
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()


async def test_in_progress_extends_the_ack_deadline(
    make_broker: MakeBroker, nats_url: str, unique: str
) -> None:
    broker = make_broker(nats_url, isolated(unique, ack_wait_s=2))
    await broker.connect()
    await broker.publish(subject(broker), b"slow", frame_headers())
    msg = await fetch_one(broker)
    for _ in range(3):  # 3 s of work in all, against a 2 s ack_wait
        await asyncio.sleep(1.0)
        await msg.in_progress()
    assert await broker.fetch(1, 0.2) == []
    await msg.ack()


async def test_same_tripwire_id_is_stored_once(broker: JetStreamBroker, nats_url: str) -> None:
    headers = frame_headers(7)
    await broker.publish(subject(broker), b"frame", headers)
    await broker.publish(subject(broker), b"frame", headers)  # a retried publish
    await broker.publish(subject(broker), b"other", frame_headers(8))
    info = await stream_info(nats_url, broker.settings.stream)
    assert info.state.messages == 2
    assert await broker.depth() == 2


async def test_message_over_max_msg_bytes_is_a_broker_error(
    make_broker: MakeBroker, nats_url: str, unique: str
) -> None:
    broker = make_broker(nats_url, isolated(unique, max_msg_bytes=64 * 1024))
    await broker.connect()
    with pytest.raises(BrokerError, match="max_msg_bytes") as caught:
        await broker.publish(subject(broker), b"x" * (64 * 1024 + 1), frame_headers())
    assert not isinstance(caught.value, BrokerUnavailable)  # retrying will not help


async def test_reconnect_with_changed_limits_updates_the_stream(
    make_broker: MakeBroker, nats_url: str, unique: str
) -> None:
    first = make_broker(nats_url, isolated(unique, max_msg_bytes=64 * 1024))
    await first.connect()
    second = make_broker(nats_url, isolated(unique, max_msg_bytes=16 * 1024, stream_max_age_s=600))
    await second.connect()
    config = (await stream_info(nats_url, first.settings.stream)).config
    assert config.max_msg_size == 16 * 1024
    assert config.max_age == 600
    # The first adapter still believes 64 KiB: the server's refusal is a clear BrokerError.
    with pytest.raises(BrokerError, match="max_msg_size") as caught:
        await first.publish(subject(first), b"x" * (32 * 1024), frame_headers())
    assert not isinstance(caught.value, BrokerUnavailable)


async def test_full_motion_stream_refuses_with_broker_unavailable(
    make_broker: MakeBroker, nats_url: str, unique: str
) -> None:
    broker = make_broker(nats_url, isolated(unique, stream_max_bytes=1024 * 1024))
    await broker.connect()
    for seq in (1, 2):
        await broker.publish(subject(broker), os.urandom(400_000), frame_headers(seq))
    # discard=new: queued frames are kept and the publisher is told to back off.
    with pytest.raises(BrokerUnavailable, match="maximum bytes"):
        await broker.publish(subject(broker), os.urandom(400_000), frame_headers(3))
    assert await broker.depth() == 2


async def test_publish_before_connect_is_unavailable(
    make_broker: MakeBroker, nats_url: str, unique: str
) -> None:
    broker = make_broker(nats_url, isolated(unique))
    with pytest.raises(BrokerUnavailable):
        await broker.publish(subject(broker), b"frame", frame_headers())


async def publish_when_back(broker: JetStreamBroker, body: bytes, headers: dict[str, str]) -> None:
    """Retry a publish for up to 10 s while the adapter reconnects on its own."""
    deadline = time.monotonic() + 10
    while True:
        try:
            await broker.publish(subject(broker), body, headers)
            return
        except BrokerUnavailable:
            assert time.monotonic() < deadline, "the adapter did not come back"
            await asyncio.sleep(0.1)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats.start(tmp_path / "nats")
    yield server
    server.stop()


def restart_same_port(server: EmbeddedNats) -> EmbeddedNats:
    """Start a new nats-server on the old ports and store."""
    return EmbeddedNats.start(server.store_dir, port=server.port, monitor_port=server.monitor_port)


async def test_server_restart_same_adapter_reconnects_and_keeps_messages(
    make_broker: MakeBroker,
    own_server: EmbeddedNats,
    unique: str,
) -> None:
    broker = make_broker(own_server.url, isolated(unique), publish_timeout_s=1.0)
    await broker.connect()
    for seq in (1, 2):
        await broker.publish(subject(broker), f"before-{seq}".encode(), frame_headers(seq))

    own_server.stop()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await broker.publish(subject(broker), b"lost", frame_headers(3))
    assert time.monotonic() - started < 1.0 + 5  # bounded by the publish timeout, not hung
    assert not broker.connected

    restarted = restart_same_port(own_server)
    try:
        await publish_when_back(broker, b"after", frame_headers(4))
        assert broker.connected
        assert await broker.depth() == 3
        bodies = sorted(m.body for m in await broker.fetch(10, 2.0))
        assert bodies == [b"after", b"before-1", b"before-2"]
    finally:
        await broker.close()
        restarted.stop()


async def test_hung_server_publish_times_out_and_retry_is_deduplicated(
    make_broker: MakeBroker, own_server: EmbeddedNats, unique: str
) -> None:
    broker = make_broker(own_server.url, isolated(unique), publish_timeout_s=0.5)
    await broker.connect()
    own_server.process.send_signal(signal.SIGSTOP)  # the TCP connection stays up, silent
    try:
        started = time.monotonic()
        with pytest.raises(PublishTimeout):
            await broker.publish(subject(broker), b"frame", frame_headers(1))
        assert time.monotonic() - started < 0.5 + 4.5  # bounded by the timeout, not hung
    finally:
        own_server.process.send_signal(signal.SIGCONT)
    # The timed-out publish may have been stored after all; retrying it must not duplicate.
    await broker.publish(subject(broker), b"frame", frame_headers(1))
    assert await broker.depth() == 1


async def test_server_back_without_its_store_gets_the_streams_again(
    make_broker: MakeBroker,
    own_server: EmbeddedNats,
    unique: str,
    tmp_path: Path,
) -> None:
    broker = make_broker(own_server.url, isolated(unique), publish_timeout_s=1.0)
    await broker.connect()
    await broker.publish(subject(broker), b"before", frame_headers(1))
    assert await broker.depth() == 1
    own_server.stop()

    fresh = EmbeddedNats.start(
        tmp_path / "fresh-store", port=own_server.port, monitor_port=own_server.monitor_port
    )
    try:
        # The adapter reconnects, then re-declares the streams and the consumer.
        await publish_when_back(broker, b"after", frame_headers(2))
        assert await broker.depth() == 1  # the old frame went with the old store
        assert (await fetch_one(broker)).body == b"after"
    finally:
        await broker.close()
        fresh.stop()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        # a stream name with a dot would split the JetStream API subject
        ({"stream": "MOTION.X"}, "name"),
        # the three streams must be distinct or one declaration overwrites another
        ({"results_stream": "TRIPWIRE_MOTION"}, "must differ"),
        # '>' may only be the last token
        ({"subjects": ["tripwire.>.x"]}, "valid NATS subject"),
        # an empty token
        ({"results_subjects": ["tripwire..x"]}, "valid NATS subject"),
        # dead letters are published to <prefix>.<subject>, never to a wildcard
        ({"dead_prefix": "tripwire.*"}, "wildcards"),
        # nats-server refuses a dedup window longer than a stream's max age
        ({"duplicate_window_s": 600, "stream_max_age_s": 300}, "duplicate_window_s"),
        # the backoff starts below its cap
        ({"reconnect_wait_s": 5, "reconnect_max_wait_s": 1}, "reconnect_wait_s"),
        # a typo is an error, not a silently ignored field
        ({"ack_wait": 10}, "extra"),
    ],
)
def test_settings_refuse_inconsistent_values(overrides: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        NatsSettings(**overrides)


def test_default_settings_are_valid() -> None:
    settings = NatsSettings()
    assert settings.subjects == ["tripwire.motion.>"]
    assert settings.dead_prefix == "tripwire.dead"
    assert settings.max_msg_bytes == embedded_nats.MAX_PAYLOAD
