"""The keep-alive policies themselves: a window (and maybe a pre-warm) from the gaps seen.

An idle gap is the time from the last demand (a wake, or a poll that found work) to the
next demand, counted only when at least one poll in between found the queue empty; the
scaler reports each one with :meth:`KeepAlive.observe_gap`. The window is KEDA's
``cooldownPeriod`` for the idle spell under way: the last replica goes at the first poll
after ``last active + window`` that finds the queue empty.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from tripwire.keepalive.spec import KeepAliveSpec


class KeepAlive(Protocol):
    """What the scaler asks of a keep-alive policy (all times in seconds)."""

    def window_s(self, prewarmed: bool) -> float:
        """How long to stay after the last activity; ``prewarmed``: that was a pre-warm."""
        ...

    def prewarm_s(self) -> float | None:
        """Start a replica again this long after the last demand; None: no pre-warm."""
        ...

    def observe_gap(self, gap_s: float) -> None:
        """One idle gap ended (last demand -> this demand)."""
        ...

    def describe(self) -> str:
        """The windows in force now, for logs and reports."""
        ...


class Fixed:
    """KEDA's rule: one fixed window, the policy file's ``cooldownPeriod``."""

    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s

    def window_s(self, prewarmed: bool) -> float:
        return self.cooldown_s

    def prewarm_s(self) -> float | None:
        return None

    def observe_gap(self, gap_s: float) -> None:
        return None

    def describe(self) -> str:
        return f"fixed {self.cooldown_s:g} s"


class GapHistogram:
    """Idle gaps in ``bin_s`` bins up to ``range_s``; longer ones are counted as out of range."""

    def __init__(self, bin_s: float, range_s: float) -> None:
        self.bin_s = bin_s
        self.counts = [0] * max(1, math.ceil(range_s / bin_s))
        self.total = 0
        self.out_of_range = 0

    def add(self, gap_s: float) -> None:
        self.total += 1
        index = int(max(gap_s, 0.0) // self.bin_s)
        if index >= len(self.counts):
            self.out_of_range += 1
        else:
            self.counts[index] += 1

    def percentile_bin(self, percentile: float) -> int:
        """The bin holding the given percentile of the in-range gaps."""
        in_range = self.total - self.out_of_range
        wanted = max(1, math.ceil(in_range * percentile / 100))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return index
        return len(self.counts) - 1

    def cv(self) -> float:
        """Coefficient of variation of the bin counts (ATC'20's representativeness test)."""
        n = len(self.counts)
        mean = (self.total - self.out_of_range) / n
        if mean <= 0:
            return 0.0
        var = sum((c - mean) ** 2 for c in self.counts) / n
        return math.sqrt(var) / mean


class HybridHistogram:
    """Shahrad et al., ATC'20, hybrid histogram policy, per ScaledObject (camera group).

    With a representative histogram (``min_gaps`` gaps, at most ``max_out_of_range`` of them
    beyond ``range_s``, bin counts' CV >= ``cv_threshold``):

    - pre-warm = the head percentile's bin start, less ``margin``: after demand, release at
      once (``min_window_s``) and start again this long after the demand;
    - keep-alive = the tail percentile's bin end, plus ``margin``, less the pre-warm.

    A head below the floor window means no pre-warm: keep alive until the tail. Otherwise
    (too few gaps, mostly longer gaps, a flat histogram) the fixed window applies.
    """

    def __init__(self, spec: KeepAliveSpec, fallback_s: float) -> None:
        self.spec = spec
        self.fallback_s = fallback_s
        self.histogram = GapHistogram(spec.bin_s, spec.range_s)
        self._prewarm: float | None = None
        self._keep = fallback_s
        self.learnt = False

    def representative(self) -> bool:
        h, spec = self.histogram, self.spec
        if h.total < spec.min_gaps:
            return False
        if h.out_of_range > spec.max_out_of_range * h.total:
            return False
        return h.cv() >= spec.cv_threshold

    def observe_gap(self, gap_s: float) -> None:
        self.histogram.add(gap_s)
        self._update()

    def _clamp(self, window: float) -> float:
        spec = self.spec
        window = max(window, spec.min_window_s)
        return min(window, spec.max_window_s) if spec.max_window_s is not None else window

    def _update(self) -> None:
        spec, h = self.spec, self.histogram
        self.learnt = self.representative()
        if not self.learnt:
            self._prewarm, self._keep = None, self.fallback_s
            return
        head = h.percentile_bin(spec.head_percentile) * h.bin_s * (1 - spec.margin)
        tail = (h.percentile_bin(spec.tail_percentile) + 1) * h.bin_s * (1 + spec.margin)
        if head <= spec.min_window_s:
            self._prewarm, self._keep = None, self._clamp(tail)
        else:
            self._prewarm, self._keep = head, self._clamp(tail - head)

    def window_s(self, prewarmed: bool) -> float:
        if self._prewarm is None or prewarmed:
            return self._keep
        return self.spec.min_window_s

    def prewarm_s(self) -> float | None:
        return self._prewarm

    def describe(self) -> str:
        if not self.learnt:
            return f"histogram (fallback fixed {self.fallback_s:g} s, {self.histogram.total} gaps)"
        pre = "no pre-warm" if self._prewarm is None else f"pre-warm {self._prewarm:.0f} s"
        return f"histogram ({pre}, keep-alive {self._keep:.0f} s, {self.histogram.total} gaps)"


class BreakEven:
    """Energy-aware: the window that minimises expected energy per idle gap.

    Holding costs ``resident_w`` for ``min(gap, window)``; a gap longer than the window
    costs one cold start (``cold_start_j``: the profile's, plus ``resident_w`` over the
    spec's ``cold_start_s`` that a start holds the device before it serves). Over the last
    ``history`` gaps the expected energy of a window K is
    ``resident_w x mean(min(g, K)) + cold_start_j x P(g > K)``; the minimum lies at 0 or at
    one of the gaps. Before ``min_gaps`` gaps: the deterministic
    break-even ``cold_start_j / resident_w`` (at most twice the optimum whatever the gaps).
    A device with no resident power (a CPU) never gains by holding: the floor window.
    """

    def __init__(self, spec: KeepAliveSpec, resident_w: float, cold_start_j: float) -> None:
        self.spec = spec
        self.resident_w = resident_w
        self.cold_start_j = cold_start_j
        self.gaps: deque[float] = deque(maxlen=spec.history)
        self.break_even_s = cold_start_j / resident_w if resident_w > 0 else 0.0
        self._window = self._clamp(self.break_even_s)

    def _clamp(self, window: float) -> float:
        spec = self.spec
        window = max(window, spec.min_window_s)
        return min(window, spec.max_window_s) if spec.max_window_s is not None else window

    def expected_j(self, window_s: float) -> float:
        """Mean energy per gap over the gaps kept, for a given window."""
        if not self.gaps:
            return 0.0
        held = sum(min(g, window_s) for g in self.gaps)
        misses = sum(1 for g in self.gaps if g > window_s)
        return (self.resident_w * held + self.cold_start_j * misses) / len(self.gaps)

    def observe_gap(self, gap_s: float) -> None:
        self.gaps.append(gap_s)
        if len(self.gaps) < self.spec.min_gaps or self.resident_w <= 0:
            return
        ordered = sorted(self.gaps)
        n = len(ordered)
        best_k, best_j = 0.0, self.cold_start_j  # K = 0: every gap pays a cold start
        below = 0.0  # sum of the gaps <= K
        for i, gap in enumerate(ordered):
            below += gap
            longer = n - i - 1
            cost = (self.resident_w * (below + longer * gap) + self.cold_start_j * longer) / n
            if cost < best_j:
                best_k, best_j = gap, cost
        self._window = self._clamp(best_k)

    def window_s(self, prewarmed: bool) -> float:
        return self._window

    def prewarm_s(self) -> float | None:
        return None

    def describe(self) -> str:
        return (
            f"break-even (window {self._window:.0f} s; cold start {self.cold_start_j:g} J / "
            f"resident {self.resident_w:g} W = {self.break_even_s:.0f} s; {len(self.gaps)} gaps)"
        )


def keep_alive_for(spec: KeepAliveSpec, cooldown_s: float) -> KeepAlive:
    """A fresh policy object for one scaler (its learnt state starts empty)."""
    if spec.policy == "histogram":
        return HybridHistogram(spec, cooldown_s)
    if spec.policy == "break-even":
        from tripwire.meters.power_profile import load_profile

        assert spec.profile is not None  # the spec's validator
        profile = load_profile(spec.profile)
        if profile.cold_start_j is None:
            raise ValueError(
                f"power profile {profile.name} has no cold_start_j; break-even needs a GPU profile"
            )
        # A start also holds the device while it loads: that too is what a miss costs.
        miss_j = profile.cold_start_j + profile.resident_w * spec.cold_start_s
        miss_j += spec.cold_start_price_j  # what the operator says a wait is worth
        return BreakEven(spec, profile.resident_w, miss_j)
    return Fixed(cooldown_s)
