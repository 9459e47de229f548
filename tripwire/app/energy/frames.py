"""Equal work for ``tripwire bench energy``: frames rendered once, sent whole, on one clock.

A mode must not do less work because the machine was busy. So the frames of every camera are
rendered once (seeded scene or clip) and reused by every mode and repeat; a camera sends every
frame even when it falls behind (late, never skipped); and each frame's ``X-Capture-Ns`` is
its place on the camera's clock (start + k / fps), not the moment it left. The gate paces and
decides on capture time, so it opens on the same frames in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from tripwire.app.camera_sim import scene_source, video_source
from tripwire.app.energy.workload import CROSSING_S, EnergyOptions
from tripwire.app.scenes import demo_scene


@dataclass
class Clip:
    """One camera's frames, JPEG-encoded, in order."""

    camera_id: str
    fps: float
    frames: list[bytes]


def render(options: EnergyOptions, duty_cycle: float) -> list[Clip]:
    """Every camera's frames for ``duration_s`` (CPU-heavy: do it once, outside the window)."""
    clips = []
    for i in range(options.cameras):
        if options.video is not None:
            source, fps = video_source(options.video)
        else:
            fps = options.fps
            period = CROSSING_S / max(duty_cycle, 1e-3)
            scene = demo_scene(seed=i, fps=fps, period_s=period)
            source = scene_source(scene)
        count = round(options.duration_s * fps)
        clips.append(Clip(f"cam-{i + 1}", fps, [source(k) for k in range(count)]))
    return clips
