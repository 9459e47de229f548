"""Keep-alive policies: the annotations that pick them, their windows, and the scaler's use of
them (the same rules on simulated time, and the local scaler's executor pre-warming a real
worker process on an injected clock)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tripwire.keepalive import (
    ANNOTATION_PREFIX,
    BreakEven,
    Fixed,
    HybridHistogram,
    KeepAliveSpec,
    spec_from_annotations,
)
from tripwire.meters.power_profile import load_profile
from tripwire.scaler import PolicyError, Scaler, policy_file, policy_from_object
from tripwire.scaler.executor import LocalScaler, WorkerPool

P = ANNOTATION_PREFIX


def shipped(**annotations: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(policy_file("nats").read_text())
    doc["metadata"]["annotations"] = {**annotations}
    return doc


def test_no_annotation_is_kedas_fixed_cooldown() -> None:
    policy = policy_from_object(shipped())
    assert policy.keep_alive == KeepAliveSpec()
    scaler = Scaler(policy)
    assert isinstance(scaler.keep_alive, Fixed)
    assert scaler.window_s == policy.cooldown_period_s == 60


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({f"{P}polcy": "histogram"}, f"{P}polcy: unknown keep-alive setting"),
        ({f"{P}policy": "lru"}, f"{P}policy: Input should be 'fixed', 'histogram'"),
        ({f"{P}policy": "break-even"}, f"needs {P}profile"),
        ({f"{P}min-window-s": "-1"}, f"{P}min-window-s: Input should be greater than"),
        ({f"{P}policy": "break-even", f"{P}profile": "z80"}, "no power profile 'z80'"),
        ({f"{P}policy": "break-even", f"{P}profile": "cpu"}, "break-even needs a GPU profile"),
    ],
)
def test_bad_annotations_are_refused_with_the_key(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_object(shipped(**annotations), "so.yaml")
    assert "so.yaml: metadata.annotations:" in str(err.value)
    assert message in str(err.value)


def test_other_annotations_are_left_to_kubernetes() -> None:
    spec = spec_from_annotations({"example.com/owner": "ops", f"{P}policy": "histogram"})
    assert spec.policy == "histogram"


def test_histogram_falls_back_until_representative_then_prewarms() -> None:
    policy = HybridHistogram(KeepAliveSpec(policy="histogram", min_gaps=10), fallback_s=60)
    for _ in range(9):
        policy.observe_gap(200.0)
    assert (policy.prewarm_s(), policy.window_s(False)) == (None, 60), "9 gaps: fixed"
    policy.observe_gap(205.0)
    # head: bin [200, 210) -> 200 x 0.9; tail: its end 210 x 1.1 = 231, less the pre-warm
    assert policy.prewarm_s() == pytest.approx(180.0)
    assert policy.window_s(prewarmed=True) == pytest.approx(231.0 - 180.0)
    assert policy.window_s(prewarmed=False) == 15.0, "after demand: release at the floor"


def test_histogram_short_head_keeps_alive_to_the_tail_and_flat_falls_back() -> None:
    short = HybridHistogram(KeepAliveSpec(policy="histogram"), fallback_s=60)
    for gap in [5.0, 8.0, 12.0, 30.0, 40.0, 44.0, 90.0, 91.0, 92.0, 95.0]:
        short.observe_gap(gap)
    assert short.prewarm_s() is None
    assert short.window_s(False) == pytest.approx(100.0 * 1.1)
    # every bin as full as the next: no pattern (CV 0 < 2), so the fixed window
    flat = HybridHistogram(KeepAliveSpec(policy="histogram", range_s=100.0), fallback_s=60)
    for gap in range(0, 100, 10):
        flat.observe_gap(gap + 1.0)
    assert not flat.learnt and flat.window_s(False) == 60
    # most gaps beyond the range: not representative either
    far = HybridHistogram(KeepAliveSpec(policy="histogram", range_s=100.0), fallback_s=60)
    for _ in range(20):
        far.observe_gap(500.0)
    assert not far.learnt


def test_break_even_window_follows_the_energy_balance() -> None:
    h200 = load_profile("h200")
    assert h200.cold_start_j is not None
    miss_j = h200.cold_start_j + h200.resident_w * 8.0
    spec = KeepAliveSpec(policy="break-even", profile="h200", min_window_s=0)
    policy = BreakEven(spec, h200.resident_w, miss_j)
    assert policy.window_s(False) == pytest.approx(miss_j / h200.resident_w), "no gaps yet"
    for _ in range(10):
        policy.observe_gap(12.0)  # holding 12 s (540 J) beats a 1060 J start: cover them
    assert policy.window_s(False) == 12.0
    long_gaps = BreakEven(spec, h200.resident_w, miss_j)
    for _ in range(10):
        long_gaps.observe_gap(600.0)  # 27 kJ held vs 1 kJ per start: release at once
    assert long_gaps.window_s(False) == 0.0
    assert long_gaps.expected_j(0.0) < long_gaps.expected_j(600.0)
    # pricing a wait at 30 kJ (over what 600 s held costs): now holding through them pays
    priced = BreakEven(spec, h200.resident_w, miss_j + 30_000)
    for _ in range(10):
        priced.observe_gap(600.0)
    assert priced.window_s(False) == 600.0


def test_scaler_releases_at_the_first_poll_past_the_learnt_window() -> None:
    doc = shipped(**{f"{P}policy": "break-even", f"{P}profile": "h200"})
    scaler = Scaler(policy_from_object(doc), created_at=0.0)
    window = scaler.window_s
    assert window == pytest.approx(700 / 45 + 8.0)  # (cold_start_j + 8 s x 45 W) / 45 W
    assert scaler.wake(0.0) == 1
    t = 0.0
    while scaler.replicas:
        t += 5.0
        scaler.decide(t, 0)
    assert window < t <= window + 5.0 and scaler.last is not None
    assert scaler.last.reason == "cooldown"


def test_scaler_feeds_gaps_and_prewarms_on_simulated_time() -> None:
    doc = shipped(**{f"{P}policy": "histogram", f"{P}min-gaps": "3"})
    scaler = Scaler(policy_from_object(doc), created_at=0.0)
    t = 0.0
    for demand in (0.0, 100.0, 200.0, 300.0):  # three 100 s gaps, each with idle polls
        while t < demand:
            scaler.decide(t, 0)
            t += 5.0
        scaler.wake(demand)
    assert scaler.keep_alive.prewarm_s() == pytest.approx(90.0)
    while scaler.replicas:  # after demand the floor window: gone ~15-20 s later
        t += 5.0
        scaler.decide(t, 0)
    assert t <= 300.0 + 15.0 + 5.0
    assert scaler.prewarm_at == pytest.approx(390.0)
    assert scaler.prewarm(390.0) == 1 and scaler.last is not None
    assert scaler.last.reason == "prewarm" and scaler.prewarm_at is None
    assert scaler.window_s == pytest.approx(110 * 1.1 - 90.0), "pre-warmed: the keep-alive"


STAND_IN = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
STAND_IN += "while True: time.sleep(0.1)\n"


async def test_local_scaler_prewarms_a_real_worker_on_an_injected_clock(tmp_path: Path) -> None:
    doc = shipped(**{f"{P}policy": "histogram", f"{P}min-gaps": "3"})
    clock = [0.0]
    pool = WorkerPool(
        [sys.executable, "-c", STAND_IN],
        dict(os.environ),
        5.0,
        tmp_path / "logs",
        clock=lambda: clock[0],
    )
    depth = [0]

    async def read_depth() -> int:
        return depth[0]

    scaler = Scaler(policy_from_object(doc), created_at=0.0)
    local = LocalScaler(scaler, read_depth, pool, clock=lambda: clock[0])
    try:
        for demand in (0.0, 100.0, 200.0, 300.0):
            while clock[0] < demand:
                await local.step()
                clock[0] += 1.0
            local.wake()
            await local.step()
        assert pool.started >= 1
        while scaler.replicas:
            clock[0] += 1.0
            await local.step()
        assert pool.running == 0
        started = pool.started
        while clock[0] < 389.0:  # nothing runs until the pre-warm is due
            clock[0] += 1.0
            await local.step()
            assert pool.running == 0
        clock[0] = 390.5
        await local.step()  # the pre-warm, then the poll that was due
        assert pool.running == 1 and pool.started == started + 1
        assert scaler.replicas == 1 and scaler.prewarm_at is None
    finally:
        await pool.stop_all()
