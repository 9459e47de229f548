"""The fleet simulator: each site's detector deployment, scaled by the local scaler's own rules.

One :class:`tripwire.scaler.rules.Scaler` per site (one ScaledObject per camera group) is
driven on simulated time exactly as :class:`tripwire.scaler.executor.LocalScaler` drives it
on the wall clock: a push activation (``wake``) when a camera opens an event, a poll every
``pollingInterval`` with the queue depth, the keep-alive policy's pre-warm when it is due,
and worker processes converging to the decided count (started newest-last, stopped
newest-first). What the simulator adds is the world around the rules:

- **queue depth**: motion frames arrive while events are open (their published frames over
  their length); a replica clears ``service_fps``. With no ready replica the frames queue
  (the depth a poll reads); with one, a poll reads the frames in flight: it finds one with
  probability ``min(1, rate x in_flight_s)`` (a camera's frames come evenly; seeded draws),
  as a real poll can land between the frames of a quiet camera;
- **workers**: a start is ready ``cold_start_s`` later (a cold start); a stop holds the
  device ``stop_s`` longer;
- **wake -> first result**: the event's first frame waits for a ready replica and the
  frames queued before it, then ``first_result_s``;
- **energy**: the energy benchmark's device profile and split
  (:meth:`tripwire.meters.power_profile.PowerProfile.split_j`): one device per site.

Fast-forward: polls whose decision cannot change anything (one ready replica at the HPA's
floor, an empty backlog, the same activity as the poll before, before the keep-alive window
ends; or zero replicas and no frames) are skipped, and the first and last poll of every run
are decided. ``fast_forward=False`` decides every poll; the tests check both agree exactly.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from tripwire.fleet.trace import CameraTrace
from tripwire.meters.power_profile import PowerProfile
from tripwire.scaler.policy import ScalingPolicy
from tripwire.scaler.rules import Scaler

INF = math.inf


@dataclass(frozen=True)
class SimOptions:
    cold_start_s: float = 8.0  # worker start -> model loaded (the GPU profiles' assumption)
    first_result_s: float = 0.1  # a ready replica: frame published -> result
    in_flight_s: float = 0.1  # a frame counts in a warm replica's depth this long (fetch -> ack)
    stop_s: float = 1.0  # SIGTERM -> exit: the device is held until then
    service_fps: float | None = None  # frames/s one replica clears; None: the profile's
    fast_forward: bool = True
    seed: int = 1


@dataclass
class _Worker:
    start: float
    ready: float
    stop: float = INF  # SIGTERM sent
    exit: float = INF  # gone


@dataclass
class SiteResult:
    site: str
    cameras: int
    duration_s: float
    events: int = 0
    frames: int = 0
    starts: int = 0  # worker starts: cold starts (energy)
    prewarms: int = 0  # of which the policy's pre-warms
    cold_events: int = 0  # events whose first frame found no ready replica
    held_s: float = 0.0  # the device held by at least one replica
    replica_s: float = 0.0  # GPU-seconds: sum of replica lifetimes
    decisions: int = 0  # decide/wake/prewarm calls into the rules
    latencies: list[float] = field(default_factory=list)
    keep_alive: str = ""
    energy_j: dict[str, float] = field(default_factory=dict)


class _Arrivals:
    """Motion frames published by a site's open events: rate(t) and its integral."""

    def __init__(self, cameras: list[CameraTrace]) -> None:
        marks: list[tuple[float, float]] = []
        opens = []
        for camera in cameras:
            for e in camera.events:
                rate = e.frames / (e.close_s - e.open_s)
                marks += [(e.open_s, rate), (e.close_s, -rate)]
                opens.append(e.open_s)
        marks.sort()
        self.opens = sorted(opens)
        self.times = [t for t, _ in marks]
        rates, cum = [], [0.0]
        level = 0.0
        for i, (t, delta) in enumerate(marks):
            if i:
                cum.append(cum[-1] + level * (t - marks[i - 1][0]))
            level = max(0.0, level + delta)
            rates.append(level)
        self.rates = rates
        self.cum = cum

    def rate(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t) - 1
        return self.rates[i] if i >= 0 else 0.0

    def count(self, t: float) -> float:
        """Frames published in [0, t]."""
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return 0.0
        return self.cum[i] + self.rates[i] * (t - self.times[i])

    def rates_at(self, ts: np.ndarray) -> np.ndarray:
        if not self.times:
            return np.zeros(len(ts))
        idx = np.searchsorted(np.asarray(self.times), ts, side="right") - 1
        rates = np.asarray(self.rates)[np.clip(idx, 0, None)]
        return np.where(idx >= 0, rates, 0.0)


def _run_end(changes: list[int], k: int, last: int) -> int:
    """The last index of the run that poll ``k`` is in (runs end before each change point)."""
    i = bisect.bisect_right(changes, k)
    end = changes[i] - 1 if i < len(changes) else last
    return min(end, last)


