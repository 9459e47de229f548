"""What one ``tripwire bench energy`` run is: its modes, options and the record of a mode's run.

Shared by the runner (:mod:`tripwire.app.energy.bench`), the accounting
(:mod:`tripwire.app.energy.account`) and the report (:mod:`tripwire.app.energy.report`).

Every mode is motion-gated and fed the same pre-rendered, seeded frames with the same capture
clock, so every mode is asked to detect the same frames (equal work); they differ only in how
detector replicas are kept:

- ``always-on``: a fixed number of replicas (minReplicaCount = maxReplicaCount, so no scaling
  decision can change it), started and loaded before the window, no prefork standby;
- ``scale-to-zero``: the shipped policy from zero, every start from scratch (no standby);
- ``scale-to-zero-standby``: the same with the prefork standby that has done the imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MODES = {
    "always-on": "always-on, fixed replicas, no scaler, no standby",
    "scale-to-zero": "scale-to-zero, no standby",
    "scale-to-zero-standby": "scale-to-zero with the prefork standby",
}
COOLDOWN_S = 10  # the bench's cooldownPeriod (the shipped policy says 60 s, plus 30 s window)
SHIPPED_COOLDOWN_S = 90  # cooldownPeriod 60 s + scale-down stabilization 30 s
CROSSING_S = 10.0  # one walker crossing in demo_scene


@dataclass
class EnergyOptions:
    cameras: int = 2
    fps: float = 10.0
    duration_s: float = 60.0
    duty_cycles: Sequence[float] = (0.2,)
    video: Path | None = None
    out: Path = Path("bench-energy")
    modes: Sequence[str] = tuple(MODES)
    idle_s: float = 20.0
    interval_s: float = 1.0
    weights: str | None = None
    ready_timeout_s: float = 300.0
    drain_timeout_s: float = 180.0
    repeats: int = 1
    replicas: int = 1  # always-on's fixed count
    # Scale-to-zero's maxReplicaCount; None: the same as always-on, so that both modes have
    # the same capacity and differ only in going to zero.
    max_replicas: int | None = None
    profile: str = "v100"


@dataclass
class Tally:
    """What the broker said: one entry per (camera, seq) however often it was redelivered."""

    processed: dict[tuple[str, int], int] = field(default_factory=dict)  # -> boxes found
    events: set[str] = field(default_factory=set)
    duplicates: int = 0
    alerts: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(self.processed.values())


@dataclass
class ModeRun:
    mode: str
    repeat: int
    duty_cycle: float
    folder: Path
    samples: Path
    timeline: Path
    t0_ns: int
    cameras_off_ns: int
    drained_ns: int | None  # None: the queue never drained within drain_timeout_s
    end_ns: int
    camera_s: float  # seconds of video sent, summed over cameras (camera-hours x 3600)
    frames_sent: int
    frames_published: int
    frames_motion: int
    http_errors: int
    tally: Tally
