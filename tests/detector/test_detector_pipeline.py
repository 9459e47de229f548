"""The detector end to end on real servers: publish -> detector -> archive, result, ack.

Plumbing runs the untrained ``yolo11n.yaml`` (it finds nothing, which is all plumbing needs);
real detections come from the TFLite COCO model in ../shared/data on ultralytics' bus.jpg,
through both brokers and the S3 archive on SeaweedFS.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from functions.detector.results import RESULT_SCHEMA
from functions.detector.worker import Detector
from tests import frames
from tests.detector_harness import (
    TFLITE,
    NatsWire,
    RabbitWire,
    StandInModel,
    bus_jpeg,
    documents,
    gray_jpeg,
    labels,
    model,
    open_wire,
    publish_frames,
    running,
    wait_until,
)
from tests.s3_server import SeaweedS3
from tripwire.archive import Archive, ArchiveSettings, open_archive
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CamerasFile
from tripwire.contract import Header
from tripwire.settings import DetectorSettings


def detector_settings(home: Path, **overrides: Any) -> DetectorSettings:
    values: dict[str, Any] = {
        "home": home,
        "batch_size": 4,
        "batch_wait_ms": 100,
        "fetch_wait_s": 0.2,
    }
    return DetectorSettings(**{**values, **overrides})


@pytest.fixture
async def nats_wire(nats_url: str, unique: str) -> AsyncIterator[NatsWire]:
    wire = NatsWire(nats_url, unique, [f"cam-{unique}"])
    await wire.open()
    yield wire
    await wire.close()


async def settle(wire: NatsWire, detector: Detector, count: int) -> None:
    """Wait until ``count`` frames are acked and nothing is left on the queue."""
    await wait_until(lambda: detector.counts.acked >= count, f"{count} frames acked")
    await wait_until(lambda: _zero(wire), "queue depth 0")


async def _zero(wire: NatsWire) -> bool:
    return await wire.waiting() == 0


async def test_every_frame_is_archived_published_and_acked(
    nats_wire: NatsWire, local_archive: LocalArchive, tmp_path: Path, unique: str
) -> None:
    camera = f"cam-{unique}"
    n = 10  # batches of 4, 4 and 2
    detector = Detector(
        detector_settings(tmp_path), CamerasFile(), nats_wire.broker, local_archive, StandInModel()
    )
    sent = await publish_frames(nats_wire.broker, camera, frames.moving_box_frames(n))

    async with running(detector):
        await settle(nats_wire, detector, n)

    assert (detector.counts.acked, detector.counts.dead) == (n, 0)
    assert await local_archive.list(f"frames/{camera}/") == sorted(s.frame_key for s in sent)
    assert await local_archive.list(f"detections/{camera}/") == sorted(
        s.detections_key for s in sent
    )
    results = await nats_wire.results(camera, n)
    assert len(results) == n, "one result per frame, no more"
    by_seq = {json.loads(body)["seq"]: (json.loads(body), body) for _, _, body in results}
    assert sorted(by_seq) == list(range(n))
    for s in sent:
        doc, body = by_seq[s.meta.seq]
        assert await local_archive.get(s.frame_key) == s.data  # the camera's bytes, untouched
        assert await local_archive.get(s.detections_key) == body  # archived = published
        assert doc["schema"] == RESULT_SCHEMA
        assert (doc["camera"], doc["capture_ns"]) == (camera, s.meta.capture_ns)
        assert (doc["width"], doc["height"]) == (1280, 720)
        assert doc["archive"] == {"frame": s.frame_key, "detections": s.detections_key}
        assert doc["model"]["name"] == "stand-in" and doc["model"]["untrained"] is True
        assert doc["boxes"] == [] and doc["label"] is None
        assert doc["inference_ms"] > 0
    _, headers, _ = results[0]
    assert headers[Header.CAMERA] == camera
    assert headers[Header.CONTENT_TYPE] == "application/json"


async def test_keep_every_nth_archives_only_those_frames(
    nats_wire: NatsWire, local_archive: LocalArchive, tmp_path: Path, unique: str
) -> None:
    camera = f"cam-{unique}"
    n = 7
    settings = detector_settings(tmp_path, keep="every_nth", keep_every_n=3)
    detector = Detector(settings, CamerasFile(), nats_wire.broker, local_archive, StandInModel())
    sent = await publish_frames(nats_wire.broker, camera, frames.moving_box_frames(n))

    async with running(detector):
        await settle(nats_wire, detector, n)

    kept = [s for s in sent if s.meta.seq % 3 == 0]  # seq 0, 3, 6
    assert await local_archive.list(f"frames/{camera}/") == sorted(s.frame_key for s in kept)
    # Detections are archived for every frame, whatever the frame policy.
    assert len(await local_archive.list(f"detections/{camera}/")) == n
    for doc in documents(await nats_wire.results(camera, n)):
        expected = sent[doc["seq"]].frame_key if doc["seq"] % 3 == 0 else None
        assert doc["archive"]["frame"] == expected


async def test_keep_detections_archives_only_frames_with_boxes(
    nats_wire: NatsWire, local_archive: LocalArchive, tmp_path: Path, unique: str, shared_data: Path
) -> None:
    camera = f"cam-{unique}"
    settings = detector_settings(tmp_path, keep="detections")
    coco = model(TFLITE, task="detect")
    detector = Detector(settings, CamerasFile(), nats_wire.broker, local_archive, coco)
    bus, blank = bus_jpeg(), gray_jpeg()
    sent = await publish_frames(nats_wire.broker, camera, [bus, blank, bus, blank])

    async with running(detector):
        await settle(nats_wire, detector, len(sent))

    with_boxes = [s for s in sent if s.data == bus]
    assert await local_archive.list(f"frames/{camera}/") == sorted(s.frame_key for s in with_boxes)
    for doc in documents(await nats_wire.results(camera, len(sent))):
        assert bool(doc["boxes"]) == (doc["archive"]["frame"] is not None)
        assert bool(doc["boxes"]) == (sent[doc["seq"]].data == bus)


# -- bus.jpg through the whole path, on each broker, archived to S3 ---------------------------


@pytest.fixture(params=["nats", "rabbitmq"])
async def wire(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[NatsWire | RabbitWire]:
    async with open_wire(request, unique, f"bus-{unique}") as made:
        yield made


@pytest.fixture
async def s3_archive(seaweed_s3: SeaweedS3, unique: str) -> AsyncIterator[Archive]:
    s3 = seaweed_s3.settings(f"det-{unique}")
    archive = open_archive(ArchiveSettings(backend="s3", s3=s3), Path("."))
    await archive.ensure()
    yield archive
    await archive.close()


async def test_bus_end_to_end_finds_people_and_the_bus(
    wire: NatsWire | RabbitWire,
    s3_archive: Archive,
    seaweed_s3: SeaweedS3,
    tmp_path: Path,
    unique: str,
    shared_data: Path,
) -> None:
    camera = f"bus-{unique}"
    coco = model(TFLITE, task="detect")
    detector = Detector(detector_settings(tmp_path), CamerasFile(), wire.broker, s3_archive, coco)
    [sent] = await publish_frames(wire.broker, camera, [bus_jpeg()])

    async with running(detector):
        [(subject, headers, body)] = await wire.results(camera, 1)
        await wait_until(lambda: detector.counts.acked == 1, "the frame acked")

    doc = json.loads(body)
    found = labels(doc)
    assert found.count("person") >= 4, found
    assert "bus" in found, found
    assert subject == f"tripwire.detections.{camera}"
    assert headers[Header.CAMERA] == camera
    assert doc["archive"] == {"frame": sent.frame_key, "detections": sent.detections_key}
    assert doc["model"]["name"] == "yolov8n_int8" and doc["model"]["untrained"] is False
    for box in doc["boxes"]:
        x1, y1, x2, y2 = box["xyxy"]
        assert 0 <= x1 < x2 <= 810 and 0 <= y1 < y2 <= 1080  # full-frame pixels of bus.jpg
    # What is in the bucket, read around the adapter: the very bytes published.
    raw = seaweed_s3.client()
    bucket = f"det-{unique}"
    frame_object = raw.get_object(bucket, sent.frame_key)
    try:
        assert frame_object.read() == sent.data
        assert frame_object.headers["Content-Type"] == "image/jpeg"
    finally:
        frame_object.close()
    json_object = raw.get_object(bucket, sent.detections_key)
    try:
        assert json_object.read() == body
        assert json_object.headers["Content-Type"] == "application/json"
    finally:
        json_object.close()
    listed = sorted(o.object_name for o in raw.list_objects(bucket, recursive=True))
    assert listed == sorted([sent.detections_key, sent.frame_key])

    print(f"\n[bus.jpg on {wire.kind}] {len(doc['boxes'])} boxes, {doc['inference_ms']} ms")
    for box in doc["boxes"]:
        print(f"  {box['class']:<8} {box['confidence']:.4f}  xyxy={box['xyxy']}")
    print(f"  s3://{bucket}/{sent.frame_key}\n  s3://{bucket}/{sent.detections_key}")
