"""The model wrapper, and parity: what the pipeline publishes equals ultralytics' own predict."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import pytest

from functions.detector.model import Model, ModelError, ModelOptions
from functions.detector.run import model_options
from functions.detector.worker import Detector
from tests.detector_harness import (
    ACCIDENT,
    ACCIDENT_TEST,
    FIRE_IMAGES,
    TFLITE,
    YAML,
    NatsWire,
    bus_jpeg,
    bus_path,
    documents,
    model,
    need_ultralytics,
    publish_frames,
    running,
    wait_until,
)
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CamerasFile
from tripwire.settings import DetectorSettings

# Fire/smoke images on which the COCO model finds something (people, a tv, trucks, a car)
# or nothing at all: both must come out the same.
FIRE_PICKS = (
    "fire1_mp4-26_",
    "img_225_",
    "img_242_",
    "newsmoke2_mp4-41_",
    "pexels-alan-w-8365989_mp4-9_",
    "pexels-alan-w-8365993_mp4-22_",
)


@pytest.fixture(scope="module", autouse=True)
def ultralytics_present() -> None:
    need_ultralytics()


def test_settings_give_imgsz_only_when_configured() -> None:
    assert model_options(DetectorSettings(weights="w.pt")).imgsz is None
    assert model_options(DetectorSettings(weights="w.pt", imgsz=320)).imgsz == 320


def test_untrained_yaml_architecture() -> None:
    yolo = model(YAML, imgsz=320)
    assert (yolo.task, yolo.untrained, yolo.name, yolo.imgsz) == ("detect", True, "yolo11n", 320)
    assert len(yolo.names) == 80
    assert yolo.load_s > 0 and yolo.first_inference_s > 0


def test_classifier_runs_at_its_training_size_and_labels_whole_frames(shared_data: Path) -> None:
    classifier = model(ACCIDENT)
    assert (classifier.task, classifier.imgsz) == ("classify", 224)  # not the detect 640
    assert set(classifier.names.values()) == {"Accident", "Non Accident"}
    crash = cv2.imread(str(ACCIDENT_TEST / "Accident" / "test10_33.jpg"))
    [pred], times = classifier.predict([crash])
    assert pred.boxes == ()
    assert pred.top1 is not None and pred.top1[0] == "Accident" and pred.top1[1] > 0.5
    assert times.inference_ms > 0


def test_missing_weights_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found; pass --weights"):
        Model(ModelOptions(weights=str(tmp_path / "nope.pt")), tmp_path)


# -- parity ----------------------------------------------------------------------------------


def _match(
    got: list[dict[str, Any]], want: list[dict[str, Any]], where: str
) -> list[tuple[float, float]]:
    """Pair boxes class by class (nearest corners); the (confidence, pixel) differences."""
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for box in want:
        by_class[box["class"]].append(box)
    assert sorted(b["class"] for b in got) == sorted(b["class"] for b in want), where
    diffs = []
    for box in got:
        candidates = by_class[box["class"]]
        best = min(
            candidates,
            key=lambda c: max(abs(a - b) for a, b in zip(c["xyxy"], box["xyxy"], strict=True)),
        )
        candidates.remove(best)
        pixels = max(abs(a - b) for a, b in zip(best["xyxy"], box["xyxy"], strict=True))
        diffs.append((abs(best["confidence"] - box["confidence"]), pixels))
    return diffs


async def test_pipeline_detections_equal_a_direct_predict(
    nats_url: str, unique: str, local_archive: LocalArchive, tmp_path: Path, shared_data: Path
) -> None:
    from ultralytics import YOLO

    camera = f"par-{unique}"
    paths = [next(FIRE_IMAGES.glob(f"{prefix}*.jpg")) for prefix in FIRE_PICKS]
    frames = [bus_jpeg(), *(p.read_bytes() for p in paths)]  # 810x1080 and 608x608 in one batch
    coco = model(TFLITE, task="detect")
    settings = DetectorSettings(home=tmp_path, batch_size=8, batch_wait_ms=500, fetch_wait_s=0.2)
    wire = NatsWire(nats_url, unique, [camera])
    await wire.open()
    try:
        detector = Detector(settings, CamerasFile(), wire.broker, local_archive, coco)
        await publish_frames(wire.broker, camera, frames)
        async with running(detector):
            await wait_until(lambda: detector.counts.acked == len(frames), "all frames acked")
        results = {d["seq"]: d for d in documents(await wire.results(camera, len(frames)))}
    finally:
        await wire.close()
    # One batched inference call for all of them.
    assert detector.metrics.registry.get_sample_value("tripwire_detector_batches_total") == 1

    # ultralytics on its own: a fresh YOLO object, the files from disk, the same settings.
    direct = YOLO(str(TFLITE), task="detect")
    o = coco.options
    sources = [bus_path(), *paths]
    compared: list[tuple[float, float]] = []
    for seq, source in enumerate(sources):
        [r] = direct.predict(
            str(source), imgsz=coco.imgsz, conf=o.conf, iou=o.iou, max_det=o.max_det,
            device=coco.device, verbose=False, **coco.precision,
        )  # fmt: skip
        want = [
            {"class": r.names[int(c)], "confidence": float(p), "xyxy": [float(v) for v in xyxy]}
            for xyxy, c, p in zip(
                r.boxes.xyxy.tolist(), r.boxes.cls.tolist(), r.boxes.conf.tolist(), strict=True
            )
        ]
        compared += _match(results[seq]["boxes"], want, f"frame {seq} ({source.name})")
    worst_conf = max(c for c, _ in compared)
    worst_px = max(p for _, p in compared)
    print(
        f"\n[parity] {len(sources)} frames, {len(compared)} boxes compared: "
        f"max |confidence diff| {worst_conf:.2e}, max corner diff {worst_px:.3f} px"
    )
    assert len(compared) >= 10  # bus.jpg alone has 5
    assert worst_conf <= 1e-3
    assert worst_px <= 0.5
