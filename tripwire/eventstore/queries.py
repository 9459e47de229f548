"""Read the events database for the console: events with filters and cursor pagination, one
event with its labels, frames and alerts, alerts and their acknowledgement, cameras."""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tripwire.errors import TripwireError
from tripwire.eventstore.tables import alerts, cameras, event_labels, events, results


class BadCursor(TripwireError):
    """A cursor that this API did not hand out."""


@dataclass(frozen=True)
class EventFilter:
    camera: str | None = None
    label: str | None = None
    after_ns: int | None = None  # start_ns >= after_ns
    before_ns: int | None = None  # start_ns < before_ns
    has_alert: bool | None = None
    min_confidence: float | None = None
    status: str | None = None


def encode_cursor(start_ns: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{start_ns}:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, event_id = raw.split(":", 1)
        return int(start), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not one this API handed out") from None


def _alert(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "camera": row["camera"],
        "event_id": row["event_id"],
        "rule": row["rule"],
        "label": row["label"],
        "confidence": row["confidence"],
        "capture_ns": row["capture_ns"],
        "seq": row["seq"],
        "model": row["model"],
        "frames": row["frames"],
        "box": row["box"],
        "raised_ns": row["raised_ns"],
        "acknowledged_by": row["acknowledged_by"],
        "acknowledged_ns": row["acknowledged_ns"],
    }


def _event(row: Any, labels: Sequence[Any], event_alerts: Sequence[Any]) -> dict[str, Any]:
    first = row["first_result_ns"]
    return {
        "id": row["id"],
        "camera": row["camera"],
        "status": row["status"],
        "start_ns": row["start_ns"],
        "end_ns": row["end_ns"],
        "frames": {
            "seen": row["frames_seen"],
            "analysed": row["frames_analysed"],
            "published": row["frames_published"],
            "detected": row["frames_detected"],
        },
        "labels": {r["label"]: r["best_confidence"] for r in labels},
        "label_frames": {r["label"]: r["frames"] for r in labels},
        "best": (
            {
                "label": row["best_label"],
                "confidence": row["best_confidence"],
                "seq": row["best_seq"],
                "capture_ns": row["best_capture_ns"],
                "model": row["best_model"],
                "archived": row["best_frame_key"] is not None,
            }
            if row["best_label"] is not None
            else None
        ),
        "models": row["models"],
        "alerts": [_alert(a) for a in event_alerts],
        # First motion (the opening frame's capture) -> first result published.
        "first_result_latency_s": (
            round((first - row["start_ns"]) / 1e9, 3) if first is not None else None
        ),
    }


def _details(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [r["id"] for r in rows]
    labels: dict[str, list[Any]] = defaultdict(list)
    found: dict[str, list[Any]] = defaultdict(list)
    if ids:
        for r in conn.execute(
            sa.select(event_labels)
            .where(event_labels.c.event_id.in_(ids))
            .order_by(event_labels.c.best_confidence.desc())
        ).mappings():
            labels[r["event_id"]].append(r)
        for r in conn.execute(
            sa.select(alerts).where(alerts.c.event_id.in_(ids)).order_by(alerts.c.capture_ns)
        ).mappings():
            found[r["event_id"]].append(r)
    return [_event(r, labels[r["id"]], found[r["id"]]) for r in rows]


def list_events(
    conn: Connection, where: EventFilter, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of events, newest first, and the cursor of the next page (None at the end)."""
    e = events.c
    query = sa.select(events)
    if where.camera is not None:
        query = query.where(e.camera == where.camera)
    if where.status is not None:
        query = query.where(e.status == where.status)
    if where.after_ns is not None:
        query = query.where(e.start_ns >= where.after_ns)
    if where.before_ns is not None:
        query = query.where(e.start_ns < where.before_ns)
    if where.has_alert is not None:
        query = query.where(e.alert_count > 0 if where.has_alert else e.alert_count == 0)
    if where.label is not None:
        labelled = sa.select(event_labels.c.event_id).where(event_labels.c.label == where.label)
        if where.min_confidence is not None:
            labelled = labelled.where(event_labels.c.best_confidence >= where.min_confidence)
        query = query.where(e.id.in_(labelled))
    elif where.min_confidence is not None:
        query = query.where(e.best_confidence >= where.min_confidence)
    if cursor is not None:
        start, last = decode_cursor(cursor)
        query = query.where(sa.or_(e.start_ns < start, sa.and_(e.start_ns == start, e.id < last)))
    rows = conn.execute(query.order_by(e.start_ns.desc(), e.id.desc()).limit(limit + 1)).mappings()
    page = list(rows)
    more = len(page) > limit
    page = page[:limit]
    following = encode_cursor(page[-1]["start_ns"], page[-1]["id"]) if more and page else None
    return _details(conn, page), following


def get_event(conn: Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(events).where(events.c.id == event_id)).mappings().first()
    return _details(conn, [row])[0] if row is not None else None


def best_frame(conn: Connection, event_id: str) -> tuple[str | None, list[Any]] | None:
    """The best frame's archive key and that frame's boxes; None for an unknown event."""
    row = conn.execute(sa.select(events).where(events.c.id == event_id)).mappings().first()
    if row is None:
        return None
    if row["best_label"] is None:
        return None, []
    r = results.c
    boxes = conn.execute(
        sa.select(r.boxes).where(
            r.camera == row["camera"],
            r.capture_ns == row["best_capture_ns"],
            r.seq == row["best_seq"],
            r.model == row["best_model"],
        )
    ).scalar()
    return row["best_frame_key"], list(boxes or [])


def event_frames(conn: Connection, event_id: str) -> list[dict[str, Any]]:
    r = results.c
    rows = conn.execute(
        sa.select(results).where(r.event_id == event_id).order_by(r.capture_ns, r.model)
    ).mappings()
    return [
        {
            "seq": row["seq"],
            "capture_ns": row["capture_ns"],
            "model": row["model"],
            "width": row["width"],
            "height": row["height"],
            "boxes": [{"class": b[0], "confidence": b[1], "xyxy": b[2:6]} for b in row["boxes"]],
            "label": (
                {"class": row["top_label"], "confidence": row["top_confidence"]}
                if row["top_label"] is not None
                else None
            ),
            "archived": row["frame_key"] is not None,
            "inference_ms": row["inference_ms"],
        }
        for row in rows
    ]


def list_alerts(
    conn: Connection, *, acknowledged: bool | None, camera: str | None, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Alerts, unacknowledged first, newest first; and how many are unacknowledged."""
    a = alerts.c
    query = sa.select(alerts)
    if acknowledged is not None:
        query = query.where(
            a.acknowledged_ns.is_not(None) if acknowledged else a.acknowledged_ns.is_(None)
        )
    if camera is not None:
        query = query.where(a.camera == camera)
    rows = conn.execute(
        query.order_by(a.acknowledged_ns.is_not(None), a.raised_ns.desc(), a.id).limit(limit)
    ).mappings()
    open_count = conn.execute(
        sa.select(sa.func.count()).select_from(alerts).where(a.acknowledged_ns.is_(None))
    ).scalar_one()
    return [_alert(r) for r in rows], int(open_count)


def acknowledge(conn: Connection, alert_id: str, operator: str, now: int) -> dict[str, Any] | None:
    """Mark an alert acknowledged (the first acknowledgement stays); None if unknown."""
    conn.execute(
        alerts.update()
        .where(alerts.c.id == alert_id, alerts.c.acknowledged_ns.is_(None))
        .values(acknowledged_by=operator, acknowledged_ns=now)
    )
    row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    return _alert(row) if row is not None else None


def camera_states(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The configured cameras with what their gateway last reported and their last event."""
    states = {r["id"]: r for r in conn.execute(sa.select(cameras)).mappings()}
    out = []
    for camera in ids:
        state = states.get(camera)
        last = (
            conn.execute(
                sa.select(events.c.id, events.c.start_ns, events.c.status, events.c.best_label)
                .where(events.c.camera == camera)
                .order_by(events.c.start_ns.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        out.append(
            {
                "id": camera,
                "last_frame_ns": state["last_frame_ns"] if state else None,
                "fps": state["fps"] if state else 0.0,
                "frames": state["frames"] if state else 0,
                "event_open": bool(state and state["event_id"]),
                "open_event_id": state["event_id"] if state else None,
                "last_event": dict(last) if last else None,
            }
        )
    return out


def event_frame(
    conn: Connection, event_id: str, capture_ns: int, seq: int, model: str | None
) -> tuple[str | None, list[Any]] | None:
    """One result's archive key and boxes (the first model's unless ``model``); None if none."""
    r = results.c
    query = sa.select(r.frame_key, r.boxes).where(
        r.event_id == event_id, r.capture_ns == capture_ns, r.seq == seq
    )
    if model is not None:
        query = query.where(r.model == model)
    row = conn.execute(query.order_by(r.model).limit(1)).first()
    return (row[0], list(row[1] or [])) if row is not None else None


def event_frame_keys(
    conn: Connection, event_id: str
) -> tuple[list[tuple[int, str, list[Any]]], int]:
    """(capture_ns, key, boxes) of the event's archived frames in capture order (one per
    frame: the first model that archived it, with that model's boxes), and how many of its
    analysed frames have no archived copy."""
    r = results.c
    rows = conn.execute(
        sa.select(r.capture_ns, r.seq, r.frame_key, r.boxes)
        .where(r.event_id == event_id)
        .order_by(r.capture_ns, r.seq, r.model)
    ).all()
    frames: dict[tuple[int, int], tuple[str, list[Any]] | None] = {}
    for capture_ns, seq, key, boxes in rows:
        if frames.get((capture_ns, seq)) is None:
            frames[(capture_ns, seq)] = (key, list(boxes or [])) if key is not None else None
    kept = [(c, f[0], f[1]) for (c, _), f in frames.items() if f is not None]
    return kept, len(frames) - len(kept)
