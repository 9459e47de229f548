"""What one ``tripwire bench energy`` run is: its modes, options and the record of a mode's run.

Shared by the runner (:mod:`loadtest.energy`) and the report (:mod:`loadtest.energy_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MODES = {
    "a": "every frame, always-on detector",
    "b": "motion-gated, always-on detector",
    "c": "motion-gated, scale-to-zero",
}
COOLDOWN_S = 10
CROSSING_S = 10.0  # one walker crossing in demo_scene


@dataclass
class EnergyOptions:
    cameras: int = 2
    fps: float = 10.0
    duration_s: float = 60.0
    duty_cycle: float = 0.2
    video: Path | None = None
    out: Path = Path("bench-energy")
    modes: Sequence[str] = ("a", "b", "c")
    idle_s: float = 20.0
    interval_s: float = 1.0
    weights: str | None = None
    ready_timeout_s: float = 180.0


@dataclass
class Tally:
    detections: int = 0
    alerts: int = 0
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class ModeRun:
    mode: str
    samples: Path
    t0_ns: int
    cameras_off_ns: int
    end_ns: int
    frames_sent: int
    frames_published: int
    tally: Tally
    cold_starts: int
