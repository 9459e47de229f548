"""The models section of the camera config: declared by name, checked like the rest of the file;
rules name the model they read; a file without it keeps one default model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from functions.detector.run import for_model
from functions.detector.worker import touches_zones
from tripwire.alert_rules import AlertRule, unknown_classes
from tripwire.app.model_pools import changed_models
from tripwire.brokers.routes import DEFAULT_ROUTES, MotionRoute, routes_of
from tripwire.camera_config import parse_config
from tripwire.contract import FrameMeta
from tripwire.errors import ConfigError
from tripwire.settings import DetectorSettings

HASH = "sha256:" + "ab" * 32


def _file(**extra: Any) -> dict[str, Any]:
    return {
        "cameras": [
            {"id": "cam-1", "token_hash": HASH, "zones": {"road": [[0, 0.5], [1, 0.5], [1, 1]]}},
            {"id": "cam-2", "token_hash": HASH},
        ],
        **extra,
    }


COCO = {"name": "coco", "weights": "coco.tflite", "task": "detect", "labels": ["person", "car"]}
ACCIDENT = {
    "name": "accident",
    "weights": "accident.pt",
    "task": "classify",
    "labels": ["Accident", "Non Accident"],
    "cameras": ["cam-1"],
    "zones": ["road"],
    "batch": 4,
    "imgsz": 224,
    "device": "cpu",
}


def test_a_file_without_models_keeps_one_default_model() -> None:
    config = parse_config(_file(alerts=[{"kind": "intrusion", "classes": ["person"]}]))
    assert config.models == [] and routes_of(config) == DEFAULT_ROUTES
    settings = DetectorSettings(weights="yolo11n.yaml")
    assert for_model(settings, config) is settings


def test_models_are_declared_by_name_with_their_own_numbers() -> None:
    config = parse_config(
        _file(
            models=[COCO, ACCIDENT],
            alerts=[
                {"kind": "accident", "classes": ["Accident"], "model": "accident"},
                {"kind": "intrusion", "classes": ["person"], "model": "coco"},
                {"kind": "anything", "classes": ["car"]},  # any model: the union of labels
            ],
        )
    )
    assert routes_of(config) == (MotionRoute("coco"), MotionRoute("accident", ("cam-1",)))
    served = for_model(DetectorSettings(model="accident", device="cuda:0"), config)
    assert (served.weights, served.task, served.batch_size, served.imgsz, served.device) == (
        "accident.pt", "classify", 4, 224, "cpu"
    )  # fmt: skip
    coco = for_model(DetectorSettings(model="coco", device="cuda:0"), config)
    assert coco.device == "cuda:0"  # auto: the process's own device
    with pytest.raises(ConfigError, match="'fire' is not declared"):
        for_model(DetectorSettings(model="fire"), config)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"models": [COCO, COCO]}, "a model name appears twice"),
        ({"models": [{**COCO, "name": "Coco"}]}, r"models\[0\]\.name"),
        ({"models": [{**COCO, "bogus": 1}]}, r"models\[0\]\.bogus"),
        ({"models": [{**COCO, "cameras": ["cam-9"]}]}, "camera 'cam-9' is not configured"),
        ({"models": [{**COCO, "cameras": ["cam-2"], "zones": ["road"]}]}, "zone 'road'"),
        ({"models": [{**COCO, "max_queue": 0}]}, r"models\[0\]\.max_queue"),
        (
            {"models": [{**COCO, "scaling": {"max_replicas": 0}}]},
            r"models\[0\]\.scaling\.max_replicas",
        ),
        (
            {"models": [COCO], "alerts": [{"kind": "fire", "classes": ["fire"], "model": "fire"}]},
            "model 'fire' is not declared",
        ),
        (
            {"alerts": [{"kind": "fire", "classes": ["fire"], "model": "fire"}]},
            "no models section",
        ),
        (
            {
                "models": [COCO, ACCIDENT],
                "alerts": [{"kind": "crash", "classes": ["Accident"], "model": "coco"}],
            },
            r"\['Accident'\] are not labels of model coco",
        ),
        (
            {"models": [COCO, ACCIDENT], "alerts": [{"kind": "fire", "classes": ["fire"]}]},
            "are not labels of any declared model",
        ),
    ],
)
def test_bad_models_sections_name_the_problem(extra: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(_file(**extra))


def test_rules_read_their_model_only() -> None:
    rules = [
        AlertRule(kind="accident", classes=["Accident"], model="accident"),
        AlertRule(kind="intrusion", classes=["person"]),
    ]
    assert rules[0].reads("accident") and not rules[0].reads("coco")
    assert rules[1].reads("coco") and rules[1].reads("accident")
    # The detector of one model checks only the rules that name it.
    assert unknown_classes(rules, {"person", "car"}, model="coco") == []
    assert unknown_classes(rules, {"Accident", "Non Accident"}, model="accident") == []
    assert len(unknown_classes(rules, {"person"})) == 1  # no model named: every rule


def test_a_model_with_zones_reads_frames_whose_motion_touches_them() -> None:
    camera = parse_config(_file()).cameras[0]  # zone "road": the lower half, x 0..1

    def frame(*boxes: tuple[int, int, int, int]) -> FrameMeta:
        return FrameMeta("cam-1", 1, 1, 1, 200, 100, "image/jpeg", 0.5, boxes=boxes)

    assert touches_zones(frame((10, 60, 30, 90)), camera, ["road"])  # in the lower half
    assert not touches_zones(frame((10, 5, 30, 40)), camera, ["road"])  # upper half only
    assert touches_zones(frame((10, 5, 30, 40), (150, 55, 190, 70)), camera, ["road"])
    assert touches_zones(frame(), camera, ["road"])  # no boxes: the whole frame moved
    assert not touches_zones(frame((10, 60, 30, 90)), camera, ["gate"])  # not its zone


def test_a_reload_swaps_only_the_models_that_changed() -> None:
    old = parse_config(_file(models=[COCO, ACCIDENT]))
    new = parse_config(_file(models=[COCO, {**ACCIDENT, "weights": "accident-v2.pt"},
                                     {**COCO, "name": "fire"}]))  # fmt: skip
    assert changed_models(old, new) == ["accident"]  # a new model is not a swap
    assert changed_models(old, old) == []


def test_a_models_own_queue_bound_is_for_rabbitmq_and_nats_refuses_it() -> None:
    from tripwire.brokers.jetstream import JetStreamBroker
    from tripwire.brokers.settings import NatsSettings
    from tripwire.model_manifests import render

    config = parse_config(_file(models=[{**COCO, "max_queue": 500}, ACCIDENT]))
    routes = routes_of(config)
    assert [r.max_queue for r in routes] == [500, None]  # None: the shared max_length
    # NATS: one stream for every model, bounded as a whole; a per-model bound is refused
    # with what to use instead (before any connection), by the adapter and by deploy render.
    with pytest.raises(ConfigError, match=r"models coco: max_queue .*NATS__STREAM_MAX_MSGS"):
        JetStreamBroker("nats://127.0.0.1:1", NatsSettings(), connect_timeout_s=1,
                        publish_timeout_s=1, routes=routes, model="accident")  # fmt: skip
    with pytest.raises(ConfigError, match="models coco: max_queue"):
        render(config, "nats", Path("."))
    unbounded = routes_of(parse_config(_file(models=[COCO, ACCIDENT])))
    JetStreamBroker("nats://127.0.0.1:1", NatsSettings(), connect_timeout_s=1,
                    publish_timeout_s=1, routes=unbounded, model="coco")  # fmt: skip


def test_cluster_watch_on_a_models_config_needs_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --model it would read, and so declare, the default consumer or queue, which
    keeps a copy of every frame for no reader: refused before any connection."""
    import yaml

    from tripwire.app.cli import main

    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(_file(models=[COCO, ACCIDENT])))
    monkeypatch.setenv("TRIPWIRE_CONFIG", str(path))
    out = tmp_path / "watch.jsonl"
    argv = ["cluster", "watch", "--broker", "nats://127.0.0.1:1", "--out", str(out)]
    assert main(argv) == 2
    assert "declares models (coco, accident): name the one to watch with --model" in (
        capsys.readouterr().err
    )
    assert not out.exists()
