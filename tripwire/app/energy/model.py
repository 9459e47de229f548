"""The duty-cycle model: when does scale-to-zero stop paying?

A camera sees motion for ``event_s`` every ``event_s / duty`` seconds. Always-on holds the
model the whole period; scale-to-zero holds it for the event plus its keep-alive (cooldown +
one polling interval) and pays one cold start per event, unless the gap between events is
shorter than the keep-alive, when it never reaches zero and costs what always-on costs. The
bare idle floor and the inference are the same in both, so per period::

    saved_j = resident_w x (gap - keep_alive) - cold_start_j      when gap > keep_alive, else 0

and scale-to-zero stops paying when the gap falls below keep_alive + cold_start_j / resident_w
(the crossover). A device with no resident power (a CPU) never pays back a cold start in energy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DutyModel:
    idle_floor_w: float
    resident_w: float
    cold_start_j: float
    inference_w: float  # inference power while motion lasts (mean over an event)
    event_s: float
    keep_alive_s: float

    def always_on_j(self, duty: float) -> float:
        period = self.event_s / duty
        return (self.idle_floor_w + self.resident_w) * period + self.inference_w * self.event_s

    def saved_j(self, duty: float) -> float:
        gap = self.event_s / duty - self.event_s
        if gap <= self.keep_alive_s:
            return 0.0
        return self.resident_w * (gap - self.keep_alive_s) - self.cold_start_j

    def saved_fraction(self, duty: float) -> float:
        return self.saved_j(duty) / self.always_on_j(duty)

    def crossover_duty(self) -> float | None:
        """The duty above which scale-to-zero costs more than always-on; None: it never pays."""
        if self.resident_w <= 0:
            return None
        gap = self.keep_alive_s + self.cold_start_j / self.resident_w
        return self.event_s / (self.event_s + gap)
