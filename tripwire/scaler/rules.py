"""KEDA's scaling rules plus the HPA step, as a small state machine with an injected clock.

On a cluster two controllers share the work: KEDA's scale loop (every ``pollingInterval``)
owns 0 <-> 1, the HPA owns 1 <-> N. ``Scaler.decide`` runs both for one poll:

- active iff metric > activation threshold (strictly greater);
- 0 -> max(minReplicaCount, 1) when active (KEDA's activation); the HPA acts from the next poll;
- at >= 1 replica the HPA step: ceil(metric / target) unless within the tolerance,
  stabilization window, scaleUp/scaleDown policies, clamped to
  [max(minReplicaCount, 1), maxReplicaCount];
- -> 0 only when inactive, minReplicaCount is 0 and lastActiveTime + cooldownPeriod is
  strictly past (before the first activity: creation + initialCooldownPeriod);
- below minReplicaCount while inactive: back to minReplicaCount.

``wake`` is the push activation (beyond KEDA): start the first replica now, counted as active
at that time. The cooldown is the keep-alive policy's window (:mod:`tripwire.keepalive`; the
file's ``cooldownPeriod`` unless the policy file picks another policy): the scaler tells the
policy each idle gap (demand -> demand with an empty poll between) and, for a pre-warming
policy, ``prewarm_at`` says when to start a replica before the next demand. Nothing here
reads a clock, starts a process or logs; the executor does.

The replica count is the target's desired count (a Deployment's spec.replicas), not the
processes alive: the executor converges to it, replacing crashed workers. When the metric
cannot be read the executor skips ``decide`` and the count holds, as with KEDA without a
``fallback``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tripwire.keepalive import KeepAlive, keep_alive_for
from tripwire.scaler import hpa
from tripwire.scaler.behavior import DEFAULT_TOLERANCE
from tripwire.scaler.hpa import Recommendation, ScaleEvent
from tripwire.scaler.policy import ScalingPolicy

Reason = Literal[
    "activation",  # KEDA: active at 0 replicas -> max(minReplicaCount, 1)
    "wake",  # push activation: as KEDA's activation, out of band
    "prewarm",  # the keep-alive policy starts a replica ahead of the demand it expects
    "hpa",  # the HPA step decided (which may be no change)
    "above max",  # the HPA: current > maxReplicaCount -> maxReplicaCount
    "below min",  # the HPA or KEDA: current < the floor -> the floor
    "cooldown",  # KEDA: inactive, lastActiveTime + cooldownPeriod past -> 0
    "idle",  # inactive at 0: nothing to do
]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one ``decide`` or ``wake`` concluded, for the executor's log and timeline."""

    at: float
    metric: float | None  # None for a wake
    active: bool
    previous: int
    replicas: int
    reason: Reason


def is_active(metric: float, activation: float) -> bool:
    """KEDA's activation: strictly greater than the threshold."""
    return metric > activation


def cooldown_passed(
    now: float,
    last_active: float | None,
    created_at: float,
    cooldown_s: float,
    initial_cooldown_s: float,
) -> bool:
    """scaleToZeroOrIdle: may an inactive target go to zero now?

    ``LastActiveTime + cooldownPeriod`` must be strictly before now; with no activity yet,
    ``creation + initialCooldownPeriod`` (KEDA's ``time.Before``).
    """
    if last_active is None:
        return created_at + initial_cooldown_s < now
    return last_active + cooldown_s < now


