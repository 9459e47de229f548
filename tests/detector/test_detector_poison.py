"""Poison messages are dead-lettered once, with their reason, on both brokers; good frames of
the same batch go through."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from functions.detector.worker import Detector
from tests import frames
from tests.detector_harness import (
    NatsWire,
    RabbitWire,
    StandInModel,
    documents,
    meta_for,
    open_wire,
    publish_frames,
)
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CamerasFile
from tripwire.contract import Header, motion_subject
from tripwire.settings import DetectorSettings

MAX_DELIVERIES = 2
CASE = "X-Case"  # marks each poison message; headers travel with the dead letter
# What each poison message is, and the reason its dead letter must give.
REASONS = {
    "missing-header": "bad headers: missing header Tripwire-Camera",
    "bad-header": "bad headers: header Tripwire-Seq: 'abc' is not an integer",
    "undecodable": "not decodable: image/jpeg body of 4100 bytes",
    "empty-body": "empty body",
    "redelivered": f"delivered 3 times (max_deliveries {MAX_DELIVERIES})",
}


@pytest.fixture(params=["nats", "rabbitmq"])
async def wire(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[NatsWire | RabbitWire]:
    async with open_wire(request, unique, f"poi-{unique}") as made:
        yield made


async def test_poison_is_dead_lettered_with_its_reason_and_never_retried(
    wire: NatsWire | RabbitWire, tmp_path: Path, unique: str
) -> None:
    camera = f"poi-{unique}"
    subject = motion_subject(camera)
    broker = wire.broker
    good = frames.moving_box_frames(3)
    jpeg = good[0]

    # Delivered twice and nak'ed by hand: its next delivery is the third, over the limit.
    headers = meta_for(camera, 100, jpeg, capture_ns=1).to_headers()
    await broker.publish(subject, jpeg, {**headers, CASE: "redelivered"})
    for delivery in (1, 2):
        [message] = await broker.fetch(1, 5.0)
        assert message.deliveries == delivery
        await message.nak()

    def poison_headers(seq: int, **changes: str) -> dict[str, str]:
        headers = meta_for(camera, seq, jpeg, capture_ns=seq).to_headers()
        return {**headers, **changes}

    missing = poison_headers(101, **{CASE: "missing-header"})
    del missing[Header.CAMERA]
    await broker.publish(subject, jpeg, missing)
    await broker.publish(
        subject, jpeg, poison_headers(102, **{Header.SEQ: "abc", CASE: "bad-header"})
    )
    garbage = b"\xff\xd8\xff\xe0" + os.urandom(4096)  # JPEG magic, then noise
    await broker.publish(subject, garbage, poison_headers(103, **{CASE: "undecodable"}))
    await broker.publish(subject, b"", poison_headers(104, **{CASE: "empty-body"}))
    sent = await publish_frames(broker, camera, good)

    settings = DetectorSettings(
        home=tmp_path, batch_size=8, batch_wait_ms=3000, fetch_wait_s=2.0,
        max_deliveries=MAX_DELIVERIES,
    )  # fmt: skip
    archive = LocalArchive(tmp_path / "archive", fsync=False)
    await archive.ensure()
    detector = Detector(settings, CamerasFile(), broker, archive, StandInModel())
    try:
        batch = await detector.collect()
        assert len(batch) == 8, "all eight in one batch"
        times = await detector.process_batch(batch)
        assert times.frames == 3  # only the good frames reached the model
        assert (detector.counts.acked, detector.counts.dead) == (3, 5)
        assert await detector.collect() == []  # nothing comes back: never retried
        assert len(await archive.list(f"frames/{camera}/")) == 3
    finally:
        await archive.close()

    dead = await wire.dead(5)
    assert len(dead) == 5, "each poison message dead-lettered exactly once"
    reasons = {h[CASE]: h[Header.DEAD_REASON] for _, h, _ in dead}
    assert reasons == REASONS
    for dead_subject, h, body in dead:
        assert h[Header.DEAD_SUBJECT] == subject
        assert body == {"undecodable": garbage, "empty-body": b""}.get(h[CASE], jpeg)
        if wire.kind == "nats":
            assert dead_subject == f"{wire.settings.dead_prefix}.{subject}"  # type: ignore[union-attr]
    results = documents(await wire.results(camera, 3))
    assert sorted(r["seq"] for r in results) == [s.meta.seq for s in sent]
    assert await wire.waiting() == 0
    sample = detector.metrics.registry.get_sample_value
    for kind, count in {"bad": 2, "not": 1, "empty": 1, "delivered": 1}.items():
        assert sample("tripwire_detector_dead_letters_total", {"reason": kind}) == count
    print(f"\n[poison on {wire.kind}]")
    for case, reason in sorted(reasons.items()):
        print(f"  {case:<15} -> {Header.DEAD_REASON}: {reason}")
