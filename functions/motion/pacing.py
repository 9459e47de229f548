"""Rate limits on capture time: analyse at most N frames/s, publish at most M frames/s."""

from __future__ import annotations


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
