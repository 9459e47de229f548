"""The detector's /metrics, /healthz and /readyz: routes, and counters of a real run."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from functions.detector.metrics import DetectorMetrics
from tests import frames
from tests.detector_harness import (
    YAML,
    DetectorProcess,
    NatsWire,
    http_get,
    meta_for,
    metric,
    need_ultralytics,
    publish_frames,
    settings_env,
    wait_until,
)
from tripwire.contract import Header, motion_subject
from tripwire.health_server import HealthServer


async def test_routes_and_readiness_switch() -> None:
    warm = asyncio.Event()
    health = HealthServer(DetectorMetrics().registry, warm.is_set, not_ready="warming up")
    await health.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{health.port}"
    try:
        assert await http_get(f"{base}/healthz") == (200, '{"status":"ok"}')
        assert await http_get(f"{base}/readyz") == (503, '{"status":"warming up"}')
        warm.set()
        assert await http_get(f"{base}/readyz?verbose=1") == (200, '{"status":"ready"}')
        status, text = await http_get(f"{base}/metrics")
        assert status == 200 and "tripwire_detector_batches_total 0.0" in text
        assert (await http_get(f"{base}/nope"))[0] == 404
    finally:
        await health.stop()


async def test_metrics_of_a_running_detector(nats_url: str, unique: str, tmp_path: Path) -> None:
    need_ultralytics()
    camera = f"met-{unique}"
    n = 5
    wire = NatsWire(nats_url, unique, [camera])
    await wire.open()
    env = {
        "TRIPWIRE_BROKER__URL": nats_url,
        **settings_env("TRIPWIRE_BROKER__NATS__", wire.settings),
        "TRIPWIRE_IMGSZ": "320",
        "TRIPWIRE_BATCH_SIZE": "8",
        "TRIPWIRE_BATCH_WAIT_MS": "300",
    }
    detector = DetectorProcess(tmp_path / "home", env, ["--weights", YAML])
    try:
        detector.start()
        port = await detector.metrics_port()
        base = f"http://127.0.0.1:{port}"
        early, _ = await http_get(f"{base}/readyz")
        # The endpoint is up before the model: not ready until it is loaded and warm.
        assert early == 503 or "first inference" in detector.log()
        await detector.ready()
        _, warm = await http_get(f"{base}/metrics")
        assert metric(warm, "tripwire_detector_ready") == 1
        assert metric(warm, "tripwire_detector_model_load_seconds") > 0
        assert metric(warm, "tripwire_detector_first_inference_seconds") > 0
        assert metric(warm, "tripwire_detector_acks_total") == 0

        await publish_frames(wire.broker, camera, frames.moving_box_frames(n))
        bad = meta_for(camera, 99, b"", capture_ns=99).to_headers()
        del bad[Header.SEQ]
        await wire.broker.publish(motion_subject(camera), b"\xff\xd8junk", bad)
        await wait_until(wire.drained, "queue depth 0", within=60)

        _, text = await http_get(f"{base}/metrics")
        assert metric(text, "tripwire_detector_acks_total") == n
        assert metric(text, "tripwire_detector_dead_letters_total", reason="bad") == 1
        batches = metric(text, "tripwire_detector_batches_total")
        assert batches >= 1
        assert metric(text, "tripwire_detector_batch_size_count") == batches
        assert metric(text, "tripwire_detector_batch_size_sum") == n
        assert metric(text, "tripwire_detector_inference_seconds_count") == batches
        assert metric(text, "tripwire_detector_end_to_end_seconds_count") == n
        assert metric(text, "tripwire_detector_archive_errors_total") == 0
        detector.signal(signal.SIGTERM)
        assert await detector.wait(30) == 0
    finally:
        detector.kill()
        await wire.close()
    print(
        f"\n[metrics] batches {batches:g}, acks {n}, dead letters (bad) 1, "
        f"model load {metric(warm, 'tripwire_detector_model_load_seconds'):.2f}s, "
        f"first inference {metric(warm, 'tripwire_detector_first_inference_seconds'):.2f}s"
    )
