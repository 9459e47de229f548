"""A result the broker refuses for good is dead-lettered with its reason, not retried for
ever; the frame's archive writes are kept (they are idempotent)."""

from __future__ import annotations

from pathlib import Path

import nats
from nats.js.api import StreamConfig

from functions.detector.worker import Detector
from tests import frames
from tests.detector_harness import (
    NatsWire,
    StandInModel,
    publish_frames,
    running,
    wait_until,
)
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CamerasFile
from tripwire.contract import Header
from tripwire.settings import DetectorSettings


async def _limit_message_size(url: str, stream: str, max_msg_size: int) -> None:
    """What an operator does to the results stream: lower its largest message."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config: StreamConfig = (await js.stream_info(stream)).config
        config.max_msg_size = max_msg_size
        await js.update_stream(config)
    finally:
        await nc.close()


async def test_a_result_over_the_stream_limit_is_dead_lettered_not_retried(
    nats_url: str, unique: str, tmp_path: Path
) -> None:
    camera = f"perm-{unique}"
    wire = NatsWire(nats_url, unique, [camera])
    await wire.open()
    archive = LocalArchive(tmp_path / "archive", fsync=False)
    await archive.ensure()
    try:
        # Every detections document is larger than 64 bytes: no result can ever be stored.
        await _limit_message_size(nats_url, wire.settings.results_stream, 64)
        sent = await publish_frames(wire.broker, camera, frames.moving_box_frames(3))
        settings = DetectorSettings(home=tmp_path, batch_size=4, fetch_wait_s=0.5)
        detector = Detector(settings, CamerasFile(), wire.broker, archive, StandInModel())
        async with running(detector):
            await wait_until(lambda: detector.counts.dead == 3, "3 dead letters", within=60)
        assert detector.counts.retries == 0 and detector.counts.acked == 0
        dead = await wire.dead(3)
        assert sorted(int(h[Header.SEQ]) for _, h, _ in dead) == [s.meta.seq for s in sent]
        for _, headers, body in dead:
            reason = headers[Header.DEAD_REASON]
            assert reason.startswith("publish: ") and "max_msg_size" in reason, reason
            assert body in {s.data for s in sent}
        assert await wire.waiting() == 0  # settled: nothing left to redeliver
        sample = detector.metrics.registry.get_sample_value
        assert sample("tripwire_detector_dead_letters_total", {"reason": "publish"}) == 3
    finally:
        await archive.close()
        await wire.close()
