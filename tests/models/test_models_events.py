"""The events record with several models: each model's result of a frame is its own row, and a
rule that names a model reads that model's results only (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from functions.events.alerts import AlertRules
from tests.event_factory import T0, S, result
from tests.events.test_events_alerts import CAMERAS, decide
from tripwire.alert_rules import AlertRule
from tripwire.eventstore import Store
from tripwire.eventstore.tables import results


def test_each_models_results_stay_apart_and_rules_read_their_model(store: Store) -> None:
    crash = AlertRule(kind="accident", classes=["Accident"], model="accident", cooldown_s=0)
    person = AlertRule(kind="intrusion", classes=["person"], model="coco", cooldown_s=0)
    rules = AlertRules([crash, person], CAMERAS)
    frames = []
    for seq in range(3):
        t = T0 + seq * S
        # The same frame seen by both models; each rule's class is in the other model's
        # output too, so only the rule's model keeps it from reading the wrong results.
        found = [("person", 0.9, (1.0, 1.0, 9.0, 9.0)), ("Accident", 0.9, (1.0, 1.0, 9.0, 9.0))]
        frames.append(result("cam-b", seq, t, found, model="coco"))
        label = ("Accident", 0.9) if seq == 2 else ("person", 0.9)
        frames.append(result("cam-b", seq, t, model="accident", top=label))
    raised = decide(store, rules, frames)
    assert sorted((a["kind"], a["model"], a["seq"]) for a in raised) == [
        ("accident", "accident", 2),
        ("intrusion", "coco", 0),
        ("intrusion", "coco", 1),
        ("intrusion", "coco", 2),
    ]
    with store.begin() as conn:
        rows = conn.execute(sa.select(results.c.model, sa.func.count()).group_by(results.c.model))
        assert dict(rows.all()) == {"accident": 3, "coco": 3}
    assert decide(store, rules, frames) == []  # redelivered results: nothing new
