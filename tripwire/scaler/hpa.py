"""The Horizontal Pod Autoscaler's arithmetic, as pure functions of an injected time.

Ported from kube-controller-manager's podautoscaler (horizontal.go, replica_calculator.go) for
the one metric shape KEDA gives it here: an External metric with an AverageValue target.

- ``metric_replicas``: ceil(metric / target), or the current count when the ratio is within
  the tolerance (default 10 %);
- ``stabilize`` / ``stabilize_legacy``: the stabilization window over past recommendations;
- ``limit_rate`` / ``limit_legacy``: the scaleUp/scaleDown policies and min/max clamping.

Times are seconds on any monotonic clock. Windows compare the way the controller does: with a
``behavior`` block a sample counts while it is strictly younger than the window
(``timestamp.After(cutoff)``); without one, while it is not older (``!Before(cutoff)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tripwire.scaler.behavior import (
    DEFAULT_DOWNSCALE_STABILIZATION_S,
    HpaBehavior,
    ScalingRules,
)

# convertDesiredReplicasWithRules without a behavior block: at most max(2 * current, 4).
LEGACY_SCALE_UP_FACTOR = 2.0
LEGACY_SCALE_UP_MINIMUM = 4.0
LEGACY_STABILIZATION_S = DEFAULT_DOWNSCALE_STABILIZATION_S


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One unstabilized replica recommendation, kept for the stabilization window."""

    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """One rescale the HPA made: ``change`` pods added (up list) or removed (down list)."""

    at: float
    change: int


def milli(value: float) -> int:
    """A metric or target as the milli-quantity KEDA hands the HPA (truncated, as in Go)."""
    return int(value * 1000)


def within_tolerance(ratio: float, up: float, down: float) -> bool:
    """The HPA skips a rescale while 1 - down <= ratio <= 1 + up."""
    return 1.0 - down <= ratio <= 1.0 + up


def metric_replicas(
    metric: float, target: float, replicas: int, up: float = 0.1, down: float = 0.1
) -> int:
    """Replicas for an AverageValue target: ceil(metric / target), unless within tolerance.

    ``replicas`` is the target's status count (pods that exist); at 0 the ratio is undefined
    and the computed count is returned, as the controller's float arithmetic does.
    """
    usage, per_pod = milli(metric), milli(target)
    if per_pod <= 0:
        raise ValueError(f"target {target} is below the HPA's milli resolution")
    if replicas > 0 and within_tolerance(usage / (per_pod * replicas), up, down):
        return replicas
    return -(-usage // per_pod)


def stabilize(
    now: float,
    desired: int,
    current: int,
    history: Iterable[Recommendation],
    up_window_s: float,
    down_window_s: float,
) -> int:
    """stabilizeRecommendationWithBehaviors: hold between the window's min and max advice.

    Scale-up takes the lowest recommendation of the up window, scale-down the highest of the
    down window; the current count is kept when it lies between the two.
    """
    up_limit = down_limit = desired
    for rec in history:
        if rec.at > now - up_window_s:
            up_limit = min(up_limit, rec.replicas)
        if rec.at > now - down_window_s:
            down_limit = max(down_limit, rec.replicas)
    return min(max(current, up_limit), down_limit)


def stabilize_legacy(
    now: float,
    desired: int,
    history: Iterable[Recommendation],
    window_s: float = LEGACY_STABILIZATION_S,
) -> int:
    """stabilizeRecommendation (no behavior block): the highest advice of the window."""
    return max([desired, *(rec.replicas for rec in history if rec.at >= now - window_s)])


def changed_within(now: float, period_s: float, events: Iterable[ScaleEvent]) -> int:
    """getReplicasChangePerPeriod: pods changed by events strictly younger than the period."""
    return sum(event.change for event in events if event.at > now - period_s)


def _period_start(
    now: float,
    current: int,
    period_s: float,
    ups: Sequence[ScaleEvent],
    downs: Sequence[ScaleEvent],
) -> int:
    """The replica count at the start of a policy's period: current minus what the HPA
    added, plus what it removed, within the period."""
    return current - changed_within(now, period_s, ups) + changed_within(now, period_s, downs)


def scale_up_limit(
    now: float,
    current: int,
    rules: ScalingRules,
    ups: Sequence[ScaleEvent],
    downs: Sequence[ScaleEvent],
) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the up policies allow now."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(now, current, policy.period_seconds, ups, downs)
        if policy.type == "Pods":
            proposals.append(start + policy.value)
        else:  # rounded up, or a small count could never grow
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    return min(proposals) if rules.select_policy == "Min" else max(proposals)


def scale_down_limit(
    now: float,
    current: int,
    rules: ScalingRules,
    ups: Sequence[ScaleEvent],
    downs: Sequence[ScaleEvent],
) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the down policies allow now."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(now, current, policy.period_seconds, ups, downs)
        if policy.type == "Pods":
            proposals.append(start - policy.value)
        else:  # truncated, as the int32 conversion in the controller does
            proposals.append(int(start * (1 - policy.value / 100)))
    # "Min" selects the smallest change, i.e. the highest floor.
    return max(proposals) if rules.select_policy == "Min" else min(proposals)


def limit_rate(
    now: float,
    desired: int,
    current: int,
    floor: int,
    ceiling: int,
    behavior: HpaBehavior,
    ups: Sequence[ScaleEvent],
    downs: Sequence[ScaleEvent],
) -> int:
    """convertDesiredReplicasWithBehaviorRate: clamp to the policies and to [floor, ceiling]."""
    if desired > current:
        limit = max(scale_up_limit(now, current, behavior.scale_up, ups, downs), current)
        return min(desired, ceiling, limit)
    if desired < current:
        limit = min(scale_down_limit(now, current, behavior.scale_down, ups, downs), current)
        return max(desired, floor, limit)
    return desired


def limit_legacy(desired: int, current: int, floor: int, ceiling: int) -> int:
    """convertDesiredReplicasWithRules (no behavior block): [floor, min(ceiling, 2x or 4)]."""
    scale_up_limit = int(max(LEGACY_SCALE_UP_FACTOR * current, LEGACY_SCALE_UP_MINIMUM))
    if desired < floor:
        return floor
    return min(desired, ceiling, scale_up_limit)
