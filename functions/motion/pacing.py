"""Rate limits on capture time: analyse at most N frames/s, publish at most M frames/s."""

from __future__ import annotations

# Seconds of analyses a burst of frames without capture times may use at once: enough to
# calibrate and open an event (5 + 2 analyses) with room for a mover to come into view.
_BURST_S = 2.0


class Pacer:
    """Lets through at most ``rate`` frames per second of capture time (0 = every frame).

    The schedule keeps its cadence (next slot = previous slot + period) so that a 25 fps
    camera analysed at 10/s gets 10 analyses per second, not one every third frame (8.3/s).
    A frame may come a quarter period early, which absorbs capture-time jitter.
    """

    __slots__ = ("_next", "_period", "_slack")

    def __init__(self, rate: float) -> None:
        self._period = round(1e9 / rate) if rate > 0 else 0
        self._slack = self._period // 4
        self._next: int | None = None

    def due(self, capture_ns: int) -> bool:
        nxt = self._next
        return (
            self._period == 0
            or nxt is None
            or capture_ns >= nxt - self._slack
            # Capture time went back by more than a period: a restarted camera clock.
            or capture_ns < nxt - 2 * self._period
        )

    def take(self, capture_ns: int) -> None:
        """Record that the frame at ``capture_ns`` used a slot."""
        nxt = self._next
        if nxt is None or not (nxt - 2 * self._period <= capture_ns < nxt + self._period):
            # First frame, a gap of more than a period, or a clock jump: restart the cadence.
            self._next = capture_ns + self._period
        else:
            self._next = nxt + self._period

    def reset(self) -> None:
        self._next = None


class ArrivalPacer:
    """Paces frames that carry no capture time, stamped on arrival: at most ``rate`` per
    second sustained, but up to ``_BURST_S`` seconds' worth of analyses at once.

    Arrival time is not capture time. A camera that flushes its buffer after a reconnect,
    or a script that uploads a clip, sends frames captured over seconds within a few
    milliseconds; the cadence of :class:`Pacer` would analyse one of them and the gate
    would never see enough frames to calibrate and open an event. A token bucket lets the
    burst through (consecutive frames, as the gate is tuned for; the bucket refills at
    ``rate``) and still holds a steady camera to ``rate`` analyses per second.
    """

    __slots__ = ("_capacity", "_level", "_rate", "_stamp")

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, _BURST_S * rate)
        self._level = self._capacity
        self._stamp: int | None = None

    def _refilled(self, arrival_ns: int) -> float:
        if self._stamp is None:
            return self._level
        elapsed = max(0, arrival_ns - self._stamp)  # a wall clock stepped back: no refill
        return min(self._capacity, self._level + elapsed * 1e-9 * self._rate)

    def due(self, arrival_ns: int) -> bool:
        return self._rate <= 0 or self._refilled(arrival_ns) >= 1.0

    def take(self, arrival_ns: int) -> None:
        """Record that the frame that arrived at ``arrival_ns`` was analysed."""
        if self._rate <= 0:
            return
        self._level = max(0.0, self._refilled(arrival_ns) - 1.0)
        self._stamp = arrival_ns
