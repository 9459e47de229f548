"""The events function on real brokers (NATS JetStream and RabbitMQ) and real databases:
it is the one writer of events, idempotent, dead-letters poison, holds its messages through
a database outage, and sends alerts to the broker, a webhook and MQTT without being held up
by either."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

from functions.events.mqtt import MqttNotifier
from functions.events.webhook import Webhook
from functions.events.worker import EventsFunction
from tests.detector_harness import NatsWire, RabbitWire, open_wire, wait_until
from tests.event_factory import T0, S, closed, opened, result
from tests.events_db import fresh_database
from tripwire.alert_rules import AlertRule
from tripwire.brokers import Broker
from tripwire.camera_config import CameraConfig, CamerasFile
from tripwire.contract import Header, detections_subject, events_subject
from tripwire.event_messages import FrameResult, encode
from tripwire.eventstore import Store
from tripwire.eventstore.queries import get_event
from tripwire.settings import EventsSettings, MqttSettings

TOKEN_HASH = "sha256:" + "0" * 64
YARD = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]  # the lower half of the frame
IN_YARD = ("person", 0.9, (100.0, 600.0, 200.0, 900.0))  # feet at (0.15, 0.9)


def config(camera: str) -> CamerasFile:
    return CamerasFile(
        cameras=[CameraConfig(id=camera, token_hash=TOKEN_HASH, zones={"yard": YARD})],
        alerts=[AlertRule(kind="intrusion", classes=["person"], zones=["yard"], min_frames=2,
                          cooldown_s=60)],
    )  # fmt: skip


def settings(tmp_path: Path, **overrides: Any) -> EventsSettings:
    values: dict[str, Any] = {
        "home": tmp_path,
        "fetch_wait_s": 0.2,
        "batch_size": 16,
        "retry_backoff_s": 0.1,
        "retry_max_s": 0.5,
        "console_url": "http://console.example:8090",
    }
    return EventsSettings(**{**values, **overrides})


@pytest.fixture(params=["nats", "rabbitmq"])
async def wire(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[NatsWire | RabbitWire]:
    async with open_wire(request, unique, f"ev-{unique}") as made:
        yield made


async def send(broker: Broker, message: BaseModel, message_id: str) -> None:
    camera = message.camera  # type: ignore[attr-defined]
    kind = detections_subject if isinstance(message, FrameResult) else events_subject
    headers = {Header.ID: message_id, Header.CAMERA: camera,
               Header.CONTENT_TYPE: "application/json"}  # fmt: skip
    await broker.publish(kind(camera), encode(message), headers)


@contextlib.asynccontextmanager
async def running(function: EventsFunction) -> AsyncIterator[EventsFunction]:
    task = asyncio.create_task(function.run())
    try:
        yield function
    finally:
        function.stop()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def events_function(
    wire: NatsWire | RabbitWire, store: Store, cameras: CamerasFile, s: EventsSettings, **kw: Any
) -> AsyncIterator[EventsFunction]:
    feed = wire.events_feed()
    await feed.connect()
    try:
        async with running(EventsFunction(s, cameras, feed, store, **kw)) as function:
            yield function
    finally:
        await feed.close()


def stored(store: Store, event_id: str) -> Callable[[], dict[str, Any] | None]:
    def read() -> dict[str, Any] | None:
        with store.read() as conn:
            return get_event(conn, event_id)

    return read


async def test_one_record_per_event_from_the_edge_and_the_detector(
    wire: NatsWire | RabbitWire, store: Store, tmp_path: Path, unique: str
) -> None:
    camera = f"ev-{unique}"
    ev = f"{camera}-{T0}"
    frames = [result(camera, i, T0 + i * S // 5, [IN_YARD], event_id=ev) for i in range(4)]
    # The first result comes before the open; two are redelivered (new broker ids, so only
    # the database can tell); the close comes before the last result.
    await send(wire.broker, frames[0], "r0")
    await send(wire.broker, opened(camera, ev, T0), "open")
    for i, frame in enumerate(frames[1:3], 1):
        await send(wire.broker, frame, f"r{i}")
        await send(wire.broker, frame, f"r{i}-again")
    await send(wire.broker, closed(camera, ev, T0 + 2 * S, seen=20), "close")
    await send(wire.broker, frames[3], "r3")
    async with events_function(wire, store, config(camera), settings(tmp_path)) as function:
        await wait_until(lambda: function.counts.acked == 8, "8 messages acked")
    got = stored(store, ev)()
    assert got is not None
    assert (got["status"], got["start_ns"], got["end_ns"]) == ("closed", T0, T0 + 2 * S)
    assert got["labels"] == {"person": 0.9} and got["frames"]["detected"] == 4
    assert function.counts.duplicates == 2
    # min_frames 2 crossed twice in the yard within the cooldown: one alert.
    assert [a["kind"] for a in got["alerts"]] == ["intrusion"]
    assert await wire.events_waiting() == 0


async def test_a_poison_message_is_dead_lettered_with_its_reason(
    wire: NatsWire | RabbitWire, store: Store, tmp_path: Path, unique: str
) -> None:
    camera = f"ev-{unique}"
    headers = {Header.ID: "bad", Header.CAMERA: camera}
    await wire.broker.publish(detections_subject(camera), b"{not json", headers)
    good = result(camera, 1, T0, [IN_YARD], event_id="e1")
    await send(wire.broker, good, "good")
    async with events_function(wire, store, config(camera), settings(tmp_path)) as function:
        await wait_until(lambda: function.counts.acked == 1 and function.counts.dead == 1,
                         "one written, one dead-lettered")  # fmt: skip
    [(_, dead_headers, body)] = await wire.dead(1)
    assert body == b"{not json"
    assert dead_headers[Header.DEAD_REASON].startswith("bad message: ")
    assert "not JSON" in dead_headers[Header.DEAD_REASON]
    assert stored(store, "e1")() is not None


class _TcpProxy:
    """A TCP proxy to PostgreSQL that a test can cut (a database outage) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}


