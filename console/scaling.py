"""The scaling page's figures: replicas, queue depth and cold starts from the local scaler's
timeline (``TRIPWIRE_TIMELINE``, see :mod:`tripwire.timeline`), power from the metrics
sampler's JSONL (``python -m tripwire.meters --jsonl``), drawn as small inline SVG charts.

With several models (a ``models:`` section) the scaler's events carry the model's name: the
replicas are then one line per model (:attr:`Scaling.models`) and the replicas and depth
figures are the sums over the models; with one model the page is as it always was."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINES = 200_000  # the newest lines of a long file are what the page shows


@dataclass
class Series:
    name: str
    unit: str
    points: list[tuple[int, float]] = field(default_factory=list)  # (t_ns, value)
    step: bool = False  # a value holds until the next one (replicas)


@dataclass
class ColdStart:
    t_ns: int
    pid: int
    forked: bool
    seconds: float | None  # worker started -> first inference; None while waiting
    model: str | None = None  # the worker's model, when the stack runs named models


@dataclass
class Scaling:
    replicas: Series  # with several models: their sum
    depth: Series  # with several models: their sum
    models: dict[str, Series]  # replicas per model, by name; empty with one model
    power: Series
    cold_starts: list[ColdStart]
    timeline: Path | None
    metrics: Path | None


def _lines(path: Path | None) -> Iterator[dict[str, Any]]:
    if path is None or not path.is_file():
        return
    with path.open(errors="replace") as fh:
        tail = fh.readlines()[-MAX_LINES:]
    for line in tail:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if isinstance(record, dict) and isinstance(record.get("t_ns"), int):
            yield record


def read_scaling(timeline: Path | None, metrics: Path | None, since_ns: int) -> Scaling:
    replicas: dict[str, Series] = {}  # by model ("" = no model named: one model)
    depths: dict[str, Series] = {}
    power = Series("power", "W")
    started: dict[int, ColdStart] = {}
    colds: list[ColdStart] = []
    for r in _lines(timeline):
        t, kind = r["t_ns"], r.get("event")
        if kind == "scale_decision":
            model = str(r.get("model") or "")
            line = replicas.setdefault(model, Series(model or "detector", "", step=True))
            if t < since_ns:  # the value holding at the window's start
                line.points[:] = [(since_ns, float(r.get("replicas", 0)))]
                continue
            line.points.append((t, float(r.get("replicas", 0))))
            if isinstance(r.get("depth"), int | float):
                depth = depths.setdefault(model, Series(model, "frames"))
                depth.points.append((t, float(r["depth"])))
        elif t < since_ns:
            continue
        elif kind == "worker_started" and isinstance(r.get("worker_pid"), int):
            named = r.get("model") if isinstance(r.get("model"), str) else None
            new = ColdStart(t, r["worker_pid"], bool(r.get("forked")), None, named)
            started[new.pid] = new
            colds.append(new)
        elif (
            kind == "first_inference"
            and isinstance(r.get("pid"), int)
            and (waiting := started.pop(r["pid"], None)) is not None
        ):
            waiting.seconds = round((t - waiting.t_ns) / 1e9, 2)
    for s in _lines(metrics):
        if s["t_ns"] < since_ns:
            continue
        watts = _watts(s.get("sources", {}))
        if watts is not None:
            power.points.append((s["t_ns"], watts))
    models = dict(sorted(replicas.items())) if len(replicas) > 1 else {}
    return Scaling(
        _sum(list(replicas.values()), "detector replicas", "", step=True),
        _sum(list(depths.values()), "queue depth", "frames"),
        models,
        power,
        colds[-50:],
        timeline,
        metrics,
    )


def _sum(lines: Sequence[Series], name: str, unit: str, step: bool = False) -> Series:
    """One series of the sum of ``lines``: at each point of any, the last value of each."""
    total = Series(name, unit, step=step)
    if len(lines) == 1:
        total.points = lines[0].points
        return total
    latest: dict[int, float] = {}
    for t, i, v in sorted((t, i, v) for i, line in enumerate(lines) for t, v in line.points):
        latest[i] = v
        value = sum(latest.values())
        if total.points and total.points[-1][0] == t:
            total.points[-1] = (t, value)
        else:
            total.points.append((t, value))
    return total


def _watts(sources: Any) -> float | None:
    """The sample's whole-device power: each source's power readings without a process label."""
    total, found = 0.0, False
    if not isinstance(sources, dict):
        return None
    for report in sources.values():
        for reading in report.get("readings", []) if isinstance(report, dict) else []:
            labels = reading.get("labels") or {}
            if reading.get("metric") == "power_watts" and not {"pid", "process"} & set(labels):
                total += float(reading.get("value") or 0.0)
                found = True
    return round(total, 2) if found else None


@dataclass
class Line:
    name: str
    path: str
    last: float


@dataclass
class Chart:
    width: int
    height: int
    path: str
    y_max: float
    t0_ns: int
    t1_ns: int
    last: float | None
    lines: list[Line] = field(default_factory=list)  # one per series of a several-line chart


def chart(
    series: Series, t0_ns: int, t1_ns: int, width: int = 640, height: int = 120
) -> Chart | None:
    """An SVG polyline path of ``series`` between ``t0_ns`` and ``t1_ns``; None if empty."""
    if not series.points:
        return None
    y_max = max(1.0, max(v for _, v in series.points)) * 1.1
    path = _path(series, t0_ns, t1_ns, width, height, y_max)
    return Chart(width, height, path, y_max / 1.1, t0_ns, t1_ns, series.points[-1][1])


def lines_chart(
    many: Sequence[Series], t0_ns: int, t1_ns: int, width: int = 640, height: int = 120
) -> Chart | None:
    """One path per series on a shared scale (``Chart.lines``); None if all are empty."""
    drawn = [s for s in many if s.points]
    if not drawn:
        return None
    y_max = max(1.0, max(v for s in drawn for _, v in s.points)) * 1.1
    lines = [
        Line(s.name, _path(s, t0_ns, t1_ns, width, height, y_max), s.points[-1][1]) for s in drawn
    ]
    total = sum(line.last for line in lines)
    return Chart(width, height, "", y_max / 1.1, t0_ns, t1_ns, total, lines)


def _path(series: Series, t0_ns: int, t1_ns: int, width: int, height: int, y_max: float) -> str:
    points: Sequence[tuple[int, float]] = series.points
    span = max(1, t1_ns - t0_ns)

    def x(t: int) -> float:
        return round((min(max(t, t0_ns), t1_ns) - t0_ns) / span * width, 1)

    def y(v: float) -> float:
        return round(height - v / y_max * height, 1)

    out = [f"M{x(points[0][0])},{y(points[0][1])}"]
    previous = points[0][1]
    for t, v in points[1:]:
        if series.step:
            out.append(f"L{x(t)},{y(previous)}")
        out.append(f"L{x(t)},{y(v)}")
        previous = v
    if series.step:
        out.append(f"L{width},{y(previous)}")
    return " ".join(out)
