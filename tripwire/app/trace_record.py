"""``tripwire trace record``: a motion trace from the motion function over a clip or a camera.

The frames go through the same per-camera motion function as the gateway and pull mode
(:func:`functions.motion.pull.iter_pull`): an event opens on the frame whose result says
``event_opened`` and closes on the one that says ``event_closed``; the frames it would have
published (``result.publish``) are its work. Times are capture times from the first frame
(a file: frame index / its fps; a live source: the wall clock). ``loops`` plays a file
several times back to back (each loop starts the motion function afresh, as a camera
that reconnects).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tripwire.camera_config import CameraConfig, load_config
from tripwire.fleet.trace import CameraTrace, Event, Trace

PLACEHOLDER_HASH = "sha256:" + "0" * 64  # a trace is never authenticated


def camera_config(camera: str, config: Path | None = None) -> CameraConfig:
    """The camera's motion settings from a config file, or the defaults."""
    if config is not None:
        for entry in load_config(config).cameras:
            if entry.id == camera:
                return entry
        raise ValueError(f"camera {camera!r} is not in {config}")
    return CameraConfig.model_validate({"id": camera, "token_hash": PLACEHOLDER_HASH})


def record_trace(
    source: str,
    camera: CameraConfig,
    *,
    seconds: float | None = None,
    loops: int = 1,
    site: str | None = None,
) -> Trace:
    """Run the motion function over ``source``; stop at its end (a file, ``loops`` times) or
    after ``seconds`` of capture time."""
    from functions.motion.pull import iter_pull

    events: list[Event] = []
    opened: tuple[float, int] | None = None  # open_s, frames published so far
    end_s = period_s = 0.0
    base_ns: int | None = None
    next_start_ns = 0
    live = False
    stop = threading.Event()
    timer: threading.Timer | None = None
    if seconds is not None:  # a live source that stalls still stops
        timer = threading.Timer(seconds + 30.0, stop.set)
        timer.daemon = True
        timer.start()
    try:
        for _ in range(max(1, loops)):
            last_ns = 0
            for pulled in iter_pull(source, camera, start_ns=next_start_ns, stop=stop):
                if base_ns is None:  # a live source stamps wall-clock time
                    live = pulled.capture_ns > 10**15
                    base_ns = pulled.capture_ns if live else 0
                t = (pulled.capture_ns - base_ns) / 1e9
                if seconds is not None and t > seconds:
                    stop.set()
                    break
                if last_ns:
                    period_s = (pulled.capture_ns - last_ns) / 1e9
                last_ns, end_s = pulled.capture_ns, t
                result = pulled.result
                if result.event_opened:
                    opened = (t, 0)
                if opened is not None and result.publish:
                    opened = (opened[0], opened[1] + 1)
                if result.event_closed and opened is not None:
                    events.append(Event(opened[0], max(t, opened[0] + 1e-3), opened[1]))
                    opened = None
            if opened is not None:  # the loop (or the recording) ends: so does the event
                close = max(end_s + period_s, opened[0] + 1e-3)
                events.append(Event(opened[0], close, opened[1]))
                opened = None
            if stop.is_set() or live:
                break
            next_start_ns = round((end_s + period_s) * 1e9)  # the next loop follows on
    finally:
        if timer is not None:
            timer.cancel()
    duration = max([end_s + period_s, 1e-3, *(e.close_s for e in events)])
    fps = camera.motion.max_publish_fps or 0.0
    return Trace(
        duration,
        [CameraTrace(camera.id, site or camera.id, events)],
        publish_fps=fps,
        source=f"{Path(source).name if '://' not in source else 'live'} x{loops} "
        f"(recorded {time.strftime('%Y-%m-%d')})",
    )
