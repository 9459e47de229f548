"""Several models on one motion stream, on both brokers (the session's real nats-server, the
machine's RabbitMQ): every model gets every frame of its cameras once, a stalled model's
backlog is bounded without stopping the others, and a model added later starts from new
frames. NATS: one durable consumer per model on an interest stream; RabbitMQ: one queue per
model bound to the exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import nats
import pika
import pytest

from console.live import open_live_broker
from tests.brokers.test_broker_nats import isolated
from tests.rabbitmq_admin import admin
from tripwire.brokers.jetstream import JetStreamBroker
from tripwire.brokers.protocol import Broker
from tripwire.brokers.rabbitmq import RabbitBroker
from tripwire.brokers.routes import MotionRoute, routes_of
from tripwire.brokers.settings import RabbitSettings
from tripwire.camera_config import parse_config
from tripwire.contract import FrameMeta, Header
from tripwire.errors import BrokerError
from tripwire.settings import BrokerSettings


def _frame(seq: int, camera: str = "cam-1") -> dict[str, str]:
    return FrameMeta(
        camera=camera,
        seq=seq,
        capture_ns=1_700_000_000_000_000_000 + seq,
        receive_ns=1_700_000_000_000_000_000 + seq,
        width=64,
        height=48,
        content_type="image/jpeg",
        motion_score=0.5,
    ).to_headers()


@dataclass
class Fan:
    """One broker's way to build adapters on names no other test shares, and to count what a
    model's consumer or queue holds right now."""

    kind: str
    url: str
    unique: str
    limit: int | None = None
    made: list[Broker] = field(default_factory=list)

    def broker(self, routes: Sequence[MotionRoute], model: str | None = None) -> Broker:
        made: Broker
        if self.kind == "nats":
            extra: dict[str, Any] = {} if self.limit is None else {"stream_max_msgs": self.limit}
            made = JetStreamBroker(self.url, isolated(self.unique, **extra), connect_timeout_s=10,
                                   publish_timeout_s=5, routes=routes, model=model)  # fmt: skip
        else:
            made = RabbitBroker(self.url, self.rabbit, connect_timeout_s=10, publish_timeout_s=5,
                                routes=routes, model=model)  # fmt: skip
        self.made.append(made)
        return made

    @property
    def rabbit(self) -> RabbitSettings:
        u = self.unique
        return RabbitSettings(exchange=f"test-{u}", queue=f"test-{u}.motion",
                              dead_letter_exchange=f"test-{u}.dlx",
                              dead_letter_queue=f"test-{u}.dead", max_length=self.limit or 10_000,
                              queue_type="classic")  # fmt: skip

    def subject(self, camera: str) -> str:
        return (
            f"t{self.unique}.motion.{camera}"
            if self.kind == "nats"
            else f"tripwire.motion.{camera}"
        )

    async def held(self, broker: Broker, model: str) -> int:
        """Frames waiting for ``model`` now (not the management API's 5 s statistics)."""
        if self.kind == "nats":
            return await broker.depth()
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            queue = f"{self.rabbit.queue}.{model}"
            frame = connection.channel().queue_declare(queue=queue, passive=True)
            return int(frame.method.message_count)
        finally:
            connection.close()

    async def stored(self) -> int | None:
        """NATS: frames the stream holds for all models together."""
        if self.kind != "nats":
            return None
        nc = await nats.connect(self.url)
        try:
            stream = isolated(self.unique).stream
            return (await nc.jetstream().stream_info(stream)).state.messages
        finally:
            await nc.close()

    async def close(self) -> None:
        for broker in self.made:
            await broker.close()
        if self.kind == "rabbitmq":
            queues = admin("GET", "queues/%2F") or []
            for queue in queues:
                if queue["name"].startswith(f"test-{self.unique}"):
                    admin("DELETE", f"queues/%2F/{quote(queue['name'], safe='')}")
            for exchange in (self.rabbit.exchange, self.rabbit.dead_letter_exchange):
                admin("DELETE", f"exchanges/%2F/{quote(exchange, safe='')}")


