"""Turn per-frame predictions into alerts: class match, confidence, consecutive frames,
zones and a per-camera cool-down, so that one incident raises one alert."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from functions.detector.model import Box, Prediction
from tripwire.alert_rules import AlertRule
from tripwire.config import CameraConfig

Point = tuple[float, float]


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    """Ray casting; points and polygon in the same (normalised) coordinates."""
    x, y = point
    hit = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            hit = not hit
        j = i
    return hit


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    camera: str
    label: str
    confidence: float
    box: tuple[float, float, float, float] | None  # None for a whole-frame (classify) label
    frames: int  # consecutive matching frames when it fired


@dataclass
class _State:
    streak: int = 0
    last_alert_ns: int | None = None


@dataclass
class AlertEvaluator:
    rules: Sequence[AlertRule]
    cameras: dict[str, CameraConfig]
    _state: dict[tuple[str, str], _State] = field(default_factory=dict)

    def _match(
        self, rule: AlertRule, camera: str, pred: Prediction, size: tuple[int, int]
    ) -> tuple[str, float, Box | None] | None:
        if pred.top1 is not None:
            label, conf = pred.top1
            ok = label in rule.classes and conf >= rule.min_confidence and not rule.zones
            return (label, conf, None) if ok else None
        zones = self._zones(rule, camera)
        best: Box | None = None
        for box in pred.boxes:
            if box.label not in rule.classes or box.confidence < rule.min_confidence:
                continue
            if rule.zones:
                # The foot point (bottom centre) says where a person or vehicle stands.
                x1, _, x2, y2 = box.xyxy
                foot = ((x1 + x2) / 2 / size[0], y2 / size[1])
                if not any(inside(foot, zone) for zone in zones):
                    continue
            if best is None or box.confidence > best.confidence:
                best = box
        return (best.label, best.confidence, best) if best else None

    def _zones(self, rule: AlertRule, camera: str) -> list[list[Point]]:
        cam = self.cameras.get(camera)
        if cam is None:
            return []
        return [list(cam.zones[name]) for name in rule.zones if name in cam.zones]

    def observe(
        self, camera: str, capture_ns: int, pred: Prediction, size: tuple[int, int]
    ) -> list[Alert]:
        """Feed one frame's prediction (frames of a camera in capture order); get new alerts."""
        fired: list[Alert] = []
        for rule in self.rules:
            if not rule.applies_to(camera):
                continue
            state = self._state.setdefault((camera, rule.kind), _State())
            match = self._match(rule, camera, pred, size)
            if match is None:
                state.streak = 0
                continue
            state.streak += 1
            cooling = (
                state.last_alert_ns is not None
                and capture_ns - state.last_alert_ns < rule.cooldown_s * 1e9
            )
            if state.streak >= rule.min_frames and not cooling:
                state.last_alert_ns = capture_ns
                label, conf, box = match
                fired.append(
                    Alert(rule.kind, camera, label, conf, box.xyxy if box else None, state.streak)
                )
        return fired
