"""Alert rules in the events function: the rule table (on SQLite and PostgreSQL), one
incident one alert however detector replicas split a camera's frames, the accident
classifier on its labelled CCTV frames, and the webhook (delivered; never in the way).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from functions.detector.model import Box, Prediction
from functions.events.alerts import AlertRules
from functions.events.webhook import Webhook
from tests.detector_harness import ACCIDENT, ACCIDENT_TEST, model
from tests.event_factory import T0, S, result
from tests.events.test_events_function import webhook_server  # noqa: F401
from tripwire.alert_rules import AlertRule, unknown_classes
from tripwire.camera_config import CameraConfig
from tripwire.errors import StoreUnavailable
from tripwire.event_messages import FrameResult
from tripwire.eventstore import Store
from tripwire.eventstore.writer import record_results

TOKEN_HASH = "sha256:" + "0" * 64
# The lower-left quarter of the frame, in fractions of width and height.
DRIVEWAY = [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]
CAMERAS = {
    "cam-a": CameraConfig(id="cam-a", token_hash=TOKEN_HASH, zones={"driveway": DRIVEWAY}),
    "cam-b": CameraConfig(id="cam-b", token_hash=TOKEN_HASH),  # no zones at all
}

FIRE = AlertRule(kind="fire", classes=["fire", "smoke"], min_frames=1, cooldown_s=0)
INTRUSION = AlertRule(
    kind="intrusion", classes=["person"], zones=["driveway"], min_frames=1, cooldown_s=0
)
ACCIDENT_RULE = AlertRule(kind="accident", classes=["Accident"], min_frames=1, cooldown_s=0)


def boxes(*found: tuple[str, float, tuple[float, float, float, float]]) -> Prediction:
    return Prediction(tuple(Box(label, conf, xyxy) for label, conf, xyxy in found), None)


def top1(label: str, conf: float) -> Prediction:
    return Prediction((), (label, conf))


NOTHING = Prediction((), None)
ANYWHERE = (100.0, 100.0, 200.0, 200.0)
INSIDE = (50.0, 500.0, 150.0, 800.0)  # feet at (0.1, 0.8): in the driveway
OUTSIDE = (700.0, 100.0, 900.0, 400.0)  # feet at (0.8, 0.4)


@dataclass(frozen=True)
class Frame:
    pred: Prediction
    t: float = 0.0  # capture time, seconds
    camera: str = "cam-a"
    size: tuple[int, int] = (1000, 1000)


@dataclass(frozen=True)
class Case:
    rules: Sequence[AlertRule]
    frames: Sequence[Frame]
    # (frame index, kind, label, confidence, consecutive frames) of every alert raised
    fired: Sequence[tuple[int, str, str, float, int]] = field(default_factory=list)


def rule(base: AlertRule, **changes: Any) -> AlertRule:
    return base.model_copy(update=changes)


def fires(*pairs: tuple[str, float]) -> list[Frame]:
    """Frames one second apart, each with one box of (label, confidence)."""
    return [Frame(boxes((label, conf, ANYWHERE)), t=i) for i, (label, conf) in enumerate(pairs)]


CASES: dict[str, Case] = {
    # The simplest match: a named class above min_confidence, min_frames 1 -> alert at once.
    "one matching frame": Case([FIRE], fires(("fire", 0.8)), [(0, "fire", "fire", 0.8, 1)]),
    # Below min_confidence (default 0.5) a box does not count.
    "below min_confidence": Case([FIRE], fires(("fire", 0.3))),
    # A class the rule does not name does not count, however confident.
    "class not in the rule": Case([FIRE], fires(("person", 0.99))),
    # Several matching boxes: the most confident one is reported.
    "best box reported": Case(
        [FIRE],
        [Frame(boxes(("fire", 0.6, ANYWHERE), ("smoke", 0.9, ANYWHERE)))],
        [(0, "fire", "smoke", 0.9, 1)],
    ),
    # min_frames 3: nothing on frames 1 and 2, the alert on the third consecutive frame.
    "min_frames reached": Case(
        [rule(FIRE, min_frames=3)],
        fires(("fire", 0.9), ("fire", 0.9), ("fire", 0.9)),
        [(2, "fire", "fire", 0.9, 3)],
    ),
    # A frame without a match resets the streak: 2 + miss + 3 fires only at the end.
    "a miss resets the streak": Case(
        [rule(FIRE, min_frames=3)],
        [
            *fires(("fire", 0.9), ("fire", 0.9)),
            Frame(NOTHING, t=2),
            *[Frame(boxes(("fire", 0.9, ANYWHERE)), t=3 + i) for i in range(3)],
        ],
        [(5, "fire", "fire", 0.9, 3)],
    ),
    # A weak frame (below min_confidence) breaks the streak just like an empty one.
    "a weak frame resets the streak": Case(
        [rule(FIRE, min_frames=3)],
        fires(("fire", 0.9), ("fire", 0.3), ("fire", 0.9), ("smoke", 0.9)),
    ),
    # Cool-down 10 s: frames at 1 s and 9.9 s belong to the same incident; at 10 s it may
    # fire again (the streak kept counting meanwhile).
    "cooldown": Case(
        [rule(FIRE, cooldown_s=10)],
        [Frame(boxes(("fire", 0.9, ANYWHERE)), t=t) for t in (0, 1, 9.9, 10, 11)],
        [(0, "fire", "fire", 0.9, 1), (3, "fire", "fire", 0.9, 1)],
    ),
    # Cool-down 0: every matching frame is an alert, even at the same capture time.
    "no cooldown": Case(
        [FIRE],
        [Frame(boxes(("fire", 0.9, ANYWHERE)), t=t) for t in (0, 0, 0.001)],
        # frames: the matching run that fired it, counted up to min_frames.
        [(0, "fire", "fire", 0.9, 1), (1, "fire", "fire", 0.9, 1), (2, "fire", "fire", 0.9, 1)],
    ),
    # Each camera has its own streak: a-b-a is 2 in a row for cam-a, 1 for cam-b.
    "streaks per camera": Case(
        [rule(FIRE, min_frames=2, cooldown_s=60)],
        [
            Frame(boxes(("fire", 0.9, ANYWHERE)), t=i, camera=c)
            for i, c in enumerate(["cam-a", "cam-b", "cam-a"])
        ],
        [(2, "fire", "fire", 0.9, 2)],
    ),
    # ... and its own cool-down: cam-a's alert does not silence cam-b.
    "cooldown per camera": Case(
        [rule(FIRE, cooldown_s=60)],
        [
            Frame(boxes(("fire", 0.9, ANYWHERE)), t=i, camera=c)
            for i, c in enumerate(["cam-a", "cam-b", "cam-a"])
        ],
        [(0, "fire", "fire", 0.9, 1), (1, "fire", "fire", 0.9, 1)],
    ),
    # A rule limited to cam-a ignores cam-b.
    "rule for other cameras": Case(
        [rule(FIRE, cameras=["cam-a"])],
        [Frame(boxes(("fire", 0.9, ANYWHERE)), camera="cam-b")],
    ),
    # Two rules on one frame are independent: one alert each.
    "two rules, one frame": Case(
        [FIRE, INTRUSION],
        [Frame(boxes(("fire", 0.7, ANYWHERE), ("person", 0.8, (100, 300, 300, 900))))],
        [(0, "fire", "fire", 0.7, 1), (0, "intrusion", "person", 0.8, 1)],
    ),
    # A classifier's top-1 label is a whole-frame match.
    "classify top-1": Case(
        [ACCIDENT_RULE], [Frame(top1("Accident", 0.8))], [(0, "accident", "Accident", 0.8, 1)]
    ),
    # ... that needs min_confidence like a box,
    "classify top-1 too weak": Case([ACCIDENT_RULE], [Frame(top1("Accident", 0.45))]),
    # ... and the right class.
    "classify other class": Case([ACCIDENT_RULE], [Frame(top1("Non Accident", 0.99))]),
    # Zone: the foot point (bottom centre) (0.2, 0.9) stands in the driveway.
    "zone: standing inside": Case(
        [INTRUSION],
        [Frame(boxes(("person", 0.8, (100, 300, 300, 900))))],
        [(0, "intrusion", "person", 0.8, 1)],
    ),
    # Zone: the box overlaps the driveway, but the feet (0.6, 0.95) are outside it.
    "zone: overlapping, feet outside": Case(
        [INTRUSION], [Frame(boxes(("person", 0.9, (300, 600, 900, 950))))]
    ),
    # Zone: a person outside (more confident) and one inside: the one inside is reported.
    "zone: only boxes inside count": Case(
        [INTRUSION],
        [Frame(boxes(("person", 0.95, OUTSIDE), ("person", 0.6, INSIDE)))],
        [(0, "intrusion", "person", 0.6, 1)],
    ),
    # Zone polygons are fractions: the same pixels on a 2000x2000 frame put the feet at
    # (0.1, 0.45), above the driveway.
    "zone: fractions of the frame size": Case(
        [INTRUSION], [Frame(boxes(("person", 0.8, (100, 300, 300, 900))), size=(2000, 2000))]
    ),
    # A camera that has no such zone never matches a zone rule.
    "zone: camera without the zone": Case(
        [INTRUSION], [Frame(boxes(("person", 0.8, (100, 300, 300, 900))), camera="cam-b")]
    ),
    # A whole-frame label has no position: a zone rule never matches it.
    "zone: classify labels never match": Case(
        [rule(INTRUSION, classes=["Accident"])], [Frame(top1("Accident", 0.99))]
    ),
}


def as_result(frame: Frame, seq: int) -> FrameResult:
    pred = frame.pred
    return result(
        frame.camera,
        seq,
        T0 + int(frame.t * S),
        [(b.label, b.confidence, b.xyxy) for b in pred.boxes],
        top=pred.top1,
        size=frame.size,
        event_id=f"{frame.camera}-ev",
    )


def decide(store: Store, rules: AlertRules, results: Sequence[FrameResult]) -> list[dict[str, Any]]:
    """Store the results and decide the rules on them in one transaction, as the events
    function does for a batch (retried while the database asks to); the alerts raised."""
    while True:
        try:
            with store.begin() as conn:
                rules.serialize(conn, [r.camera for r in results])
                new = record_results(conn, sorted(results, key=lambda r: r.capture_ns), T0)
                pending = {(r.camera, r.capture_ns, r.seq) for r in new}
                raised = []
                for r in new:
                    pending.discard((r.camera, r.capture_ns, r.seq))
                    raised += [a.row for a in rules.evaluate(conn, r, T0, pending)]
                return raised
        except StoreUnavailable:  # a lock timeout or deadlock victim: try again
            time.sleep(0.05)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_alert_rules(case: Case, store: Store) -> None:
    rules = AlertRules(case.rules, CAMERAS)
    fired = []
    for i, frame in enumerate(case.frames):
        for alert in decide(store, rules, [as_result(frame, i)]):
            assert alert["camera"] == frame.camera and alert["seq"] == i
            fired.append((i, alert["kind"], alert["label"], alert["confidence"], alert["frames"]))
            if frame.pred.top1 is not None:
                assert alert["box"] is None  # whole-frame label
            else:
                boxes_of_label = [
                    list(b.xyxy) for b in frame.pred.boxes if b.label == alert["label"]
                ]
                assert alert["box"] in boxes_of_label
    assert fired == list(case.fired)


# -- one incident, one alert ------------------------------------------------------------------

INCIDENT_RULE = AlertRule(kind="fire", classes=["fire"], min_frames=3, cooldown_s=20)


def burst(camera: str, incidents: int) -> list[FrameResult]:
    """A camera's frames at 5 per second: each incident is 3 fire frames (min_frames on its
    own), 1 s without, then 8 s of fire (crosses min_frames again, within the cooldown),
    then 24 s of quiet frames (past the cooldown before the next incident)."""
    out: list[FrameResult] = []
    t = T0
    seq = 0
    step = S // 5
    for _ in range(incidents):
        pattern = ["fire"] * 3 + [None] * 5 + ["fire"] * 40 + [None] * 120
        for label in pattern:
            found = [(label, 0.9, (0.0, 0.0, 10.0, 10.0))] if label else []
            out.append(result(camera, seq, t, found, event_id=f"{camera}-{seq // 168}"))
            seq += 1
            t += step
    return out


def test_four_replicas_splitting_a_camera_raise_one_alert_per_incident(store: Store) -> None:
    """4 detector replicas take a camera's frames round robin and finish them out of order;
    4 events-function writers decide them concurrently: alerts raised = incidents."""
    incidents = 3
    frames = burst("cam-a", incidents)
    replicas: list[list[FrameResult]] = [frames[i::4] for i in range(4)]
    rng = random.Random(7)
    for part in replicas:  # each replica's batches finish in its own order
        for start in range(0, len(part), 8):
            chunk = part[start : start + 8]
            rng.shuffle(chunk)
            part[start : start + 8] = chunk
    rules = AlertRules([INCIDENT_RULE], CAMERAS)
    raised: list[dict[str, Any]] = []
    lock = threading.Lock()

    def writer(part: list[FrameResult]) -> None:
        for start in range(0, len(part), 8):
            got = decide(store, rules, part[start : start + 8])
            with lock:
                raised.extend(got)

    threads = [threading.Thread(target=writer, args=(p,)) for p in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(raised) == incidents, [a["capture_ns"] for a in raised]
    # Redelivering everything (a restart of every replica) raises nothing more.
    assert decide(store, rules, frames) == []


def test_a_restart_keeps_the_streak_and_the_cooldown(store: Store, events_db_url: str) -> None:
    frames = burst("cam-a", 2)
    first, rest = frames[:45], frames[45:]  # stopped in the middle of the first incident
    assert len(decide(store, AlertRules([INCIDENT_RULE], CAMERAS), first)) == 1
    store.close()
    restarted = Store(events_db_url)  # a new process: nothing in memory
    try:
        raised = decide(restarted, AlertRules([INCIDENT_RULE], CAMERAS), rest)
    finally:
        restarted.close()
    assert len(raised) == 1  # the second incident only: the first one's cooldown held


# -- a real classifier ------------------------------------------------------------------------


def test_accident_classifier_raises_accident_alerts(tmp_path: Path, shared_data: Path) -> None:
    import cv2
    import numpy as np

    store = Store(f"sqlite:///{tmp_path / 'events.db'}")  # the model matters here, not the db
    store.migrate()
    accidents = sorted((ACCIDENT_TEST / "Accident").glob("*.jpg"))
    others = sorted((ACCIDENT_TEST / "Non Accident").glob("*.jpg"))
    assert (len(accidents), len(others)) == (47, 53)
    classifier = model(ACCIDENT)  # at its training size (224), the default
    assert classifier.task == "classify" and classifier.imgsz == 224
    rules = AlertRules([ACCIDENT_RULE], {})
    found: dict[str, list[dict[str, Any]]] = {}
    for camera, paths in (("acc", accidents), ("non", others)):
        images = [cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR) for p in paths]
        preds, _ = classifier.predict(images)
        results = [
            result(camera, i, T0 + i * S, top=pred.top1, size=(im.shape[1], im.shape[0]))
            for i, (pred, im) in enumerate(zip(preds, images, strict=True))
        ]
        found[camera] = decide(store, rules, results)
        if camera == "acc":
            labelled = {r.seq for r in results if r.label and r.label.label == "Accident"
                        and r.label.confidence >= 0.5}  # fmt: skip
    hits, false = found["acc"], found["non"]
    for alert in hits + false:
        assert (alert["kind"], alert["label"]) == ("accident", "Accident")
        assert alert["confidence"] >= 0.5 and alert["box"] is None
    # One alert per frame whose label is Accident (cool-down 0, min_frames 1), no other.
    assert {a["seq"] for a in hits} == labelled and len(hits) == len(labelled)
    hit_rate, false_rate = len(hits) / len(accidents), len(false) / len(others)
    print(f"\n[accident alerts] {len(hits)}/{len(accidents)} = {hit_rate:.1%}; false "
          f"{len(false)}/{len(others)} = {false_rate:.1%}")  # fmt: skip
    assert hit_rate >= 0.9  # measured 46/47 (97.9%)
    assert false_rate <= 0.1  # measured 1/53 (1.9%)


# -- the webhook ----------------------------------------------------------------------------


async def test_a_full_webhook_queue_drops_the_oldest_and_still_closes_promptly(
    webhook_server: tuple[str, list[dict[str, Any]]],  # noqa: F811
) -> None:
    url, received = webhook_server
    webhook = Webhook(url, timeout_s=5, attempts=1, queue_size=1)
    for seq in range(3):  # queued before the sender runs: two are dropped, oldest first
        webhook.send({"seq": seq})
    webhook.start()
    started = time.monotonic()
    await webhook.close(drain_s=10)
    # Drained as soon as the one kept alert is out, not after the 10 s bound.
    assert time.monotonic() - started < 5
    assert received == [{"seq": 2}]
    assert (webhook.delivered, webhook.dropped, webhook.failed) == (1, 2, 0)


# -- rule classes against the model's labels --------------------------------------------------


def test_unknown_rule_classes_are_named() -> None:
    rules = [
        AlertRule(kind="intrusion", classes=["person"]),
        AlertRule(kind="fire", classes=["fire", "smoke"]),
        AlertRule(kind="typo", classes=["persn", "car"]),
    ]
    problems = unknown_classes(rules, {"person", "car", "bus"})
    assert problems == [
        "alerts[1] (fire): ['fire', 'smoke'] are not labels of the model",
        "alerts[2] (typo): ['persn'] are not labels of the model",
    ]
    assert unknown_classes(rules[:1], {"person"}) == []


def test_a_detector_whose_rules_its_model_cannot_fire_stops_with_the_reason(
    tmp_path: Path, shared_data: Path
) -> None:
    """The accident classifier knows Accident / Non Accident: a person rule is a config
    error, and the detector exits with the status that stops the local scaler."""
    import subprocess
    import sys

    import yaml

    from tripwire.errors import MODEL_UNAVAILABLE_EXIT

    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"alerts": [{"kind": "intrusion", "classes": ["person"]}]}))
    # No broker URL: the detector starts its embedded NATS server under TRIPWIRE_HOME.
    env = {k: v for k, v in os.environ.items() if k != "TRIPWIRE_BROKER__URL"}
    env["TRIPWIRE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tripwire.app.cli", "detector", "--config", str(config),
         "--weights", str(ACCIDENT), "--metrics-port", "0"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == MODEL_UNAVAILABLE_EXIT, done.stderr[-2000:]
    assert "alerts[0] (intrusion): ['person'] are not labels of the model" in done.stderr
    assert "Accident" in done.stderr