@pytest.fixture(params=["nats", "rabbitmq"])
async def fan(
    request: pytest.FixtureRequest, nats_url: str, rabbitmq_url: str, unique: str
) -> AsyncIterator[Callable[..., Fan]]:
    made: list[Fan] = []

    def build(limit: int | None = None) -> Fan:
        url = nats_url if request.param == "nats" else rabbitmq_url
        made.append(Fan(request.param, url, unique, limit))
        return made[-1]

    yield build
    for each in made:
        await each.close()


async def _publish(fan: Fan, broker: Broker, seqs: range, camera: str = "cam-1") -> None:
    for seq in seqs:
        await broker.publish(fan.subject(camera), b"jpeg", _frame(seq, camera))


async def _drain(broker: Broker) -> list[int]:
    """Every frame its consumer holds, acked, as sequence numbers in delivery order."""
    seqs: list[int] = []
    while batch := await broker.fetch(50, 0.5):
        for message in batch:
            seqs.append(int(message.headers[Header.SEQ]))
            await message.ack()
    return seqs


async def _connected(fan: Fan, routes: Sequence[MotionRoute], *models: str) -> list[Broker]:
    brokers = [fan.broker(routes, model) for model in models]
    for broker in brokers:
        await broker.connect()
    return brokers


async def test_every_model_gets_every_frame_once(fan: Callable[..., Fan]) -> None:
    f = fan()
    routes = [MotionRoute("coco"), MotionRoute("accident")]
    (gateway,) = await _connected(f, routes, None)  # declares both before the first frame
    await _publish(f, gateway, range(1, 21))
    coco, accident = await _connected(f, routes, "coco", "accident")
    assert await f.held(coco, "coco") == 20 and await f.held(accident, "accident") == 20
    assert await _drain(coco) == list(range(1, 21))
    if f.kind == "nats":  # interest retention: kept until the last model acked them
        assert await f.stored() == 20
    assert await _drain(accident) == list(range(1, 21))
    assert await f.stored() in (0, None)
    assert await f.held(coco, "coco") == 0 and await f.held(accident, "accident") == 0


async def test_a_model_serves_only_its_cameras(fan: Callable[..., Fan]) -> None:
    f = fan()
    routes = [MotionRoute("all"), MotionRoute("gate", ("cam-2",))]
    (gateway,) = await _connected(f, routes, None)
    await _publish(f, gateway, range(1, 6), "cam-1")
    await _publish(f, gateway, range(6, 9), "cam-2")
    every, gate = await _connected(f, routes, "all", "gate")
    assert await _drain(gate) == [6, 7, 8]
    assert await _drain(every) == list(range(1, 9))


async def test_a_stalled_model_is_bounded_and_catches_up(fan: Callable[..., Fan]) -> None:
    f = fan(limit=10)
    routes = [MotionRoute("fire"), MotionRoute("coco"), MotionRoute("accident")]
    (gateway,) = await _connected(f, routes, None)
    fire, coco, accident = await _connected(f, routes, "fire", "coco", "accident")
    seen: dict[str, list[int]] = {"fire": [], "coco": []}
    for start in range(1, 31, 5):  # "accident" is frozen: it reads nothing meanwhile
        await _publish(f, gateway, range(start, start + 5))  # never refused
        seen["fire"] += await _drain(fire)
        seen["coco"] += await _drain(coco)
        assert await f.held(accident, "accident") <= 10
    assert seen == {"fire": list(range(1, 31)), "coco": list(range(1, 31))}
    assert await f.held(accident, "accident") == 10
    # Back: it catches up on what was held for it, the newest 10 frames.
    assert await _drain(accident) == list(range(21, 31))
    assert await f.stored() in (0, None)


async def test_a_model_added_later_starts_from_new_frames(fan: Callable[..., Fan]) -> None:
    f = fan()
    before = [MotionRoute("coco")]
    (gateway,) = await _connected(f, before, None)
    await _publish(f, gateway, range(1, 6))
    after = [*before, MotionRoute("fire")]
    (restarted,) = await _connected(f, after, None)
    await _publish(f, restarted, range(6, 9))
    coco, fire = await _connected(f, after, "coco", "fire")
    assert await _drain(fire) == [6, 7, 8]
    assert await _drain(coco) == list(range(1, 9))


