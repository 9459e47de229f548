"""Pull mode over a real video file written from a synthetic scene (MJPG AVI, 10 fps)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from functions.motion import MotionDetector
from functions.motion.pull import Pulled, SourceError, iter_pull, run_pull
from tripwire.app.scenes import Scene, Walker
from tripwire.camera_config import CameraConfig, MotionConfig

HASH = "sha256:" + "0" * 64
FRAMES = 40


def camera(**motion: object) -> CameraConfig:
    return CameraConfig(id="cam-1", token_hash=HASH, motion=MotionConfig.model_validate(motion))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = Scene(seed=2, walkers=[Walker(x=-120, y=300, w=120, h=260, vx=400, start_s=1.0)])
    path = tmp_path_factory.mktemp("pull") / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (1280, 720))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(scene.bgr(i))
    writer.release()
    return path


def test_iter_pull_stamps_from_fps_and_encodes_only_published_frames(clip: Path) -> None:
    out = list(iter_pull(str(clip), camera(), start_ns=10**18))
    assert len(out) == FRAMES
    results = [p.result for p in out]
    assert [p.seq for p in out] == list(range(FRAMES))
    assert all(p.capture_ns == 10**18 + p.seq * 100_000_000 for p in out)
    opened = [i for i, r in enumerate(results) if r.event_opened]
    assert len(opened) == 1 and opened[0] <= 17
    assert results[opened[0]].event_id == f"cam-1-{10**18 + opened[0] * 100_000_000}"
    for result, body, *_ in out:
        assert (result.width, result.height) == (1280, 720)
        assert result.content_type is None
        if result.publish:
            assert body is not None
            decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None and decoded.shape == (720, 1280, 3)
        else:
            assert body is None
    assert sum(p.jpeg is not None for p in out) >= 10


def test_run_pull_calls_back_per_frame(clip: Path) -> None:
    seen: list[Pulled] = []
    count = run_pull(str(clip), camera(), seen.append, max_frames=12)
    assert count == 12 == len(seen)
    assert seen[0].result.calibrating


def test_process_array_matches_gray_and_bgr() -> None:
    scene = Scene(seed=4)
    gray_detector, bgr_detector = MotionDetector(camera()), MotionDetector(camera())
    for i in range(8):
        g = gray_detector.process_array(scene.gray(i), scene.capture_ns(i))
        b = bgr_detector.process_array(scene.bgr(i), scene.capture_ns(i))
        assert (g.motion, g.calibrating, g.width, g.height) == (
            b.motion,
            b.calibrating,
            1280,
            720,
        )


def test_missing_source_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        next(iter_pull(str(tmp_path / "nope.mp4"), camera()))
    with pytest.raises(SourceError, match=r"rtsp://user:\*\*\*@"):
        next(iter_pull("rtsp://user:secret@127.0.0.1:1/stream", camera()))


def test_tripwire_motion_publishes_motion_frames(
    clip: Path, tmp_path: Path, nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tripwire motion --source FILE --camera ID` end to end on a real nats-server."""
    import asyncio

    from tripwire.app.cli import main
    from tripwire.brokers import open_broker
    from tripwire.contract import FrameMeta
    from tripwire.settings import BrokerSettings

    config = tmp_path / "cameras.yaml"
    config.write_text(
        f"cameras:\n  - id: cam-pull\n    token_hash: '{HASH}'\n"
        "    motion: {analysis_fps: 0, max_publish_fps: 100}\n"
    )
    args = [
        "motion",
        "--config",
        str(config),
        "--broker",
        nats_url,
        "--camera",
        "cam-pull",
        "--source",
        str(clip),
    ]
    assert main(args) == 0
    published = int(capsys.readouterr().out.split(", ")[1].split()[0])
    assert published >= 10

    async def drain() -> list[tuple[bytes, FrameMeta]]:
        broker = open_broker(BrokerSettings(), nats_url)
        await broker.connect()
        got = []
        while batch := await broker.fetch(64, 1.0):
            for m in batch:
                meta = FrameMeta.from_headers(m.headers)
                if meta.camera == "cam-pull":
                    got.append((m.body, meta))
                await m.ack()
        await broker.close()
        return got

    got = asyncio.run(drain())
    assert len(got) == published
    for body, meta in got:
        assert body.startswith(b"\xff\xd8\xff") and (meta.width, meta.height) == (1280, 720)
        assert meta.event_id and meta.boxes