class Scaler:
    """One ScaledObject's replica decisions over injected time (seconds, monotonic)."""

    def __init__(
        self,
        policy: ScalingPolicy,
        *,
        replicas: int = 0,
        created_at: float | None = None,
        keep_alive: KeepAlive | None = None,
    ) -> None:
        if replicas < 0:
            raise ValueError(f"replicas {replicas} < 0")
        self.policy = policy
        self.keep_alive = keep_alive or keep_alive_for(policy.keep_alive, policy.cooldown_period_s)
        self._last_demand: float | None = None  # last wake or active poll (not a pre-warm)
        self._idle_seen = False  # a poll found the queue empty since the last demand
        self._prewarmed = False  # the replica was started by a pre-warm, no demand since
        self._zero_at: float | None = None
        self._replicas = replicas
        self._created_at = created_at
        self._now: float | None = None
        self._last_active: float | None = None
        self._next_poll: float | None = None
        self._last: Decision | None = None
        self._recommendations: list[Recommendation] = []
        self._ups: list[ScaleEvent] = []
        self._downs: list[ScaleEvent] = []

    @property
    def replicas(self) -> int:
        """The desired replica count now."""
        return self._replicas

    @property
    def last_active_at(self) -> float | None:
        """KEDA's status.lastActiveTime."""
        return self._last_active

    @property
    def next_poll_at(self) -> float | None:
        """When the next poll is due; None before the first (due at once)."""
        return self._next_poll

    @property
    def last(self) -> Decision | None:
        """The most recent decision."""
        return self._last

    def poll_due(self, now: float) -> bool:
        """Is a poll due? The first is due at once, then every pollingInterval after a poll."""
        return self._next_poll is None or now >= self._next_poll

    def wake(self, now: float) -> int:
        """Push activation: 0 -> max(minReplicaCount, 1) now; active at ``now`` either way."""
        self._tick(now)
        self._demand(now)
        return self._activate(now, "wake")

    @property
    def window_s(self) -> float:
        """The keep-alive window (cooldown) in force for the idle spell under way."""
        return self.keep_alive.window_s(self._prewarmed)

    @property
    def prewarm_at(self) -> float | None:
        """When the keep-alive policy wants a replica back ahead of demand (None: not now)."""
        if self._replicas or self._prewarmed or self._last_demand is None:
            return None
        ahead = self.keep_alive.prewarm_s()
        if ahead is None:
            return None
        at = self._last_demand + ahead
        return None if self._zero_at is not None and at <= self._zero_at else at

    def prewarm(self, now: float) -> int:
        """Start a replica for the demand the policy expects; it stays the policy's
        keep-alive window unless demand comes."""
        self._tick(now)
        self._prewarmed = True
        return self._activate(now, "prewarm")

    def _activate(self, now: float, reason: Reason) -> int:
        previous = self._replicas
        self._last_active = now
        if previous == 0:
            self._replicas = self.policy.activation_replicas
        self._last = Decision(now, None, True, previous, self._replicas, reason)
        return self._replicas

    def _demand(self, now: float) -> None:
        if self._idle_seen and self._last_demand is not None:
            self.keep_alive.observe_gap(now - self._last_demand)
        self._idle_seen = self._prewarmed = False
        self._last_demand = now

    def skip_poll(self, now: float) -> None:
        """The metric could not be read: hold the count and poll again a pollingInterval on."""
        self._tick(now)
        self._next_poll = now + self.policy.polling_interval_s

    def decide(self, now: float, metric: float, *, running: int | None = None) -> int:
        """One poll: the replica count KEDA and the HPA would set for ``metric`` at ``now``.

        ``running`` is how many workers exist (the HPA's status.replicas, used for the
        tolerance ratio); it defaults to the desired count.
        """
        self._tick(now)
        policy = self.policy
        self._next_poll = now + policy.polling_interval_s
        previous = self._replicas
        active = is_active(metric, policy.activation_value)
        reason: Reason
        if active:
            self._last_active = now
            self._demand(now)
            if previous == 0:
                replicas, reason = policy.activation_replicas, "activation"
            else:
                replicas, reason = self._hpa_step(now, metric, previous, running)
        elif previous == 0 and policy.min_replicas == 0:
            replicas, reason = 0, "idle"
        elif previous > 0 and policy.min_replicas == 0 and self._cooled_down(now):
            replicas, reason = 0, "cooldown"
        elif previous < policy.min_replicas:
            replicas, reason = policy.min_replicas, "below min"
        else:  # cooling down, or held at minReplicaCount > 0: the HPA still runs
            replicas, reason = self._hpa_step(now, metric, previous, running)
        if not active:
            self._idle_seen = True
        if replicas == 0 and previous > 0:
            self._zero_at = now
        self._replicas = replicas
        self._last = Decision(now, metric, active, previous, replicas, reason)
        return replicas

    def _tick(self, now: float) -> None:
        if self._now is not None and now < self._now:
            raise ValueError(f"time went backwards: {now} after {self._now}")
        self._now = now
        if self._created_at is None:
            self._created_at = now
        if not self._recommendations:
            # recordInitialRecommendation: the HPA's first sample is the count it found.
            self._recommendations.append(Recommendation(self._created_at, self._replicas))

    def _cooled_down(self, now: float) -> bool:
        created = self._created_at if self._created_at is not None else now
        return cooldown_passed(
            now,
            self._last_active,
            created,
            self.window_s,
            self.policy.initial_cooldown_period_s,
        )

    def _hpa_step(
        self, now: float, metric: float, current: int, running: int | None
    ) -> tuple[int, Reason]:
        policy, behavior = self.policy, self.policy.behavior
        floor, ceiling = policy.hpa_min_replicas, policy.max_replicas
        if current > ceiling:
            return ceiling, "above max"
        if current < floor:
            return floor, "below min"
        up_tol = behavior.scale_up.tolerance if behavior else DEFAULT_TOLERANCE
        down_tol = behavior.scale_down.tolerance if behavior else DEFAULT_TOLERANCE
        status = current if running is None else running
        desired = hpa.metric_replicas(metric, policy.target_value, status, up_tol, down_tol)
        if behavior is None:
            stabilized = hpa.stabilize_legacy(now, desired, self._recommendations)
            self._remember(now, desired, hpa.LEGACY_STABILIZATION_S, inclusive=True)
            return hpa.limit_legacy(stabilized, current, floor, ceiling), "hpa"
        up, down = behavior.scale_up, behavior.scale_down
        stabilized = hpa.stabilize(
            now,
            desired,
            current,
            self._recommendations,
            up.stabilization_window_seconds,
            down.stabilization_window_seconds,
        )
        window = max(up.stabilization_window_seconds, down.stabilization_window_seconds)
        self._remember(now, desired, window, inclusive=False)
        replicas = hpa.limit_rate(
            now, stabilized, current, floor, ceiling, behavior, self._ups, self._downs
        )
        # storeScaleEvent: only the HPA's own rescales limit its later ones.
        if replicas > current:
            self._ups = self._young(now, self._ups, up.longest_period())
            self._ups.append(ScaleEvent(now, replicas - current))
        elif replicas < current:
            self._downs = self._young(now, self._downs, down.longest_period())
            self._downs.append(ScaleEvent(now, current - replicas))
        return replicas, "hpa"

    def _remember(self, now: float, desired: int, window_s: float, *, inclusive: bool) -> None:
        cutoff = now - window_s
        self._recommendations = [
            rec
            for rec in self._recommendations
            if rec.at > cutoff or (inclusive and rec.at == cutoff)
        ]
        self._recommendations.append(Recommendation(now, desired))

    @staticmethod
    def _young(now: float, events: list[ScaleEvent], period_s: float) -> list[ScaleEvent]:
        return [event for event in events if event.at > now - period_s]