async def test_one_model_keeps_the_back_pressure(fan: Callable[..., Fan]) -> None:
    """Without a models section nothing changes: one consumer, a full queue refuses frames."""
    f = fan(limit=3)
    (broker,) = await _connected(f, [MotionRoute()], None)
    await _publish(f, broker, range(1, 4))
    with pytest.raises(Exception, match=r"maximum messages|is full"):
        await _publish(f, broker, range(4, 5))
    assert await _drain(broker) == [1, 2, 3]


async def test_a_listener_declares_no_models_queue(fan: Callable[..., Fan]) -> None:
    """``routes=()`` (the wake controller): no default consumer or queue is left behind to
    collect frames nobody reads."""
    f = fan()
    (listener,) = await _connected(f, (), None)
    if f.kind == "nats":
        await listener.publish(f.subject("cam-1"), b"x", _frame(1))
        nc = await nats.connect(f.url)
        try:
            info = await nc.jetstream().stream_info(isolated(f.unique).stream)
        finally:
            await nc.close()
        assert info.state.consumer_count == 0 and info.state.messages == 0  # nobody wants it
    else:
        assert admin("GET", f"queues/%2F/{quote(f.rabbit.queue, safe='')}") is None


async def test_a_models_own_queue_bound_on_rabbitmq(rabbitmq_url: str, unique: str) -> None:
    """``max_queue``: that model's queue keeps its own newest frames (x-max-length), the
    others keep the shared ``max_length``."""
    f = Fan("rabbitmq", rabbitmq_url, unique, limit=10)
    try:
        routes = [MotionRoute("fire", max_queue=4), MotionRoute("coco")]
        (gateway,) = await _connected(f, routes, None)
        fire, coco = await _connected(f, routes, "fire", "coco")
        await _publish(f, gateway, range(1, 13))  # never refused: both are drop-head
        assert await f.held(fire, "fire") == 4 and await f.held(coco, "coco") == 10
        for model, limit in (("fire", 4), ("coco", 10)):
            queue = admin("GET", f"queues/%2F/{quote(f.rabbit.queue + '.' + model, safe='')}")
            assert queue is not None and queue["arguments"]["x-max-length"] == limit
        assert await _drain(fire) == list(range(9, 13))
        assert await _drain(coco) == list(range(3, 13))
    finally:
        await f.close()


async def test_the_consoles_adapter_leaves_no_default_consumer_behind(
    fan: Callable[..., Fan],
) -> None:
    """The console (live updates, queue depth) on a models stream: it declares the models'
    consumers or queues, not the default one that would keep a copy of every frame for no
    reader; its depth names no single queue (several models) instead of measuring that one."""
    f = fan()
    config = parse_config({
        "cameras": [{"id": "cam-1", "token_hash": "sha256:" + "ab" * 32}],
        "models": [{"name": "coco", "weights": "a.pt"}, {"name": "accident", "weights": "b.pt"}],
    })  # fmt: skip
    routes = routes_of(config)
    (gateway,) = await _connected(f, routes, None)
    settings = BrokerSettings(nats=isolated(f.unique), rabbitmq=f.rabbit)
    console = open_live_broker(settings, f.url, config)
    f.made.append(console)
    await console.connect()
    await _publish(f, gateway, range(1, 4))
    with pytest.raises(BrokerError, match="name the model"):
        await console.depth()
    coco, accident = await _connected(f, routes, "coco", "accident")
    assert await _drain(coco) == [1, 2, 3] and await _drain(accident) == [1, 2, 3]
    if f.kind == "nats":
        nc = await nats.connect(f.url)
        try:
            stream = isolated(f.unique).stream
            names = {c.name for c in await nc.jetstream().consumers_info(stream)}
        finally:
            await nc.close()
        assert names == {"detector-coco", "detector-accident"}
        assert await f.stored() == 0  # no consumer holds them for nobody
    else:
        assert admin("GET", f"queues/%2F/{quote(f.rabbit.queue, safe='')}") is None
