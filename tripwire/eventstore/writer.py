"""Apply the events function's messages to the database, inside the caller's transaction.

Each function states what one message means for the record and is idempotent: a
redelivered message changes nothing (results are keyed by camera, capture time, seq and
model; event messages set values instead of adding to them). Order does not matter either:
a result that comes before its event's open creates the event, which the open then
completes; one that comes after the close still lands in that event.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from tripwire.event_messages import CameraStatus, EventClosed, EventOpened, FrameResult
from tripwire.eventstore.tables import cameras, event_labels, events, results

OPEN, CLOSED, TIMEOUT = "open", "closed", "timeout"


def insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT unless the primary key exists; True when a row was inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    key = next(iter(table.primary_key.columns))
    # RETURNING, not rowcount: psycopg reports 1 for a conflict that inserted nothing.
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(key)
    return conn.execute(statement).first() is not None


def _lock(conn: Connection, table: sa.Table, *where: Any) -> Any:
    """The row, locked for this transaction (SQLite: the whole database already is)."""
    query = sa.select(table).where(*where)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).mappings().first()


def _ensure_event(conn: Connection, event_id: str, camera: str, capture_ns: int, now: int) -> Any:
    """The event's row, locked; created as ``open`` from what this message knows if new."""
    insert_ignore(
        conn,
        events,
        {
            "id": event_id,
            "camera": camera,
            "status": OPEN,
            "start_ns": capture_ns,
            "opened": False,
            "last_ns": capture_ns,
            "updated_ns": now,
            "frames_seen": 0,
            "frames_analysed": 0,
            "frames_published": 0,
            "frames_detected": 0,
            "models": [],
            "alert_count": 0,
        },
    )
    return _lock(conn, events, events.c.id == event_id)


def record_open(conn: Connection, message: EventOpened, now: int) -> None:
    row = _ensure_event(conn, message.event_id, message.camera, message.capture_ns, now)
    conn.execute(
        events.update()
        .where(events.c.id == message.event_id)
        .values(
            start_ns=message.capture_ns,
            opened=True,
            last_ns=max(row["last_ns"], message.capture_ns),
            updated_ns=now,
        )
    )
    # An older event of this camera still open never got its close (the gateway restarted
    # or its close was lost): it ended by timeout at the last thing seen of it.
    conn.execute(
        events.update()
        .where(
            events.c.camera == message.camera,
            events.c.status == OPEN,
            events.c.opened.is_(True),
            events.c.start_ns < message.capture_ns,
            events.c.id != message.event_id,
        )
        .values(status=TIMEOUT, end_ns=events.c.last_ns, updated_ns=now)
    )


def record_close(conn: Connection, message: EventClosed, now: int) -> None:
    row = _ensure_event(conn, message.event_id, message.camera, message.capture_ns, now)
    conn.execute(
        events.update()
        .where(events.c.id == message.event_id)
        .values(
            status=CLOSED,
            end_ns=message.capture_ns,
            last_ns=max(row["last_ns"], message.capture_ns),
            frames_seen=message.frames_seen,
            frames_analysed=message.frames_analysed,
            frames_published=message.frames_published,
            updated_ns=now,
        )
    )


def record_status(conn: Connection, message: CameraStatus, now: int) -> None:
    values = {
        "last_frame_ns": message.last_frame_ns,
        "fps": message.fps,
        "frames": message.frames,
        "event_id": message.event_id,
        "updated_ns": now,
    }
    if not insert_ignore(conn, cameras, {"id": message.camera, **values}):
        conn.execute(
            cameras.update()
            .where(cameras.c.id == message.camera, cameras.c.last_frame_ns <= message.last_frame_ns)
            .values(**values)
        )
    if message.event_id is None:
        return
    row = _ensure_event(conn, message.event_id, message.camera, message.last_frame_ns, now)
    if row["status"] != OPEN:
        return
    conn.execute(
        events.update()
        .where(events.c.id == message.event_id)
        .values(
            frames_seen=max(row["frames_seen"], message.frames_seen),
            frames_analysed=max(row["frames_analysed"], message.frames_analysed),
            frames_published=max(row["frames_published"], message.frames_published),
            last_ns=max(row["last_ns"], message.last_frame_ns),
            updated_ns=now,
        )
    )


