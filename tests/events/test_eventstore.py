"""The events record on SQLite and PostgreSQL: idempotent, order-free writes, the queries the
API serves, and a schema upgrade that keeps every event."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.event_factory import T0, S, closed, opened, result, status
from tests.events_db import fresh_database
from tripwire.event_messages import CameraStatus, EventClosed, EventOpened, FrameResult
from tripwire.eventstore import Store, head_revision
from tripwire.eventstore.queries import (
    BadCursor,
    EventFilter,
    acknowledge,
    best_frame,
    camera_states,
    event_frames,
    get_event,
    list_alerts,
    list_events,
)
from tripwire.eventstore.tables import alerts, events
from tripwire.eventstore.writer import (
    end_stale,
    record_close,
    record_open,
    record_result,
    record_status,
)

Message = FrameResult | EventOpened | EventClosed | CameraStatus
PERSON = ("person", 0.8, (10.0, 20.0, 110.0, 320.0))
CAR = ("car", 0.6, (400.0, 400.0, 700.0, 600.0))


def write(store: Store, messages: Iterable[Message], now: int = T0) -> list[bool]:
    out = []
    with store.begin() as conn:
        for m in messages:
            if isinstance(m, FrameResult):
                out.append(record_result(conn, m, now))
            elif isinstance(m, EventOpened):
                record_open(conn, m, now)
            elif isinstance(m, EventClosed):
                record_close(conn, m, now)
            else:
                record_status(conn, m, now)
    return out


def event(store: Store, event_id: str) -> dict:  # type: ignore[type-arg]
    with store.read() as conn:
        found = get_event(conn, event_id)
    assert found is not None
    return found


def test_a_whole_event_joins_open_results_and_close(store: Store) -> None:
    ev = "cam-1-1"
    write(
        store,
        [
            opened("cam-1", ev, T0),
            result("cam-1", 1, T0, [PERSON], event_id=ev, stored_ns=T0 + S // 4),
            result("cam-1", 2, T0 + S, [PERSON, CAR], event_id=ev),
            result("cam-1", 3, T0 + 2 * S, [("person", 0.95, (0, 0, 10, 10))], event_id=ev),
            closed("cam-1", ev, T0 + 5 * S, seen=50),
        ],
    )
    got = event(store, ev)
    assert (got["camera"], got["status"], got["start_ns"], got["end_ns"]) == (
        "cam-1",
        "closed",
        T0,
        T0 + 5 * S,
    )
    assert got["labels"] == {"person": 0.95, "car": 0.6}
    assert got["label_frames"] == {"person": 3, "car": 1}
    # The top label is the one seen in most frames; its best frame is the snapshot.
    assert got["best"]["label"] == "person" and got["best"]["seq"] == 3
    assert got["frames"] == {"seen": 50, "analysed": 25, "published": 16, "detected": 3}
    assert got["models"] == ["coco"]
    assert got["first_result_latency_s"] == 0.25
    with store.read() as conn:
        key, boxes = best_frame(conn, ev)  # type: ignore[misc]
        frames = event_frames(conn, ev)
    assert key == f"frames/cam-1/{T0 + 2 * S}-3.jpg" and boxes[0][0] == "person"
    assert [f["seq"] for f in frames] == [1, 2, 3]


def test_redelivered_messages_change_nothing(store: Store) -> None:
    ev = "cam-1-1"
    batch = [opened("cam-1", ev, T0), result("cam-1", 1, T0, [PERSON], event_id=ev)]
    assert write(store, batch) == [True]
    before = event(store, ev)
    assert write(store, batch * 3) == [False, False, False]
    assert event(store, ev) == before


def test_a_result_before_its_open_and_after_its_close_lands_in_the_event(store: Store) -> None:
    ev = "cam-2-1"
    # The first result is in before the gateway's open (another replica was faster).
    write(store, [result("cam-2", 5, T0 + 2 * S, [PERSON], event_id=ev)])
    early = event(store, ev)
    assert (early["status"], early["start_ns"]) == ("open", T0 + 2 * S)
    write(store, [opened("cam-2", ev, T0), closed("cam-2", ev, T0 + 3 * S)])
    # A slow replica's result arrives after the close: counted, status stays closed.
    write(store, [result("cam-2", 6, T0 + 2 * S + 1, [CAR], event_id=ev)])
    got = event(store, ev)
    assert (got["status"], got["start_ns"], got["end_ns"]) == ("closed", T0, T0 + 3 * S)
    assert got["labels"] == {"person": 0.8, "car": 0.6}
    assert got["frames"]["detected"] == 2


def test_an_event_whose_close_never_came_ends_by_timeout(store: Store) -> None:
    write(store, [opened("cam-3", "a", T0), result("cam-3", 1, T0 + S, [PERSON], event_id="a")])
    with store.begin() as conn:
        assert end_stale(conn, T0 + 30 * S, timeout_s=60) == 0
        assert end_stale(conn, T0 + 61 * S, timeout_s=60) == 1
    got = event(store, "a")
    assert (got["status"], got["end_ns"]) == ("timeout", T0 + S)
    # A close that comes after all corrects it.
    write(store, [closed("cam-3", "a", T0 + 2 * S)])
    assert event(store, "a")["status"] == "closed"


def test_a_new_open_ends_the_cameras_event_that_never_closed(store: Store) -> None:
    write(store, [opened("cam-4", "old", T0), opened("cam-5", "other", T0)])
    write(store, [opened("cam-4", "new", T0 + 10 * S)])
    assert event(store, "old")["status"] == "timeout"
    assert event(store, "new")["status"] == "open"
    assert event(store, "other")["status"] == "open"  # another camera's event is not touched


def test_an_archived_frame_beats_a_better_one_that_was_not_kept(store: Store) -> None:
    ev = "cam-6-1"
    write(
        store,
        [
            result("cam-6", 1, T0, [("person", 0.7, (0, 0, 5, 5))], event_id=ev),
            result("cam-6", 2, T0 + S, [("person", 0.9, (0, 0, 5, 5))], event_id=ev,
                   frame_key=None),
        ],
    )  # fmt: skip
    got = event(store, ev)
    assert got["labels"] == {"person": 0.9}  # the label's best confidence, archived or not
    assert (got["best"]["seq"], got["best"]["archived"]) == (1, True)


def test_camera_status(store: Store) -> None:
    write(store, [status("cam-1", T0, event_id="cam-1-9"), status("cam-1", T0 - S)])
    with store.read() as conn:
        [cam, quiet] = camera_states(conn, ["cam-1", "cam-2"])
    # The older status (sent before, delivered after) does not overwrite the newer one.
    assert (cam["last_frame_ns"], cam["fps"], cam["event_open"]) == (T0, 10.0, True)
    assert cam["last_event"]["id"] == "cam-1-9"
    assert event(store, "cam-1-9")["frames"]["seen"] == 7
    assert (quiet["last_frame_ns"], quiet["event_open"], quiet["last_event"]) == (None, False, None)


def _many(store: Store) -> None:
    batch: list[Message] = []
    for i in range(25):
        camera = f"cam-{i % 3}"
        ev = f"{camera}-{i}"
        found = [PERSON] if i % 2 else [CAR]
        batch += [opened(camera, ev, T0 + i * S), result(camera, i, T0 + i * S, found, event_id=ev)]
    write(store, batch)
    with store.begin() as conn:
        conn.execute(
            alerts.insert().values(
                id="a1", camera="cam-1", event_id="cam-1-7", kind="intrusion", rule=0,
                label="person", confidence=0.8, capture_ns=T0 + 7 * S, seq=7, model="coco",
                frames=1, raised_ns=T0 + 8 * S,
            )
        )  # fmt: skip
        conn.execute(events.update().where(events.c.id == "cam-1-7").values(alert_count=1))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # Newest first.
        (EventFilter(), [f"cam-{i % 3}-{i}" for i in range(24, -1, -1)]),
        (EventFilter(camera="cam-0"), [f"cam-0-{i}" for i in range(24, -1, -3)]),
        (EventFilter(label="car", camera="cam-1"), ["cam-1-22", "cam-1-16", "cam-1-10", "cam-1-4"]),
        # Start time: [after, before).
        (EventFilter(after_ns=T0 + 20 * S, before_ns=T0 + 22 * S), ["cam-0-21", "cam-2-20"]),
        (EventFilter(has_alert=True), ["cam-1-7"]),
        (EventFilter(label="person", min_confidence=0.9), []),
        (EventFilter(min_confidence=0.7, camera="cam-2"), [f"cam-2-{i}" for i in (23, 17, 11, 5)]),
    ],
)
def test_event_filters(store: Store, where: EventFilter, expected: list[str]) -> None:
    _many(store)
    with store.read() as conn:
        page, _ = list_events(conn, where, 100, None)
    assert [e["id"] for e in page] == expected


def test_cursor_pages_through_every_event_once(store: Store) -> None:
    _many(store)
    seen: list[str] = []
    cursor = None
    with store.read() as conn:
        while True:
            page, cursor = list_events(conn, EventFilter(), 7, cursor)
            seen += [e["id"] for e in page]
            if cursor is None:
                break
        with pytest.raises(BadCursor):
            list_events(conn, EventFilter(), 7, "not-a-cursor")
    assert len(seen) == len(set(seen)) == 25
    with store.read() as conn:
        page, _ = list_events(conn, EventFilter(camera="cam-1"), 50, None)
    [with_alert] = [e for e in page if e["alerts"]]
    assert with_alert["alerts"][0]["kind"] == "intrusion"


def test_alerts_unacknowledged_first_and_acknowledged_once(store: Store) -> None:
    _many(store)
    with store.begin() as conn:
        assert acknowledge(conn, "nope", "ann", T0) is None
        first = acknowledge(conn, "a1", "ann", T0 + 100)
        again = acknowledge(conn, "a1", "bob", T0 + 200)
    assert first is not None and again is not None
    assert (again["acknowledged_by"], again["acknowledged_ns"]) == ("ann", T0 + 100)
    with store.read() as conn:
        listed, unacknowledged = list_alerts(conn, acknowledged=None, camera=None, limit=10)
    assert unacknowledged == 0 and [a["id"] for a in listed] == ["a1"]


# -- migrations -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upgrade_from_the_first_schema_keeps_every_event(dialect: str, tmp_path: Path) -> None:
    with fresh_database(dialect, tmp_path) as url:
        old = Store(url)
        try:
            old.migrate("0001")
            assert old.revision() == "0001"
            with old.begin() as conn:
                names = set(sa.inspect(conn).get_table_names())
            assert "cameras" not in names and "events" in names
            # Events and alerts written by the previous release, with its schema.
            batch: list[Message] = []
            for i in range(40):
                ev = f"cam-1-{i}"
                batch += [opened("cam-1", ev, T0 + i * S),
                          result("cam-1", i, T0 + i * S, [PERSON], event_id=ev)]  # fmt: skip
            write_0001(old, batch)
            with old.begin() as conn:
                conn.execute(
                    alerts.insert().values(
                        id="a", camera="cam-1", event_id="cam-1-3", kind="intrusion", rule=0,
                        label="person", confidence=0.8, capture_ns=T0 + 3 * S, seq=3,
                        model="coco", frames=1, raised_ns=T0 + 3 * S,
                    )
                )  # fmt: skip
                before = conn.execute(sa.select(events).order_by(events.c.id)).all()
        finally:
            old.close()
        new = Store(url)
        try:
            new.migrate()
            assert new.revision() == head_revision() == "0002"
            with new.read() as conn:
                after = conn.execute(sa.select(events).order_by(events.c.id)).all()
                state = conn.execute(
                    sa.text("SELECT camera, kind, last_alert_ns FROM alert_state")
                ).all()
            assert after == before and len(after) == 40
            # The cooldown state is back-filled from the alerts already raised.
            assert [tuple(r) for r in state] == [("cam-1", "intrusion", T0 + 3 * S)]
            write(new, [status("cam-1", T0 + 50 * S)])  # the new table works
        finally:
            new.close()


def write_0001(store: Store, messages: Iterable[Message]) -> None:
    """What the first release wrote: the same writer, without camera status (no table)."""
    write(store, [m for m in messages if not isinstance(m, CameraStatus)])
