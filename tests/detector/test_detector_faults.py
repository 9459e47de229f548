"""Nothing is lost: a detector killed with SIGKILL, an S3 outage mid-run, SIGTERM mid-batch.

The kill and SIGTERM tests run ``tripwire detector`` as a real subprocess (the untrained
``yolo11n.yaml``: the frames only need to take some time) against the session NATS server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from functions.detector.worker import Detector
from tests import frames
from tests.detector_harness import (
    YAML,
    DetectorProcess,
    NatsWire,
    StandInModel,
    nats_consumer_counts,
    need_ultralytics,
    publish_frames,
    running,
    settings_env,
    wait_until,
)
from tests.s3_server import SeaweedS3
from tripwire.archive import ArchiveSettings, open_archive
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CamerasFile
from tripwire.settings import DetectorSettings


@pytest.fixture(scope="module")
def ultralytics_present() -> None:
    need_ultralytics()


def broker_env(wire: NatsWire) -> dict[str, str]:
    return {
        "TRIPWIRE_BROKER__URL": wire.url,
        **settings_env("TRIPWIRE_BROKER__NATS__", wire.settings),
    }


def s3_env(server: SeaweedS3, bucket: str) -> dict[str, str]:
    return {
        "TRIPWIRE_ARCHIVE__BACKEND": "s3",
        "TRIPWIRE_ARCHIVE__S3__ENDPOINT": server.endpoint,
        "TRIPWIRE_ARCHIVE__S3__BUCKET": bucket,
        "TRIPWIRE_ARCHIVE__S3__ACCESS_KEY": server.access_key,
        "TRIPWIRE_ARCHIVE__S3__SECRET_KEY": server.secret_key,
        "TRIPWIRE_ARCHIVE__S3__SECURE": "false",
    }


# -- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("ultralytics_present")  # a real detector process
async def test_kill_9_mid_stream_then_restart_archives_every_frame_exactly_once(
    nats_url: str, unique: str, seaweed_s3: SeaweedS3, tmp_path: Path
) -> None:
    camera = f"k9-{unique}"
    bucket = f"k9-{unique}"
    n = 40
    # A short ack wait: what the killed detector held comes back after 3 s, not 30.
    wire = NatsWire(nats_url, unique, [camera], ack_wait_s=3)
    await wire.open()
    raw = seaweed_s3.client()
    raw.make_bucket(bucket)

    def listed(prefix: str) -> list[str]:
        objects = raw.list_objects(bucket, prefix=f"{prefix}/{camera}/", recursive=True)
        return [o.object_name for o in objects]

    async def archived() -> int:
        return len(await asyncio.to_thread(listed, "frames"))

    async def some_archived() -> bool:
        return await archived() > 0

    env = {
        **broker_env(wire),
        **s3_env(seaweed_s3, bucket),
        "TRIPWIRE_BATCH_SIZE": "4",
        "TRIPWIRE_FETCH_WAIT_S": "0.2",
    }
    args = ["--weights", YAML]
    home = tmp_path / "home"
    first = DetectorProcess(home, env, args, name="first")
    second = DetectorProcess(home, env, args, name="second")
    try:
        sent = await publish_frames(wire.broker, camera, frames.moving_box_frames(n))
        first.start()
        await wait_until(some_archived, "the first frames archived", within=90)
        first.kill()  # SIGKILL: no goodbye, unacked frames stay with the broker
        at_kill = await archived()
        assert 0 < at_kill < n, f"{at_kill} archived when killed; want some, not all"

        second.start()
        await second.ready()
        await wait_until(wire.drained, "queue depth 0", within=120)
        second.signal(signal.SIGTERM)
        assert await second.wait(30) == 0
    finally:
        first.kill()
        second.kill()
        await wire.close()

    frame_keys = await asyncio.to_thread(listed, "frames")
    detection_keys = await asyncio.to_thread(listed, "detections")
    # Exactly N distinct objects each: no key missing, nothing extra (deterministic keys:
    # a redelivered frame overwrote the object the killed detector had written).
    assert sorted(frame_keys) == sorted(s.frame_key for s in sent)
    assert sorted(detection_keys) == sorted(s.detections_key for s in sent)
    for s in sent:
        response = raw.get_object(bucket, s.detections_key)
        try:
            doc = json.loads(response.read())
        finally:
            response.close()
        assert (doc["seq"], doc["archive"]["frame"]) == (s.meta.seq, s.frame_key)
    counts = second.counts()
    assert counts["dead"] == 0
    # The second detector redid what the first had not acked, and possibly a few frames the
    # first had archived but not yet acked when it died.
    assert n - at_kill <= counts["acked"] <= n
    print(
        f"\n[kill -9] {n} published; {at_kill} frames archived when the first detector was "
        f"killed; the second acked {counts['acked']} (incl. {counts['acked'] - (n - at_kill)} "
        f"archived-but-unacked, redone); bucket now holds {len(frame_keys)} frames + "
        f"{len(detection_keys)} detections under {camera} ({len(set(frame_keys))} distinct)"
    )


# -- S3 outage -------------------------------------------------------------------------------


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[SeaweedS3]:
    """A SeaweedFS of this test alone: it is stopped and restarted mid-run."""
    with SeaweedS3.start(tmp_path / "weed") as server:
        yield server


async def test_s3_outage_holds_every_frame_until_it_is_back(
    nats_url: str, unique: str, own_s3: SeaweedS3, tmp_path: Path
) -> None:
    camera = f"s3o-{unique}"
    n = 16
    s3 = own_s3.settings(f"out-{unique}", connect_timeout_s=1, read_timeout_s=5)
    # Few, fast adapter retries: the outage reaches the detector's own hold-and-retry loop.
    archive_settings = ArchiveSettings(
        backend="s3", s3=s3, retry_attempts=2, retry_max_s=2, retry_backoff_s=0.05
    )
    archive = open_archive(archive_settings, tmp_path)
    await archive.ensure()
    wire = NatsWire(nats_url, unique, [camera])
    await wire.open()
    settings = DetectorSettings(home=tmp_path, batch_size=4, batch_wait_ms=100, fetch_wait_s=0.2)
    detector = Detector(settings, CamerasFile(), wire.broker, archive, StandInModel())
    c = detector.counts
    try:
        sent = await publish_frames(wire.broker, camera, frames.moving_box_frames(n))
        async with running(detector, stop_within=60):
            await wait_until(lambda: c.acked >= 4, "the first batch acked")
            await asyncio.to_thread(own_s3.stop)  # mid-run: frames are in flight
            stopped = time.monotonic()
            # Past the first failed round, frames written just before the stop are acked.
            await wait_until(lambda: c.retries >= 1, "the detector to meet the outage")
            first = c.retries
            await wait_until(lambda: c.retries > first, "a second round of retries")
            acked, dead = c.acked, c.dead
            held = await wire.waiting()
            await wait_until(lambda: c.retries >= first + 8, "more retries", within=60)
            # While S3 is down: no ack, no dead letter, the queue holds the rest.
            assert (c.acked, c.dead) == (acked, dead) == (acked, 0)
            assert held == await wire.waiting() == n - acked
            outage_retries = c.retries
            await asyncio.to_thread(own_s3.restart)
            down_s = time.monotonic() - stopped
            await wait_until(lambda: c.acked == n, f"all {n} acked after S3 came back", 90)
            await wait_until(wire.drained, "queue depth 0")
        frame_keys = await archive.list(f"frames/{camera}/")
        detection_keys = await archive.list(f"detections/{camera}/")
        dead_letters = await wire.dead(0)
    finally:
        await archive.close()
        await wire.close()

    assert frame_keys == sorted(s.frame_key for s in sent)
    assert detection_keys == sorted(s.detections_key for s in sent)
    assert (c.dead, dead_letters) == (0, [])
    errors = detector.metrics.registry.get_sample_value("tripwire_detector_archive_errors_total")
    assert errors is not None and errors >= outage_retries
    print(
        f"\n[S3 outage] {n} published; {acked} acked before S3 stopped; while down "
        f"({down_s:.1f}s) acked stayed {acked}, depth stayed {held} = {n} - {acked}, "
        f"{outage_retries} archive retries, 0 dead; after restart {c.acked} acked, "
        f"{len(frame_keys)} frames + {len(detection_keys)} detections archived, depth 0"
    )


# -- SIGTERM mid-batch -----------------------------------------------------------------------


@pytest.fixture
async def local_archive_of(tmp_path: Path) -> AsyncIterator[LocalArchive]:
    archive = LocalArchive(tmp_path / "home" / "archive")
    yield archive
    await archive.close()


@pytest.mark.usefixtures("ultralytics_present")  # a real detector process
async def test_sigterm_mid_batch_finishes_or_returns_every_frame(
    nats_url: str, unique: str, tmp_path: Path, local_archive_of: LocalArchive
) -> None:
    camera = f"term-{unique}"
    n = 24
    stop_timeout_s = 20
    wire = NatsWire(nats_url, unique, [camera])
    await wire.open()
    env = {
        **broker_env(wire),
        "TRIPWIRE_BATCH_SIZE": "8",
        "TRIPWIRE_BATCH_WAIT_MS": "200",
        "TRIPWIRE_FETCH_WAIT_S": "0.2",
        "TRIPWIRE_STOP_TIMEOUT_S": str(stop_timeout_s),
    }
    args = ["--weights", YAML]
    home = tmp_path / "home"  # the local archive: <home>/archive
    first = DetectorProcess(home, env, args, name="first")
    second = DetectorProcess(home, env, args, name="second")

    async def archived() -> int:
        return len(await local_archive_of.list(f"frames/{camera}/"))

    async def in_hand() -> bool:
        counts = await nats_consumer_counts(nats_url, wire.settings)
        return counts is not None and counts[1] > 0

    try:
        sent = await publish_frames(wire.broker, camera, frames.moving_box_frames(n))
        first.start()
        await wait_until(in_hand, "the first batch fetched", within=90)
        first.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert await first.wait(stop_timeout_s + 5) == 0
        took = time.monotonic() - signalled
        assert took < stop_timeout_s
        first_counts = first.counts()
        after_first = await archived()
        pending, unacked = await nats_consumer_counts(nats_url, wire.settings) or (-1, -1)
        # Each frame is either archived and acked, or back on the queue; none is both.
        assert after_first == first_counts["acked"]
        assert pending + unacked + after_first == n
        assert first_counts["acked"] + pending + unacked == n

        second.start()
        await wait_until(wire.drained, "queue depth 0", within=120)
        second.signal(signal.SIGTERM)
        assert await second.wait(stop_timeout_s + 5) == 0
    finally:
        first.kill()
        second.kill()
        await wire.close()

    second_counts = second.counts()
    keys = await local_archive_of.list(f"frames/{camera}/")
    assert keys == sorted(s.frame_key for s in sent)
    # None done twice: the two detectors' acks add up to N exactly.
    assert first_counts["acked"] + second_counts["acked"] == n
    assert first_counts["dead"] == second_counts["dead"] == 0
    print(
        f"\n[SIGTERM] {n} published; first detector exited 0 in {took:.1f}s "
        f"(bound {stop_timeout_s}s): acked {first_counts['acked']}, released "
        f"{first_counts['released']}; archived {after_first} + on the queue {pending + unacked} "
        f"= {n}; second acked {second_counts['acked']}; {len(keys)} frames archived"
    )
