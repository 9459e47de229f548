"""Alert rules, evaluated once per camera with their state in the events database.

A rule fires when ``min_frames`` consecutive results of one camera (and model) match it,
and no alert of the same kind was raised for that camera within ``cooldown_s`` of capture
time: one incident, one alert. Consecutive means consecutive among the results stored, in
capture order, so it holds however detector replicas split a camera's frames and in
whatever order their results arrive. The rule's row in ``alert_state`` is locked while it
is decided, so replicas of the events function decide one camera's alerts one at a time,
and the streak and cooldown survive a restart because they are read from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tripwire.alert_rules import AlertRule
from tripwire.camera_config import CameraConfig
from tripwire.event_messages import FrameResult
from tripwire.eventstore.tables import alert_state, alerts, events, results
from tripwire.eventstore.writer import insert_ignore

Point = tuple[float, float]
# The alert_state row that stands for a whole camera (no rule kind can be empty).
CAMERA_LOCK = ""
Match = tuple[str, float, tuple[float, float, float, float] | None]


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    """Ray casting; point and polygon in the same (normalised) coordinates."""
    x, y = point
    hit = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            hit = not hit
        j = i
    return hit


@dataclass(frozen=True)
class Frame:
    """What a rule looks at in one result (a stored row or a message)."""

    boxes: Sequence[Sequence[Any]]  # [label, confidence, x1, y1, x2, y2]
    top: tuple[str, float] | None
    width: int
    height: int

    @classmethod
    def of(cls, result: FrameResult) -> Frame:
        return cls(
            [[b.label, b.confidence, *b.xyxy] for b in result.boxes],
            (result.label.label, result.label.confidence) if result.label else None,
            result.width,
            result.height,
        )

    @classmethod
    def row(cls, row: Any) -> Frame:
        top = row["top_label"]
        return cls(
            row["boxes"],
            (top, row["top_confidence"]) if top is not None else None,
            row["width"],
            row["height"],
        )


def match(rule: AlertRule, zones: Sequence[Sequence[Point]], frame: Frame) -> Match | None:
    """The best box (or top-1 label) of ``frame`` that ``rule`` matches, or None."""
    if frame.top is not None:
        label, conf = frame.top
        ok = label in rule.classes and conf >= rule.min_confidence and not rule.zones
        return (label, conf, None) if ok else None
    best: Match | None = None
    for label, conf, x1, y1, x2, y2 in frame.boxes:
        if label not in rule.classes or conf < rule.min_confidence:
            continue
        if rule.zones:
            # The foot point (bottom centre) says where a person or vehicle stands.
            foot = ((x1 + x2) / 2 / frame.width, y2 / frame.height)
            if not any(inside(foot, zone) for zone in zones):
                continue
        if best is None or conf > best[1]:
            best = (label, conf, (x1, y1, x2, y2))
    return best


@dataclass
class RaisedAlert:
    """A new alert row, as stored (the events function publishes and notifies it)."""

    row: dict[str, Any]


class AlertRules:
    def __init__(self, rules: Sequence[AlertRule], cameras: dict[str, CameraConfig]) -> None:
        self.rules = list(rules)
        self.cameras = cameras

    def _zones(self, rule: AlertRule, camera: str) -> list[list[Point]]:
        cam = self.cameras.get(camera)
        if cam is None:
            return []
        return [list(cam.zones[name]) for name in rule.zones if name in cam.zones]

    def serialize(self, conn: Connection, cameras: Sequence[str]) -> None:
        """Take each camera's lock (in one order, so writers never deadlock): replicas of the
        events function then decide one camera's results one transaction at a time."""
        if not self.rules:
            return
        for camera in sorted(set(cameras)):
            _lock_rule(conn, camera, CAMERA_LOCK)

    def evaluate(
        self,
        conn: Connection,
        result: FrameResult,
        now: int,
        pending: AbstractSet[tuple[str, int, int]] = frozenset(),
    ) -> list[RaisedAlert]:
        """Decide the rules on a result just stored (in the same transaction, after
        :meth:`serialize` took its camera's lock). ``pending``: (camera, capture_ns, seq) of
        results stored in this batch and decided after this one; a streak does not run into
        them (they see it when their turn comes), so the alert lands on the frame that
        completes the streak."""
        raised: list[RaisedAlert] = []
        frame = Frame.of(result)
        for index, rule in enumerate(self.rules):
            if not rule.applies_to(result.camera) or not rule.reads(result.model.name):
                continue
            zones = self._zones(rule, result.camera)
            found = match(rule, zones, frame)
            if found is None:
                continue
            run = 1 + self._run(conn, rule, zones, result, pending, before=True)
            if run < rule.min_frames:
                run += self._run(conn, rule, zones, result, pending, before=False)
            if run < rule.min_frames or _cooling(conn, rule, result):
                continue
            alert = self._store(conn, index, rule, result, found, run, now)
            if alert is not None:
                raised.append(alert)
        return raised

    def _run(
        self,
        conn: Connection,
        rule: AlertRule,
        zones: Sequence[Sequence[Point]],
        result: FrameResult,
        pending: AbstractSet[tuple[str, int, int]],
        *,
        before: bool,
    ) -> int:
        """Matching results right before (or after) this one, up to ``min_frames - 1``."""
        need = rule.min_frames - 1
        if need == 0:
            return 0
        c = results.c
        when = c.capture_ns < result.capture_ns if before else c.capture_ns > result.capture_ns
        order = c.capture_ns.desc() if before else c.capture_ns.asc()
        rows = conn.execute(
            sa.select(
                c.boxes, c.top_label, c.top_confidence, c.width, c.height, c.capture_ns, c.seq
            )
            .where(c.camera == result.camera, c.model == result.model.name, when)
            .order_by(order)
            .limit(need)
        ).mappings()
        count = 0
        for row in rows:
            if (result.camera, row["capture_ns"], row["seq"]) in pending:
                break
            if match(rule, zones, Frame.row(row)) is None:
                break
            count += 1
        return count

    def _store(
        self,
        conn: Connection,
        index: int,
        rule: AlertRule,
        result: FrameResult,
        found: Match,
        run: int,
        now: int,
    ) -> RaisedAlert | None:
        label, confidence, box = found
        row = {
            "id": f"{result.camera}:{rule.kind}:{result.capture_ns}:{result.seq}",
            "camera": result.camera,
            "event_id": result.event_id,
            "kind": rule.kind,
            "rule": index,
            "label": label,
            "confidence": round(confidence, 4),
            "capture_ns": result.capture_ns,
            "seq": result.seq,
            "model": result.model.name,
            "frames": run,
            "box": list(box) if box else None,
            "frame_key": result.archive.frame,
            "raised_ns": now,
        }
        if not insert_ignore(conn, alerts, row):
            return None
        _lock_rule(conn, result.camera, rule.kind)
        conn.execute(
            alert_state.update()
            .where(alert_state.c.camera == result.camera, alert_state.c.kind == rule.kind)
            .values(
                last_alert_ns=sa.func.coalesce(
                    sa.func.greatest(alert_state.c.last_alert_ns, result.capture_ns)
                    if conn.dialect.name == "postgresql"
                    else sa.func.max(alert_state.c.last_alert_ns, result.capture_ns),
                    result.capture_ns,
                )
            )
        )
        if result.event_id is not None:
            conn.execute(
                events.update()
                .where(events.c.id == result.event_id)
                .values(alert_count=events.c.alert_count + 1)
            )
        return RaisedAlert(row)


def _lock_rule(conn: Connection, camera: str, kind: str) -> None:
    insert_ignore(conn, alert_state, {"camera": camera, "kind": kind, "last_alert_ns": None})
    query = sa.select(alert_state.c.kind).where(
        alert_state.c.camera == camera, alert_state.c.kind == kind
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    conn.execute(query)


def _cooling(conn: Connection, rule: AlertRule, result: FrameResult) -> bool:
    """Whether an alert of this kind on this camera lies within the cooldown of this frame."""
    window = int(rule.cooldown_s * 1e9)
    c = alerts.c
    near = conn.execute(
        sa.select(c.id)
        .where(
            c.camera == result.camera,
            c.kind == rule.kind,
            c.capture_ns > result.capture_ns - window,
            c.capture_ns < result.capture_ns + window,
        )
        .limit(1)
    ).first()
    return near is not None
