"""Wakes coalesced into rate-limited checks, one loop per Deployment, with metrics.

A wake only marks its Deployments as wanted; each Deployment's loop runs one check (a few API
calls, see ``kube``) and then rests ``min_interval_s``. Wakes that arrive meanwhile are folded
into one more check after the rest, so a storm of any size costs one check per Deployment per
interval, and the last wake of a storm is never lost (KEDA may have scaled to zero just
before it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tripwire.cluster import ClusterError
from tripwire.wake.kube import Outcome

log = logging.getLogger(__name__)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class WakeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.signals = Counter("tripwire_wake_signals_total", "Wake signals heard", registry=r)
        self.checks = Counter(
            "tripwire_wake_checks_total",
            "Checks of a Deployment, by outcome (scaled, running, paused, changed, error)",
            ["deployment", "outcome"],
            registry=r,
        )
        self.requests = Counter(
            "tripwire_wake_api_requests_total",
            "Kubernetes API requests, by call (get_scale, get_scaledobject, patch_scale)",
            ["call"],
            registry=r,
        )
        self.scale_seconds = Histogram(
            "tripwire_wake_scale_seconds",
            "First wake heard to /scale patched to 1",
            buckets=_SECONDS,
            registry=r,
        )
        self.ready = Gauge(
            "tripwire_wake_ready", "1 while the broker and the API answer", registry=r
        )


@dataclass
class _Target:
    deployment: str
    scaled_object: str
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    since: float | None = None  # monotonic time of the first wake not yet checked


class WakeController:
    """Runs ``check(deployment, scaled_object)`` in a thread for the Deployments a wake wants."""

    def __init__(
        self,
        targets: Sequence[tuple[str, str]],
        check: Callable[[str, str], Outcome],
        *,
        min_interval_s: float,
        metrics: WakeMetrics | None = None,
    ) -> None:
        self._targets = [_Target(d, s) for d, s in targets]
        self._check = check
        self.min_interval_s = min_interval_s
        self.metrics = metrics or WakeMetrics()
        self.api_ok = True  # the last check reached the API and was allowed

    def wake(self) -> None:
        """A wake signal: every Deployment gets a check, now or after its rest."""
        self.metrics.signals.inc()
        now = time.monotonic()
        for target in self._targets:
            if target.since is None:
                target.since = now
            target.wanted.set()

    async def run(self) -> None:
        """Until cancelled: one loop per Deployment."""
        async with asyncio.TaskGroup() as group:
            for target in self._targets:
                group.create_task(self._loop(target), name=f"wake-{target.deployment}")

    async def _loop(self, target: _Target) -> None:
        while True:
            await target.wanted.wait()
            target.wanted.clear()
            since, target.since = target.since, None
            await self._one_check(target, since)
            await asyncio.sleep(self.min_interval_s)

    async def _one_check(self, target: _Target, since: float | None) -> None:
        try:
            outcome = await asyncio.to_thread(self._check, target.deployment, target.scaled_object)
        except ClusterError as exc:
            self.api_ok = False
            self.metrics.checks.labels(target.deployment, "error").inc()
            # KEDA's poll still scales it: a failed wake costs latency only.
            log.warning("wake of %s failed: %s", target.deployment, exc)
            return
        self.api_ok = True
        self.metrics.checks.labels(target.deployment, outcome.value).inc()
        if outcome is Outcome.SCALED:
            elapsed = time.monotonic() - since if since is not None else 0.0
            self.metrics.scale_seconds.observe(elapsed)
            log.info("woke %s: replicas 0 -> 1 (%.0f ms after the wake)", target.deployment,
                     elapsed * 1000)  # fmt: skip
        elif outcome is Outcome.PAUSED:
            log.info("%s is at 0 but its ScaledObject is paused: left alone", target.deployment)

    def heard(self) -> int:
        """Wake signals heard so far."""
        return int(self.metrics.signals._value.get())

    def count(self, outcome: str) -> int:
        """Checks with ``outcome`` so far, all Deployments together (for tests and benches)."""
        return _sum(self.metrics.checks, "outcome", outcome)

    def requests(self, call: str) -> int:
        """API requests of kind ``call`` (get_scale, get_scaledobject, patch_scale) so far."""
        return _sum(self.metrics.requests, "call", call)


def _sum(counter: Counter, label: str, value: str) -> int:
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels.get(label) == value
        )
    )