def simulate_site(
    site: str,
    cameras: list[CameraTrace],
    duration_s: float,
    policy: ScalingPolicy,
    profile: PowerProfile,
    options: SimOptions,
    seed: int,
) -> SiteResult:
    scaler = Scaler(policy, created_at=0.0)
    arrivals = _Arrivals(cameras)
    opens = arrivals.opens
    mu = options.service_fps or (
        1.0 / profile.inference_s_per_frame if profile.inference_s_per_frame else 20.0
    )
    period = float(policy.polling_interval_s)
    last_poll = int(duration_s // period)
    poll_t = np.arange(last_poll + 1) * period
    rate_k = arrivals.rates_at(poll_t)
    draws = np.random.default_rng(seed).random(len(poll_t))
    busy = draws < np.minimum(1.0, rate_k * options.in_flight_s)
    # code per poll: 0 no frames, 1 frames but none in flight at the poll, 2 one in flight,
    # 3 more than a replica's half capacity (never skipped).
    code = np.where(rate_k > 0.5 * mu, 3, np.where(busy, 2, np.where(rate_k > 0, 1, 0)))
    activity = np.where(code == 3, 2, code == 2).astype(np.int8)
    changes_busy = (np.flatnonzero(activity[1:] != activity[:-1]) + 1).tolist()
    quiet = code == 0
    changes_quiet = (np.flatnonzero(quiet[1:] != quiet[:-1]) + 1).tolist()
    code_l = code.tolist()
    behavior = policy.behavior
    can_skip = (
        options.fast_forward
        and behavior is not None
        and behavior.scale_up.stabilization_window_seconds == 0
        and policy.hpa_min_replicas == 1
    )

    result = SiteResult(site, len(cameras), duration_s)
    result.events = len(opens)
    result.frames = sum(e.frames for c in cameras for e in c.events)
    workers: list[_Worker] = []
    history: list[_Worker] = []
    queue = 0.0  # frames published, not yet taken by a replica
    q_at = q_count = 0.0
    now = 0.0
    ready_n = alive_n = 0  # workers serving / not asked to stop, as of the last refresh
    t_worker = INF  # the next worker transition (ready or exit)

    def refresh(t: float) -> None:
        nonlocal ready_n, alive_n, t_worker
        ready_n = alive_n = 0
        t_worker = INF
        kept = []
        for w in workers:
            if w.exit <= t:
                continue
            kept.append(w)
            if w.stop == INF:
                alive_n += 1
            if w.ready <= t < w.stop:
                ready_n += 1
            elif w.ready > t and w.stop > t:
                t_worker = min(t_worker, w.ready)
            t_worker = min(t_worker, w.exit)
        workers[:] = kept

    def advance(t: float) -> None:
        nonlocal queue, q_at, q_count
        if t <= q_at:
            return
        count = arrivals.count(t)
        # ready_n is constant on (q_at, t): worker transitions are loop events
        queue = max(0.0, queue + count - q_count - mu * ready_n * (t - q_at))
        q_at, q_count = t, count

    def converge(t: float) -> None:
        want = scaler.replicas
        if want > alive_n:
            for _ in range(want - alive_n):
                worker = _Worker(t, t + options.cold_start_s)
                workers.append(worker)
                history.append(worker)
                result.starts += 1
        elif alive_n > want:
            alive = [w for w in workers if w.stop == INF]
            for w in sorted(alive, key=lambda w: -w.start)[: alive_n - want]:
                w.stop, w.exit = t, t + options.stop_s
        else:
            return
        refresh(t)

    def first_result(t: float) -> float:
        at = min((w.ready for w in workers if w.stop > t), default=t)
        if at > t:
            result.cold_events += 1
        return max(at, t) - t + queue / mu + options.first_result_s

    def next_poll(k: int) -> int:
        """The next poll whose decision can change something (see the module docstring)."""
        nxt = k + 1
        if queue > 1e-9:
            return nxt
        horizon = min(opens[wi] if wi < len(opens) else INF, t_prewarm())
        limit = last_poll if horizon == INF else min(last_poll, math.ceil(horizon / period) - 1)
        replicas = scaler.replicas
        if replicas == 0:
            if alive_n or not quiet[k]:
                return nxt
            return max(nxt, _run_end(changes_quiet, k, limit) + 1)
        if replicas != 1 or alive_n != 1 or ready_n != 1:
            return nxt
        act = activity[k]
        if act == 2:
            return nxt
        end = _run_end(changes_busy, k, limit)
        if act == 1:  # active: the run's last poll sets lastActiveTime
            return end if end - k >= 2 else nxt
        last_active = scaler.last_active_at
        if last_active is None:
            return nxt
        first_due = math.floor((last_active + scaler.window_s) / period) + 1
        return max(nxt, min(end + 1, first_due))

    def t_prewarm() -> float:
        pre = scaler.prewarm_at
        return max(pre, now) if pre is not None else INF

    k = 0
    wi = 0
    n_opens = len(opens)
    while True:
        t_poll = k * period if k <= last_poll else INF
        t_wake = opens[wi] if wi < n_opens else INF
        t_pre = t_prewarm()
        t = min(t_poll, t_wake, t_pre, t_worker)
        if t == INF or t > duration_s:
            break
        advance(t)
        now = t
        if t == t_worker:
            refresh(t)
            continue
        if t == t_wake:
            wi += 1
            scaler.wake(t)
            result.decisions += 1
            converge(t)
            result.latencies.append(first_result(t))
            continue
        if t == t_pre:
            scaler.prewarm(t)
            result.decisions += 1
            result.prewarms += 1
            converge(t)
            continue
        in_flight = 1 if ready_n and code_l[k] >= 2 else 0
        metric = math.ceil(queue - 1e-9) + in_flight
        scaler.decide(t, metric, running=alive_n)
        result.decisions += 1
        converge(t)
        k = next_poll(k) if can_skip else k + 1

    held_end = 0.0
    for w in sorted(history, key=lambda w: w.start):
        end = min(w.exit, duration_s)
        result.replica_s += max(0.0, end - w.start)
        result.held_s += max(0.0, end - max(w.start, held_end))
        held_end = max(held_end, end)
    result.keep_alive = scaler.keep_alive.describe()
    result.energy_j = profile.split_j(duration_s, result.held_s, result.frames, result.starts)
    return result