async def test_a_database_outage_holds_the_messages_and_loses_nothing(
    wire: NatsWire | RabbitWire, tmp_path: Path, unique: str
) -> None:
    camera = f"ev-{unique}"
    proxy = _TcpProxy(("127.0.0.1", 5432))
    await proxy.start()
    with fresh_database("postgresql", tmp_path) as direct:
        store = Store(direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
                      connect_timeout_s=2)  # fmt: skip
        await asyncio.to_thread(store.migrate)  # the proxy runs on this loop
        try:
            async with events_function(wire, store, config(camera), settings(tmp_path)) as f:
                await proxy.cut()  # the database is gone
                for i in range(6):
                    await send(wire.broker, result(camera, i, T0 + i * S, [], event_id="e"), f"{i}")
                await wait_until(lambda: f.counts.retries >= 3, "retries while it is down")
                assert f.counts.acked == 0  # nothing acked before it is written
                await proxy.start()  # back, same port
                await wait_until(lambda: f.counts.acked == 6, "all written after the outage")
            got = await asyncio.to_thread(stored(store, "e"))  # the proxy runs on this loop
            assert got is not None and got["frames"]["detected"] == 6
            assert await wire.events_waiting() == 0
        finally:
            store.close()
            with contextlib.suppress(Exception):
                await proxy.cut()


# -- notifications ----------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("R", (_Receiver,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def mosquitto_up() -> None:
    try:
        socket.create_connection(("127.0.0.1", 1883), 2).close()
    except OSError as exc:
        pytest.fail(f"Mosquitto is not running on 127.0.0.1:1883 ({exc}); .ci/run starts it")


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


@contextlib.contextmanager
def mqtt_listener(topic: str) -> Iterator[list[tuple[str, Any]]]:
    mosquitto_up()
    got: list[tuple[str, Any]] = []
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: got.append((m.topic, _payload(m.payload)))
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        assert subscribed.wait(10), "MQTT subscription not confirmed"
        yield got
    finally:
        client.disconnect()
        client.loop_stop()


async def test_an_alert_reaches_the_broker_the_webhook_and_mqtt_with_links(
    wire: NatsWire | RabbitWire,
    store: Store,
    tmp_path: Path,
    unique: str,
    webhook_server: tuple[str, list[dict[str, Any]]],
) -> None:
    camera = f"ev-{unique}"
    ev = f"{camera}-{T0}"
    url, received = webhook_server
    mqtt_settings = MqttSettings(url="mqtt://127.0.0.1:1883", topic_prefix=f"tw{unique}")
    with mqtt_listener(f"tw{unique}/#") as heard:
        mqtt = MqttNotifier(mqtt_settings, f"test-{unique}")
        mqtt.start()
        webhook = Webhook(url, timeout_s=5, attempts=2)
        webhook.start()
        s = settings(tmp_path)
        try:
            await send(wire.broker, opened(camera, ev, T0), "open")
            for i in range(3):
                await send(
                    wire.broker, result(camera, i, T0 + i * S, [IN_YARD], event_id=ev), f"{i}"
                )
            async with events_function(wire, store, config(camera), s, webhook=webhook, mqtt=mqtt):
                await wait_until(lambda: len(received) == 1, "the webhook POST")
                await wait_until(
                    lambda: any(t.endswith("/alerts") for t, _ in heard), "the MQTT alert"
                )
            [(_, _, body)] = await wire.alerts(camera, 1)
        finally:
            await webhook.close()
            mqtt.close()
    alert = json.loads(body)
    assert received == [alert]  # the same document on every route
    assert (alert["kind"], alert["class"], alert["camera"], alert["event_id"]) == (
        "intrusion", "person", camera, ev)  # fmt: skip
    assert alert["seq"] == 1 and alert["frames"] == 2  # min_frames 2: the second frame
    assert alert["urls"]["event"] == f"http://console.example:8090/v1/events/{ev}"
    assert alert["urls"]["snapshot"].endswith(f"/v1/events/{ev}/snapshot.jpg")
    topics = {t: p for t, p in heard}
    assert topics[f"tw{unique}/{camera}/alerts"] == alert
    assert topics[f"tw{unique}/{camera}/events"]["type"] == "new"
    assert next(p for t, p in heard if t == f"tw{unique}/available") == "online"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_dead_notification_channels_never_hold_up_events(
    wire: NatsWire | RabbitWire, store: Store, tmp_path: Path, unique: str
) -> None:
    camera = f"ev-{unique}"
    with socket.socket() as silent:  # accepts (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        webhook = Webhook(f"http://127.0.0.1:{silent.getsockname()[1]}/h", timeout_s=2, attempts=5)
        webhook.start()
        mqtt = MqttNotifier(MqttSettings(url=f"mqtt://127.0.0.1:{_closed_port()}"), "dead")
        mqtt.start()
        try:
            for i in range(10):
                await send(
                    wire.broker, result(camera, i, T0 + i * S, [IN_YARD], event_id="e"), f"{i}"
                )
            s = settings(tmp_path)
            async with events_function(
                wire, store, config(camera), s, webhook=webhook, mqtt=mqtt
            ) as f:
                await wait_until(lambda: f.counts.acked == 10, "10 written and acked", 20)
                # Done while the webhook has not finished trying even the first alert.
                assert (webhook.delivered, webhook.failed) == (0, 0)
            assert f.counts.alerts >= 1
            assert len(await wire.alerts(camera, f.counts.alerts)) == f.counts.alerts
        finally:
            await webhook.close(drain_s=0.1)
            mqtt.close()