def _labels_of(result: FrameResult) -> dict[str, float]:
    """Each label in the frame with its best confidence (a classify model's top-1 too)."""
    best: dict[str, float] = defaultdict(float)
    for box in result.boxes:
        best[box.label] = max(best[box.label], box.confidence)
    if result.label is not None:
        best[result.label.label] = max(best[result.label.label], result.label.confidence)
    return best


def record_result(conn: Connection, result: FrameResult, now: int) -> bool:
    """Store one frame's result and fold it into its event; False for a duplicate."""
    inserted = insert_ignore(
        conn,
        results,
        {
            "camera": result.camera,
            "capture_ns": result.capture_ns,
            "seq": result.seq,
            "model": result.model.name,
            "event_id": result.event_id,
            "stored_ns": result.stored_ns,
            "width": result.width,
            "height": result.height,
            "boxes": [[b.label, round(b.confidence, 4), *b.xyxy] for b in result.boxes],
            "top_label": result.label.label if result.label else None,
            "top_confidence": result.label.confidence if result.label else None,
            "frame_key": result.archive.frame,
            "detections_key": result.archive.detections,
            "inference_ms": result.inference_ms,
        },
    )
    if not inserted or result.event_id is None:
        return inserted
    event_id = result.event_id
    row = _ensure_event(conn, event_id, result.camera, result.capture_ns, now)
    model = result.model.name
    first = row["first_result_ns"]
    if result.stored_ns is not None:
        first = result.stored_ns if first is None else min(first, result.stored_ns)
    conn.execute(
        events.update()
        .where(events.c.id == event_id)
        .values(
            frames_detected=row["frames_detected"] + 1,
            first_result_ns=first,
            models=sorted({*row["models"], model}),
            # Until the open message is in, the event starts at its earliest known frame.
            start_ns=row["start_ns"] if row["opened"] else min(row["start_ns"], result.capture_ns),
            last_ns=max(row["last_ns"], result.capture_ns),
            updated_ns=now,
        )
    )
    for label, confidence in _labels_of(result).items():
        _fold_label(conn, event_id, label, confidence, result)
    _pick_best(conn, event_id)
    return True


def _fold_label(
    conn: Connection, event_id: str, label: str, confidence: float, result: FrameResult
) -> None:
    best = {
        "best_confidence": confidence,
        "best_seq": result.seq,
        "best_capture_ns": result.capture_ns,
        "best_model": result.model.name,
        "best_frame_key": result.archive.frame,
    }
    if insert_ignore(
        conn, event_labels, {"event_id": event_id, "label": label, "frames": 1, **best}
    ):
        return
    key = (event_labels.c.event_id == event_id, event_labels.c.label == label)
    row = _lock(conn, event_labels, *key)
    values: dict[str, Any] = {
        "frames": row["frames"] + 1,
        "best_confidence": max(row["best_confidence"], confidence),
    }
    # The best frame: an archived frame beats a better one that was not kept (a snapshot
    # must exist), then confidence decides.
    if (result.archive.frame is not None, confidence) > (
        row["best_frame_key"] is not None,
        row["best_confidence"],
    ):
        values.update({k: v for k, v in best.items() if k != "best_confidence"})
    conn.execute(event_labels.update().where(*key).values(**values))


def _pick_best(conn: Connection, event_id: str) -> None:
    """The event's top label (most frames, then confidence) and that label's best frame."""
    top = (
        conn.execute(
            sa.select(event_labels)
            .where(event_labels.c.event_id == event_id)
            .order_by(
                event_labels.c.frames.desc(),
                event_labels.c.best_confidence.desc(),
                event_labels.c.label,
            )
            .limit(1)
        )
        .mappings()
        .first()
    )
    if top is None:
        return
    conn.execute(
        events.update()
        .where(events.c.id == event_id)
        .values(
            best_label=top["label"],
            best_confidence=top["best_confidence"],
            best_seq=top["best_seq"],
            best_capture_ns=top["best_capture_ns"],
            best_model=top["best_model"],
            best_frame_key=top["best_frame_key"],
        )
    )


def end_stale(conn: Connection, now: int, timeout_s: float) -> int:
    """End by timeout every open event nothing was heard of for ``timeout_s``."""
    cutoff = now - int(timeout_s * 1e9)
    done = conn.execute(
        events.update()
        .where(events.c.status == OPEN, events.c.updated_ns < cutoff)
        .values(status=TIMEOUT, end_ns=events.c.last_ns, updated_ns=now)
    )
    return int(done.rowcount)
