"""Apply the events function's messages to the database, inside the caller's transaction.

Each function states what one message means for the record and is idempotent: a
redelivered message changes nothing (results are keyed by camera, capture time, seq and
model; event messages set values instead of adding to them). Order does not matter either:
a result that comes before its event's open creates the event, which the open then
completes; one that comes after the close still lands in that event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
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


def _result_row(result: FrameResult) -> dict[str, Any]:
    return {
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
    }


def record_result(conn: Connection, result: FrameResult, now: int) -> bool:
    """Store one frame's result and fold it into its event; False for a duplicate."""
    return bool(record_results(conn, [result], now))


def record_results(conn: Connection, batch: Sequence[FrameResult], now: int) -> list[FrameResult]:
    """Store a batch of results and fold them into their events; the new ones (not stored
    before), in the batch's order.

    One multi-row insert tells the new from the redelivered; each event touched is then
    read, updated in Python and written once, with its labels.
    """
    if not batch:
        return []
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    c = results.c
    inserted = conn.execute(
        dialect.insert(results)
        .values([_result_row(r) for r in batch])
        .on_conflict_do_nothing()
        .returning(c.camera, c.capture_ns, c.seq, c.model)
    ).all()
    keys = {tuple(row) for row in inserted}
    new: list[FrameResult] = []
    for r in batch:
        key = (r.camera, r.capture_ns, r.seq, r.model.name)
        if key in keys:
            keys.discard(key)  # a duplicate inside the batch counts once
            new.append(r)
    by_event: dict[str, list[FrameResult]] = defaultdict(list)
    for r in new:
        if r.event_id is not None:
            by_event[r.event_id].append(r)
    for event_id in sorted(by_event):  # one lock order for every writer
        _fold_event(conn, event_id, by_event[event_id], now)
    return new


def _fold_event(conn: Connection, event_id: str, found: Sequence[FrameResult], now: int) -> None:
    first = found[0]
    row = _ensure_event(conn, event_id, first.camera, min(r.capture_ns for r in found), now)
    stored = [r.stored_ns for r in found if r.stored_ns is not None]
    if row["first_result_ns"] is not None:
        stored.append(row["first_result_ns"])
    captures = [r.capture_ns for r in found]
    values: dict[str, Any] = {
        "frames_detected": row["frames_detected"] + len(found),
        "first_result_ns": min(stored) if stored else None,
        "models": sorted({*row["models"], *(r.model.name for r in found)}),
        # Until the open message is in, the event starts at its earliest known frame.
        "start_ns": row["start_ns"] if row["opened"] else min(row["start_ns"], *captures),
        "last_ns": max(row["last_ns"], *captures),
        "updated_ns": now,
    }
    best = _fold_labels(conn, event_id, found)
    if best is not None:
        values.update(
            best_label=best["label"],
            best_confidence=best["best_confidence"],
            best_seq=best["best_seq"],
            best_capture_ns=best["best_capture_ns"],
            best_model=best["best_model"],
            best_frame_key=best["best_frame_key"],
        )
    conn.execute(events.update().where(events.c.id == event_id).values(**values))


def _fold_labels(
    conn: Connection, event_id: str, found: Sequence[FrameResult]
) -> dict[str, Any] | None:
    """Merge the batch's labels into the event's; return the event's top label row (most
    frames, then confidence, then name), whose best frame is the event's snapshot."""
    query = sa.select(event_labels).where(event_labels.c.event_id == event_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    labels = {r["label"]: dict(r) for r in conn.execute(query).mappings()}
    existing = set(labels)
    changed: set[str] = set()
    for r in found:
        archived = r.archive.frame is not None
        for label, confidence in _labels_of(r).items():
            row = labels.get(label)
            if row is None:
                labels[label] = {
                    "event_id": event_id,
                    "label": label,
                    "frames": 1,
                    "best_confidence": confidence,
                    "best_seq": r.seq,
                    "best_capture_ns": r.capture_ns,
                    "best_model": r.model.name,
                    "best_frame_key": r.archive.frame,
                    "_frame_conf": confidence,
                }
                changed.add(label)
                continue
            row["frames"] += 1
            frame_conf = row.get("_frame_conf", row["best_confidence"])
            # The best frame: an archived frame beats a better one that was not kept (a
            # snapshot must exist), then confidence decides.
            if (archived, confidence) > (row["best_frame_key"] is not None, frame_conf):
                row.update(best_seq=r.seq, best_capture_ns=r.capture_ns,
                           best_model=r.model.name, best_frame_key=r.archive.frame,
                           _frame_conf=confidence)  # fmt: skip
            row["best_confidence"] = max(row["best_confidence"], confidence)
            changed.add(label)
    if not labels:
        return None
    clean = {n: {k: v for k, v in row.items() if k != "_frame_conf"} for n, row in labels.items()}
    added = [clean[name] for name in sorted(changed - existing)]
    if added:
        conn.execute(event_labels.insert(), added)
    for name in sorted(changed & existing):
        row = clean[name]
        conn.execute(
            event_labels.update()
            .where(event_labels.c.event_id == event_id, event_labels.c.label == name)
            .values({k: v for k, v in row.items() if k not in {"event_id", "label"}})
        )
    return min(clean.values(), key=lambda r: (-r["frames"], -r["best_confidence"], r["label"]))


def end_stale(conn: Connection, now: int, timeout_s: float) -> int:
    """End by timeout every open event nothing was heard of for ``timeout_s``."""
    cutoff = now - int(timeout_s * 1e9)
    done = conn.execute(
        events.update()
        .where(events.c.status == OPEN, events.c.updated_ns < cutoff)
        .values(status=TIMEOUT, end_ns=events.c.last_ns, updated_ns=now)
    )
    return int(done.rowcount)
