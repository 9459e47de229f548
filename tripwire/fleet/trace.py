"""The motion trace format (``tripwire.trace/1``): when each camera's motion events open and close.

A trace is JSON Lines (gzip when the name ends in ``.gz``). The first line is the header,
then one line per camera::

    {"schema": "tripwire.trace/1", "duration_s": 86400.0, "publish_fps": 5.0, "source": "..."}
    {"camera": "cam-1", "site": "site-0", "events": [[12.5, 31.0, 92], [305.2, 309.9, 24]]}

Each event is ``[open_s, close_s, frames]``: seconds from the start of the trace (capture
time) of the frame that opened it and of the frame that closed it, and the motion frames it
published (the detector's work). Events of one camera are in order and do not overlap; an
event still open at the end of a recording is closed at ``duration_s``. ``site`` groups the
cameras one detector deployment (one ScaledObject) serves; it defaults to the camera's id.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tripwire.errors import ConfigError

SCHEMA = "tripwire.trace/1"


class TraceError(ConfigError):
    """A trace file cannot be read; the message names the file, the line and the reason."""


@dataclass(frozen=True, slots=True)
class Event:
    open_s: float
    close_s: float
    frames: int


@dataclass
class CameraTrace:
    camera: str
    site: str
    events: list[Event] = field(default_factory=list)


@dataclass
class Trace:
    duration_s: float
    cameras: list[CameraTrace]
    publish_fps: float = 5.0
    source: str = ""

    @property
    def events(self) -> int:
        return sum(len(c.events) for c in self.cameras)

    def sites(self) -> dict[str, list[CameraTrace]]:
        out: dict[str, list[CameraTrace]] = {}
        for camera in self.cameras:
            out.setdefault(camera.site, []).append(camera)
        return out

    def check(self, where: str = "trace") -> None:
        """Raise TraceError unless every event is in order, inside the trace, non-overlapping."""
        if self.duration_s <= 0:
            raise TraceError(f"{where}: duration_s must be > 0")
        seen: set[str] = set()
        for camera in self.cameras:
            if camera.camera in seen:
                raise TraceError(f"{where}: camera {camera.camera} appears twice")
            seen.add(camera.camera)
            end = 0.0
            for i, e in enumerate(camera.events):
                bad = None
                if not 0 <= e.open_s < e.close_s <= self.duration_s + 1e-6:
                    bad = f"needs 0 <= open < close <= duration_s ({self.duration_s:g})"
                elif e.open_s < end:
                    bad = "opens before the previous event closed"
                elif e.frames < 0:
                    bad = "frames must be >= 0"
                if bad:
                    raise TraceError(
                        f"{where}: camera {camera.camera} event {i} "
                        f"[{e.open_s:g}, {e.close_s:g}, {e.frames}]: {bad}"
                    )
                end = e.close_s


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def write_trace(trace: Trace, path: Path) -> Path:
    trace.check(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(path, "w") as out:
        header = {
            "schema": SCHEMA,
            "duration_s": round(trace.duration_s, 3),
            "publish_fps": trace.publish_fps,
            "source": trace.source,
        }
        out.write(json.dumps(header) + "\n")
        for camera in trace.cameras:
            events = [[round(e.open_s, 3), round(e.close_s, 3), e.frames] for e in camera.events]
            line = {"camera": camera.camera, "site": camera.site, "events": events}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    return path


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        with _open_text(path, "r") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise TraceError(f"{path}:{number}: not JSON: {exc.msg}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TraceError(f"{path}: cannot read: {exc}") from None


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TraceError(f"{where}: {name} must be a number, not {value!r}")
    return float(value)


def read_trace(path: Path) -> Trace:
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise TraceError(f"{path}: empty; a trace starts with a {SCHEMA} header line")
    number, header = first
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise TraceError(f"{path}:{number}: the first line must be a header with schema {SCHEMA}")
    duration = _number(header.get("duration_s"), f"{path}:{number}", "duration_s")
    fps = _number(header.get("publish_fps", 5.0), f"{path}:{number}", "publish_fps")
    cameras = []
    for number, doc in lines:
        where = f"{path}:{number}"
        if not isinstance(doc, dict) or not isinstance(doc.get("camera"), str):
            raise TraceError(f"{where}: a camera line needs a string 'camera'")
        raw = doc.get("events", [])
        if not isinstance(raw, list):
            raise TraceError(f"{where}: events must be a list of [open_s, close_s, frames]")
        events = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 3:
                raise TraceError(f"{where}: event {item!r} is not [open_s, close_s, frames]")
            frames = item[2]
            if isinstance(frames, bool) or not isinstance(frames, int):
                raise TraceError(f"{where}: event {item!r}: frames must be an integer")
            events.append(
                Event(_number(item[0], where, "open_s"), _number(item[1], where, "close_s"), frames)
            )
        site = doc.get("site", doc["camera"])
        if not isinstance(site, str):
            raise TraceError(f"{where}: site must be a string")
        cameras.append(CameraTrace(doc["camera"], site, events))
    trace = Trace(duration, cameras, fps, str(header.get("source", "")))
    trace.check(str(path))
    return trace


def merge(traces: Sequence[Trace]) -> Trace:
    """Several traces side by side (cameras must differ); the longest duration."""
    cameras = [c for t in traces for c in t.cameras]
    out = Trace(max(t.duration_s for t in traces), cameras, traces[0].publish_fps, "merged")
    out.check()
    return out
