"""Several models on one motion stream (NATS JetStream, the session's real nats-server):
every model gets every frame of its cameras once, a stalled model's backlog is bounded by the
stream's limits without stopping the others, and a model added later starts from new frames."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import nats
import pytest

from tests.test_broker_nats import isolated
from tripwire.brokers.jetstream import JetStreamBroker, NatsSettings
from tripwire.brokers.routes import MotionRoute
from tripwire.contract import FrameMeta, Header

Make = Callable[..., JetStreamBroker]


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


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[JetStreamBroker] = []

    def build(
        url: str, settings: NatsSettings, routes: Sequence[MotionRoute], model: str | None = None
    ) -> JetStreamBroker:
        broker = JetStreamBroker(
            url,
            settings,
            connect_timeout_s=10,
            publish_timeout_s=5,
            routes=routes,
            model=model,
        )
        made.append(broker)
        return broker

    yield build
    for broker in made:
        await broker.close()


async def _publish(
    broker: JetStreamBroker, unique: str, seqs: range, camera: str = "cam-1"
) -> None:
    for seq in seqs:
        await broker.publish(f"t{unique}.motion.{camera}", b"jpeg", _frame(seq, camera))


async def _drain(broker: JetStreamBroker) -> list[int]:
    """Every frame its consumer holds, acked, as sequence numbers in delivery order."""
    seqs: list[int] = []
    while batch := await broker.fetch(50, 0.5):
        for message in batch:
            seqs.append(int(message.headers[Header.SEQ]))
            await message.ack()
    return seqs


async def _stream_messages(url: str, stream: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


async def test_every_model_gets_every_frame_once(nats_url: str, unique: str, make: Make) -> None:
    settings = isolated(unique)
    routes = [MotionRoute("coco"), MotionRoute("accident")]
    gateway = make(nats_url, settings, routes)
    await gateway.connect()  # declares both consumers before the first frame
    await _publish(gateway, unique, range(1, 21))
    coco, accident = (make(nats_url, settings, routes, r.model) for r in routes)
    for broker in (coco, accident):
        await broker.connect()
    assert await coco.depth() == 20 and await accident.depth() == 20
    assert await _drain(coco) == list(range(1, 21))
    # Interest retention: the frames stay until the last model acked them.
    assert await _stream_messages(nats_url, settings.stream) == 20
    assert await _drain(accident) == list(range(1, 21))
    assert await _stream_messages(nats_url, settings.stream) == 0
    assert await coco.depth() == 0 and await accident.depth() == 0


async def test_a_model_serves_only_its_cameras(nats_url: str, unique: str, make: Make) -> None:
    settings = isolated(unique)
    routes = [MotionRoute("all"), MotionRoute("gate", ("cam-2",))]
    gateway = make(nats_url, settings, routes)
    await gateway.connect()
    await _publish(gateway, unique, range(1, 6), "cam-1")
    await _publish(gateway, unique, range(6, 9), "cam-2")
    every, gate = make(nats_url, settings, routes, "all"), make(nats_url, settings, routes, "gate")
    await every.connect()
    await gate.connect()
    assert await _drain(gate) == [6, 7, 8]
    assert await _drain(every) == list(range(1, 9))


async def test_a_stalled_model_is_bounded_and_catches_up(
    nats_url: str, unique: str, make: Make
) -> None:
    settings = isolated(unique, stream_max_msgs=10)
    routes = [MotionRoute("fire"), MotionRoute("coco"), MotionRoute("accident")]
    gateway = make(nats_url, settings, routes)
    await gateway.connect()
    fire, coco, accident = (make(nats_url, settings, routes, r.model) for r in routes)
    for broker in (fire, coco, accident):
        await broker.connect()
    seen: dict[str, list[int]] = {"fire": [], "coco": []}
    for start in range(1, 31, 5):  # "accident" is frozen: it reads nothing meanwhile
        await _publish(gateway, unique, range(start, start + 5))  # never refused
        seen["fire"] += await _drain(fire)
        seen["coco"] += await _drain(coco)
        assert await accident.depth() <= 10
        assert await _stream_messages(nats_url, settings.stream) <= 10
    assert seen == {"fire": list(range(1, 31)), "coco": list(range(1, 31))}
    assert await accident.depth() == 10
    # Back: it catches up on what the stream held for it, the newest 10 frames.
    assert await _drain(accident) == list(range(21, 31))
    assert await _stream_messages(nats_url, settings.stream) == 0


async def test_a_model_added_later_starts_from_new_frames(
    nats_url: str, unique: str, make: Make
) -> None:
    settings = isolated(unique)
    before = [MotionRoute("coco")]
    gateway = make(nats_url, settings, before)
    await gateway.connect()
    await _publish(gateway, unique, range(1, 6))
    after = [*before, MotionRoute("fire")]
    restarted = make(nats_url, settings, after)
    await restarted.connect()
    await _publish(restarted, unique, range(6, 9))
    coco, fire = make(nats_url, settings, after, "coco"), make(nats_url, settings, after, "fire")
    await coco.connect()
    await fire.connect()
    assert await _drain(fire) == [6, 7, 8]
    assert await _drain(coco) == list(range(1, 9))


async def test_one_model_keeps_the_work_queue_back_pressure(
    nats_url: str, unique: str, make: Make
) -> None:
    """Without a models section nothing changes: one consumer, a full stream refuses frames."""
    settings = isolated(unique, stream_max_msgs=3)
    broker = make(nats_url, settings, [MotionRoute()])
    await broker.connect()
    await _publish(broker, unique, range(1, 4))
    with pytest.raises(Exception, match="maximum messages"):
        await _publish(broker, unique, range(4, 5))
    assert await _drain(broker) == [1, 2, 3]
