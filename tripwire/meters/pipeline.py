"""Pipeline state at sample time: replicas, queue depth, frame and detection counts.

The sampler does not know the stack; the caller passes one probe per figure (a callable
returning a number, or ``None`` when the figure is not known now), and a sample records what
they return. Async values (the broker's queue depth) are read by their owner (the scaler
polls depth anyway) and handed over through a probe that returns the last value, so that
sampling never waits on the network.

Names ending in ``_total`` are counters (frames_in_total), the others gauges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tripwire.meters.protocol import Reading, SourceReport

Probe = Callable[[], float | int | None]

# The figures the energy benchmark reads; others may be passed too.
KNOWN = ("replicas", "queue_depth", "frames_in_total", "motion_frames_total", "detections_total")


@dataclass
class Pipeline:
    """Records the caller's probes; a probe that raises is reported in ``error``."""

    probes: Mapping[str, Probe] = field(default_factory=dict)
    name: str = "pipeline"

    def read(self) -> SourceReport:
        readings: list[Reading] = []
        failed: list[str] = []
        for key, probe in self.probes.items():
            try:
                value = probe()
            except Exception as exc:  # a probe is the caller's code: report, do not stop
                failed.append(f"{key}: {type(exc).__name__}: {exc}")
                continue
            if value is not None:
                readings.append(Reading(f"pipeline_{key}", float(value), "measured", "probe"))
        return SourceReport(self.name, True, readings, error="; ".join(failed) or None)

    def close(self) -> None:
        pass
