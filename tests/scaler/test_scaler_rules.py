"""The local scaler's rules, one KEDA or HPA rule per case, on fake time (no clock is read)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scaled_object import nats_scaled_object
from tripwire.scaler import (
    HpaBehavior,
    HpaPolicy,
    ScaleDownRules,
    Scaler,
    ScaleUpRules,
    ScalingPolicy,
    cooldown_passed,
    is_active,
    policy_from_object,
)
from tripwire.scaler.hpa import (
    Recommendation,
    ScaleEvent,
    limit_legacy,
    limit_rate,
    metric_replicas,
    scale_down_limit,
    scale_up_limit,
    stabilize,
    stabilize_legacy,
)


def make_policy(
    *,
    target: int = 10,
    activation: int = 0,
    behavior: dict[str, Any] | None = None,
    **spec: Any,
) -> ScalingPolicy:
    """A nats-jetstream ScaledObject with the given spec fields, through the real parser."""
    obj = nats_scaled_object("t", lagThreshold=str(target), activationLagThreshold=str(activation))
    obj["spec"].update(spec)
    if behavior is not None:
        obj["spec"]["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return policy_from_object(obj, "test")


def pods(value: int, period: int) -> HpaPolicy:
    return HpaPolicy(type="Pods", value=value, period_seconds=period)


def percent(value: int, period: int) -> HpaPolicy:
    return HpaPolicy(type="Percent", value=value, period_seconds=period)


# --- activation (KEDA) -------------------------------------------------------------------

ACTIVATION = [
    # activation is strictly greater: metric == activationValue (default 0) stays inactive
    (0, 0, False),
    # one frame above the default threshold of 0 activates
    (1, 0, True),
    # metric == a non-zero activationLagThreshold stays inactive
    (5, 5, False),
    # one above it activates
    (6, 5, True),
    # RabbitMQ's activationValue is a float: compared as floats
    (2, 1.5, True),
]


@pytest.mark.parametrize(("metric", "activation", "active"), ACTIVATION)
def test_is_active(metric: float, activation: float, active: bool) -> None:
    assert is_active(metric, activation) is active


COOLDOWN = [
    # -> 0 needs lastActiveTime + cooldownPeriod strictly before now (time.Before): not at it
    (160.0, 100.0, 0.0, 60, 0, False),
    # just after it, the target may go to zero
    (160.5, 100.0, 0.0, 60, 0, True),
    # inside the cooldown
    (120.0, 100.0, 0.0, 60, 0, False),
    # never active (lastActiveTime nil), no initialCooldownPeriod: creation must be strictly past
    (0.0, None, 0.0, 60, 0, False),
    # ... and then scale-in happens at once, whatever cooldownPeriod says
    (1.0, None, 0.0, 60, 0, True),
    # initialCooldownPeriod protects a freshly created ScaledObject that never was active
    (100.0, None, 0.0, 60, 120, False),
    (121.0, None, 0.0, 60, 120, True),
    # once active, only cooldownPeriod counts; initialCooldownPeriod no longer applies
    (71.0, 10.0, 0.0, 60, 1000, True),
]


@pytest.mark.parametrize(("now", "last", "created", "cooldown", "initial", "passed"), COOLDOWN)
def test_cooldown_passed(
    now: float, last: float | None, created: float, cooldown: int, initial: int, passed: bool
) -> None:
    assert cooldown_passed(now, last, created, cooldown, initial) is passed


# --- the HPA's replica count for an AverageValue target ---------------------------------

METRIC_REPLICAS = [
    # desired = ceil(metric / target): 100 / 32 = 3.125 -> 4
    (100, 32, 1, 0.1, 4),
    # an exact multiple is not rounded up
    (96, 32, 1, 0.1, 3),
    # tolerance: ratio 35 / 32 = 1.094 is within 10 %: stay at 1 though ceil gives 2
    (35, 32, 1, 0.1, 1),
    # tolerance bound is inclusive: ratio 1.1 exactly still skips the rescale
    (35.2, 32, 1, 0.1, 1),
    # beyond the tolerance: ceil(36 / 32) = 2
    (36, 32, 1, 0.1, 2),
    # downward too: ratio 288 / 320 = 0.9 is within, keep 10 though ceil gives 9
    (288, 32, 10, 0.1, 10),
    # ratio 0.8875 is outside: ceil(284 / 32) = 9
    (284, 32, 10, 0.1, 9),
    # a configured tolerance (behavior.scaleUp.tolerance 0.05): ratio 1.0625 rescales
    (34, 32, 1, 0.05, 2),
    # metric 0 recommends 0; the floor is applied later (the HPA's minReplicas)
    (0, 32, 3, 0.1, 0),
    # no pod exists yet (status.replicas 0): no ratio, plain ceil
    (100, 32, 0, 0.1, 4),
    # float targets are milli-quantities: ceil(1000m / 300m) = 4
    (1, 0.3, 1, 0.1, 4),
]


@pytest.mark.parametrize(("metric", "target", "replicas", "tolerance", "expected"), METRIC_REPLICAS)
def test_metric_replicas(
    metric: float, target: float, replicas: int, tolerance: float, expected: int
) -> None:
    assert metric_replicas(metric, target, replicas, tolerance, tolerance) == expected


# --- stabilization windows ----------------------------------------------------------------

STABILIZE = [
    # scale-down stabilization: the max advice of the window (4 at t=0) holds 4 at t=29
    (29.0, 1, 4, [(0.0, 4)], 0, 30, 4),
    # a sample exactly one window old no longer counts (timestamp.After(cutoff)): 1 at t=30
    (30.0, 1, 4, [(0.0, 4)], 0, 30, 1),
    # scale-up stabilization: the min advice of the up window (2) holds growth back
    (20.0, 6, 2, [(10.0, 2)], 30, 0, 2),
    # the up window is strict too: a sample exactly 30 s old no longer holds growth back
    (30.0, 6, 2, [(0.0, 2)], 30, 0, 6),
    # with no up window (the default 0) growth is immediate
    (20.0, 6, 2, [(10.0, 2)], 0, 0, 6),
    # the current count is kept while it lies between the window's min (2) and max (6)
    (20.0, 4, 3, [(10.0, 2), (15.0, 6)], 30, 30, 3),
]


@pytest.mark.parametrize(
    ("now", "desired", "current", "history", "up", "down", "expected"), STABILIZE
)
def test_stabilize(
    now: float,
    desired: int,
    current: int,
    history: list[tuple[float, int]],
    up: int,
    down: int,
    expected: int,
) -> None:
    recs = [Recommendation(at, replicas) for at, replicas in history]
    assert stabilize(now, desired, current, recs, up, down) == expected


STABILIZE_LEGACY = [
    # no behavior block: the highest advice of the last 300 s (the controller flag's default)
    (299.0, 1, [(0.0, 4)], 4),
    # that window is inclusive (!Before(cutoff)): a sample exactly 300 s old still counts
    (300.0, 1, [(0.0, 4)], 4),
    (300.5, 1, [(0.0, 4)], 1),
    # it never holds growth back
    (10.0, 6, [(0.0, 4)], 6),
]


@pytest.mark.parametrize(("now", "desired", "history", "expected"), STABILIZE_LEGACY)
def test_stabilize_legacy(
    now: float, desired: int, history: list[tuple[float, int]], expected: int
) -> None:
    recs = [Recommendation(at, replicas) for at, replicas in history]
    assert stabilize_legacy(now, desired, recs) == expected


# --- scaleUp / scaleDown policies --------------------------------------------------------

UP_LIMITS = [
    # default scaleUp: +4 pods or +100 % per 15 s, whichever allows more (selectPolicy Max)
    (0.0, 1, ScaleUpRules(), [], [], 5),
    (0.0, 10, ScaleUpRules(), [], [], 20),
    # selectPolicy Min: the policy allowing the least change
    (0.0, 10, ScaleUpRules(select_policy="Min"), [], [], 14),
    # selectPolicy Disabled: no scale-up at all
    (0.0, 10, ScaleUpRules(select_policy="Disabled"), [], [], 10),
    # pods added within the period count against it: start = current - added = 4 - 2
    (20.0, 4, ScaleUpRules(policies=(pods(2, 15),)), [(10.0, 2)], [], 4),
    # an event exactly periodSeconds old no longer counts
    (25.0, 4, ScaleUpRules(policies=(pods(2, 15),)), [(10.0, 2)], [], 6),
    # pods removed within the period are given back: start = current + removed = 2 + 2
    (20.0, 2, ScaleUpRules(policies=(pods(1, 15),)), [], [(10.0, 2)], 5),
    # Percent rounds up, or a small count could never grow: ceil(1 * 1.1) = 2
    (0.0, 1, ScaleUpRules(policies=(percent(10, 15),)), [], [], 2),
]


@pytest.mark.parametrize(("now", "current", "rules", "ups", "downs", "expected"), UP_LIMITS)
def test_scale_up_limit(
    now: float,
    current: int,
    rules: ScaleUpRules,
    ups: list[tuple[float, int]],
    downs: list[tuple[float, int]],
    expected: int,
) -> None:
    up_events = [ScaleEvent(at, change) for at, change in ups]
    down_events = [ScaleEvent(at, change) for at, change in downs]
    assert scale_up_limit(now, current, rules, up_events, down_events) == expected


DOWN_LIMITS = [
    # default scaleDown: all pods may go within 15 s (Percent 100)
    (0.0, 4, ScaleDownRules(), [], 0),
    # Percent truncates: int(3 * 0.5) = 1
    (0.0, 3, ScaleDownRules(policies=(percent(50, 30),)), [], 1),
    # selectPolicy Max on scale-down: the policy removing most (-50 % beats -1 pod)
    (0.0, 4, ScaleDownRules(policies=(pods(1, 30), percent(50, 30))), [], 2),
    # selectPolicy Min: the policy removing least
    (0.0, 4, ScaleDownRules(select_policy="Min", policies=(pods(1, 30), percent(50, 30))), [], 3),
    # Disabled: never scale down
    (0.0, 4, ScaleDownRules(select_policy="Disabled"), [], 4),
    # pods removed within the period count: start = 2 + 2 = 4, -50 % = 2: nothing more now
    (20.0, 2, ScaleDownRules(policies=(percent(50, 30),)), [(10.0, 2)], 2),
]


@pytest.mark.parametrize(("now", "current", "rules", "downs", "expected"), DOWN_LIMITS)
def test_scale_down_limit(
    now: float, current: int, rules: ScaleDownRules, downs: list[tuple[float, int]], expected: int
) -> None:
    down_events = [ScaleEvent(at, change) for at, change in downs]
    assert scale_down_limit(now, current, rules, [], down_events) == expected


LIMIT_RATE = [
    # capped by maxReplicaCount even where the policies allow more
    (10, 2, 1, 4, HpaBehavior(), 4),
    # capped by the scale-up policy: +100 % of 2
    (10, 2, 1, 100, HpaBehavior(scale_up=ScaleUpRules(policies=(percent(100, 15),))), 4),
    # floored at the HPA's minimum, max(minReplicaCount, 1), while the HPA runs
    (0, 2, 1, 4, HpaBehavior(), 1),
    # floored by the scale-down policy: -50 % of 4
    (1, 4, 1, 4, HpaBehavior(scale_down=ScaleDownRules(policies=(percent(50, 30),))), 2),
    # no change asked, no change made
    (3, 3, 1, 4, HpaBehavior(), 3),
]


@pytest.mark.parametrize(
    ("desired", "current", "floor", "ceiling", "behavior", "expected"), LIMIT_RATE
)
def test_limit_rate(
    desired: int, current: int, floor: int, ceiling: int, behavior: HpaBehavior, expected: int
) -> None:
    assert limit_rate(0.0, desired, current, floor, ceiling, behavior, [], []) == expected


LIMIT_LEGACY = [
    # no behavior block: at most max(2 * current, 4) per step
    (10, 1, 1, 100, 4),
    (10, 3, 1, 100, 6),
    # and maxReplicaCount
    (10, 3, 1, 5, 5),
    # scale-down has no rate limit, only the floor
    (0, 8, 1, 100, 1),
]


@pytest.mark.parametrize(("desired", "current", "floor", "ceiling", "expected"), LIMIT_LEGACY)
def test_limit_legacy(desired: int, current: int, floor: int, ceiling: int, expected: int) -> None:
    assert limit_legacy(desired, current, floor, ceiling) == expected


# --- the state machine: KEDA and the HPA together ---------------------------------------

# Each case: policy fields, the starting replicas, then (time, metric or "wake", expected
# replicas) steps. The comment names the rule it pins.
FAST_DOWN = {"scaleDown": {"stabilizationWindowSeconds": 0}}
SCENARIOS: list[tuple[str, dict[str, Any], int, list[tuple[float, float | str, int]]]] = [
    (
        # activation is strictly greater: metric == activationValue stays at 0
        "activation-strict",
        {"activation": 5},
        0,
        [(0, 5, 0), (10, 6, 1)],
    ),
    (
        # 0 -> 1 on activation, never straight to ceil(metric / target): that is the HPA's job
        "activation-to-one",
        {"target": 10},
        0,
        [(0, 1000, 1)],
    ),
    (
        # 1 -> N by the HPA at the next poll: ceil(35 / 10) = 4
        "hpa-next-poll",
        {"target": 10},
        0,
        [(0, 35, 1), (30, 35, 4)],
    ),
    (
        # capped by maxReplicaCount
        "max-replicas",
        {"target": 10, "maxReplicaCount": 3},
        1,
        [(0, 1000, 3)],
    ),
    (
        # within the HPA's 10 % tolerance the count stays: 2 replicas, metric 21 (ratio 1.05)
        "tolerance",
        {"target": 10},
        2,
        [(0, 21, 2), (30, 23, 3)],
    ),
    (
        # behavior.scaleUp.tolerance overrides the cluster's 10 %: ratio 1.05 now rescales
        "behavior-tolerance",
        {"target": 10, "behavior": {"scaleUp": {"tolerance": "0"}}},
        2,
        [(0, 21, 3)],
    ),
    (
        # while cooling down the HPA still runs and floors at 1: metric 0 keeps 1, not 0
        "cooling-down-floor",
        {"target": 10, "cooldownPeriod": 300, "behavior": FAST_DOWN},
        0,
        [(0, 50, 1), (30, 50, 5), (60, 0, 1), (300, 0, 1)],
    ),
    (
        # -> 0 only when lastActiveTime + cooldownPeriod is strictly past (active at 0: not at 60)
        "cooldown-strict",
        {"cooldownPeriod": 60, "pollingInterval": 30},
        0,
        [(0, 1, 1), (30, 0, 1), (60, 0, 1), (90, 0, 0)],
    ),
    (
        # any activity during the cooldown restarts it from that poll
        "cooldown-restarts",
        {"cooldownPeriod": 60},
        0,
        [(0, 1, 1), (50, 1, 1), (100, 0, 1), (111, 0, 0)],
    ),
    (
        # minReplicaCount > 0 never goes to 0, and activation from 0 goes to minReplicaCount
        "min-replicas-floor",
        {"minReplicaCount": 2, "cooldownPeriod": 0, "behavior": FAST_DOWN},
        0,
        [(0, 1, 2), (30, 0, 2), (600, 0, 2)],
    ),
    (
        # inactive below minReplicaCount: KEDA restores minReplicaCount
        "below-min-restored",
        {"minReplicaCount": 2},
        1,
        [(0, 0, 2)],
    ),
    (
        # above maxReplicaCount (set by hand, or a lowered max): the HPA brings it to max
        "above-max",
        {"maxReplicaCount": 3},
        5,
        [(0, 1, 3)],
    ),
    (
        # no behavior block: the HPA's own scale-down stabilization of 300 s holds the peak
        "default-stabilization-300",
        {"target": 10, "cooldownPeriod": 1000},
        0,
        [(0, 40, 1), (10, 40, 4), (20, 0, 4), (310, 0, 4), (320, 0, 1)],
    ),
    (
        # the wake signal: 0 -> 1 at once, without a poll; it counts as active at that time,
        # so the cooldown runs from the wake
        "wake",
        {"cooldownPeriod": 60},
        0,
        [(5, "wake", 1), (30, 0, 1), (65, 0, 1), (66, 0, 0)],
    ),
    (
        # a wake while replicas run changes nothing but lastActiveTime
        "wake-while-running",
        {"target": 10, "cooldownPeriod": 60, "behavior": FAST_DOWN},
        0,
        [(0, 30, 1), (10, 30, 3), (20, "wake", 3), (70, 0, 1), (81, 0, 0)],
    ),
]


@pytest.mark.parametrize(
    ("policy_args", "start", "steps"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_decide(
    policy_args: dict[str, Any], start: int, steps: list[tuple[float, float | str, int]]
) -> None:
    scaler = Scaler(make_policy(**policy_args), replicas=start, created_at=0.0)
    for now, metric, expected in steps:
        if metric == "wake":
            got = scaler.wake(now)
        else:
            assert isinstance(metric, int | float)
            got = scaler.decide(now, metric)
        assert got == expected, f"t={now} metric={metric}: {scaler.last}"
        assert scaler.replicas == got


def test_tolerance_ratio_uses_the_running_workers() -> None:
    # The HPA divides by status.replicas (pods that exist), not by the desired count: two
    # desired but one running, metric 21 is ratio 2.1, not 1.05, so it rescales to 3.
    scaler = Scaler(make_policy(target=10), replicas=2)
    assert scaler.decide(0.0, 21, running=1) == 3


def test_poll_due_follows_the_polling_interval() -> None:
    scaler = Scaler(make_policy(pollingInterval=5))
    assert scaler.poll_due(0.0)  # the first poll is due at once
    scaler.decide(0.0, 0)
    assert not scaler.poll_due(4.9)
    assert scaler.poll_due(5.0)
    scaler.wake(6.0)  # a wake does not move the poll schedule: polling stays the source of truth
    assert scaler.next_poll_at == 5.0
    scaler.decide(7.0, 1)
    assert scaler.next_poll_at == 12.0


def test_time_going_backwards_is_refused() -> None:
    scaler = Scaler(make_policy())
    scaler.decide(10.0, 0)
    with pytest.raises(ValueError, match="backwards"):
        scaler.decide(9.0, 0)


def test_decision_records_the_reason() -> None:
    scaler = Scaler(make_policy(cooldownPeriod=10), created_at=0.0)
    scaler.decide(0.0, 3)
    assert scaler.last is not None
    assert (scaler.last.previous, scaler.last.replicas, scaler.last.reason) == (0, 1, "activation")
    scaler.decide(20.0, 0)
    assert (scaler.last.active, scaler.last.reason, scaler.replicas) == (False, "cooldown", 0)
    assert scaler.last_active_at == 0.0


def test_timeline_zero_one_n_stabilized_one_zero() -> None:
    """A burst over fake time: 0 -> 1 -> N -> (stabilized) -> 1 -> 0, each at its exact poll.

    pollingInterval 10, target 10, max 5, cooldown 120, scale-down stabilization 60 s:
    - t=10  the first frames (metric 30 > 0): KEDA activates, 0 -> 1;
    - t=20  the HPA: ceil(30 / 10) = 3;
    - t=50  the last poll that sees frames (lastActiveTime);
    - t=60  metric 0, but the window still holds 3s: stays 3 ...
    - t=110 the last 3 (t=50) is exactly 60 s old and drops out: the HPA goes to its floor, 1;
    - t=170 lastActiveTime + cooldown = 170 is not strictly past: still 1;
    - t=180 it is: KEDA scales to 0.
    """
    policy = make_policy(
        target=10,
        pollingInterval=10,
        cooldownPeriod=120,
        maxReplicaCount=5,
        behavior={"scaleDown": {"stabilizationWindowSeconds": 60}},
    )
    scaler = Scaler(policy, created_at=0.0)
    metric = {t: 30 for t in range(10, 51, 10)}
    timeline = []
    now = 0.0
    while now <= 250:
        if scaler.poll_due(now):
            before = scaler.replicas
            after = scaler.decide(now, metric.get(int(now), 0))
            if after != before:
                timeline.append((now, after))
        now += 1.0
    assert timeline == [(10.0, 1), (20.0, 3), (110.0, 1), (180.0, 0)]
