"""``tripwire up`` with two models (untrained yolo11n architectures, CPU): each model's own pool
is scaled from zero on its own consumer and forks from one shared standby; every frame gets a
result from both models; the frame is archived once and each model's detections apart; a
model swapped by name (new weights, same name) loses no frame; both go back to zero."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from tripwire.app.stack import StackOptions, running_stack
from tripwire.brokers import Broker, open_broker
from tripwire.contract import DETECTIONS_PREFIX, FrameMeta
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.tokens import hash_token, new_token

SCALING = {"polling_interval_s": 1, "cooldown_period_s": 3, "max_replicas": 1}


def _config(path: Path, b_weights: str) -> None:
    doc = {
        "cameras": [{"id": "cam-1", "token_hash": hash_token(new_token())}],
        "models": [
            {"name": "a", "weights": "yolo11n.yaml", "imgsz": 64, "device": "cpu",
             "scaling": SCALING},
            {"name": "b", "weights": b_weights, "imgsz": 64, "device": "cpu",
             "scaling": SCALING},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))


def _jpeg(seq: int) -> bytes:
    image = np.full((48, 64, 3), (seq * 37) % 255, np.uint8)
    return bytes(cv2.imencode(".jpg", image)[1])


async def _publish(broker: Broker, seqs: range) -> None:
    for seq in seqs:
        meta = FrameMeta("cam-1", seq, time.time_ns(), time.time_ns(), 64, 48, "image/jpeg", 0.5)
        await broker.publish(meta.subject, _jpeg(seq), meta.to_headers())


async def _until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {within_s:.0f}s: {what}"
        await asyncio.sleep(0.2)


async def test_two_models_fan_out_swap_and_scale_to_zero(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "cameras.yaml"
    _config(config, "yolo11n.yaml")
    gateway = GatewaySettings(home=home, port=0, config=config)
    detector = DetectorSettings(home=home, config=config, stop_timeout_s=10)
    results: list[dict[str, Any]] = []

    def seen(model: str) -> dict[int, str]:
        return {r["seq"]: r["model"]["weights"] for r in results if r["model"]["name"] == model}

    async with running_stack(StackOptions(gateway, detector, console_port=0)) as stack:
        assert sorted(stack.models) == ["a", "b"]
        # One family (ultralytics): both pools fork from the same standby.
        standby = stack.models["a"].pool.standby
        assert standby is not None and stack.models["b"].pool.standby is standby
        broker = open_broker(gateway.broker, stack.endpoint.url)
        await broker.connect()

        async def listen() -> None:
            async for message in broker.subscribe(f"{DETECTIONS_PREFIX}.cam-1"):
                results.append(json.loads(message.body))

        listening = asyncio.create_task(listen())
        await asyncio.sleep(0.5)
        await _publish(broker, range(1, 11))
        await _until(lambda: len(seen("a")) == 10 and len(seen("b")) == 10, 150, "10 + 10")
        assert {r["model"]["name"] for r in results} == {"a", "b"}
        assert len(results) == 20  # once per model, never twice

        # Swap b by name, frames in flight: the old worker drains, the new one loads.
        old = [w.process.pid for w in stack.models["b"].pool.workers]
        _config(config, "yolov8n.yaml")
        assert await stack.swap("b") == len(old) == 1
        await _publish(broker, range(11, 16))
        await _until(lambda: not any(w.process.pid in old for w in stack.models["b"].pool.workers),
                     60, "old worker of b gone")  # fmt: skip
        await _publish(broker, range(16, 21))
        await _until(lambda: len(seen("a")) == 20 and len(seen("b")) == 20, 150, "20 + 20")
        assert {seen("b")[s] for s in range(16, 21)} == {"yolov8n"}
        assert {seen("a")[s] for s in range(1, 21)} == {"yolo11n"}

        # Both scale back to zero on their own consumers.
        await _until(
            lambda: all(s.scaler.replicas == 0 and s.pool.running == 0
                        for s in stack.models.values()),
            60, "both at zero",
        )  # fmt: skip
        listening.cancel()
        await broker.close()
    archive = home / "archive"
    frames = list((archive / "frames").rglob("*.jpg"))
    detections = [p.name for p in (archive / "detections").rglob("*.json")
                  if not p.name.endswith(".meta.json")]  # fmt: skip
    assert len(frames) == 20  # one object per frame, whatever the number of models
    assert sorted(n.split(".")[-2] for n in detections) == ["a"] * 20 + ["b"] * 20
