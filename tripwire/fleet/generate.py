"""Fleets of cameras: a day of motion events for each, from a shape and (optionally) a trace.

Each camera's events arrive as a non-homogeneous Poisson process (drawn by thinning):

- **rate**: a camera's median rate is ``events_per_hour``, varied per camera by a lognormal
  factor (``rate_sigma``): a few busy street cameras, many quiet ones;
- **diurnal shape**: a raised cosine over 24 h with its peak at ``peak_hour`` (per camera
  +- ``peak_spread_h``) and its trough at ``night_floor`` (per camera x 0.5..1.5) of the
  peak, normalised so the day's mean is the camera's rate;
- **correlated bursts**: ``storms_per_day`` storms (Poisson), each ``storm_minutes`` long
  (lognormal) over a contiguous block of sites (``storm_share`` of them on average): every
  camera there sees ``storm_factor`` x its rate (rain, wind, a crowd leaving a stadium).

An event's length (and its published frames per second) are drawn from a recorded trace's
events when one is given (``template``), else lognormal around ``event_s``. Events of one
camera that would overlap or come closer than ``min_gap_s`` are merged, as the motion
function would keep one event open. Cameras are grouped ``site_size`` to a site: one
detector deployment (ScaledObject) per site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tripwire.fleet.trace import CameraTrace, Event, Trace

DAY_S = 86400.0


@dataclass(frozen=True)
class FleetShape:
    cameras: int
    hours: float = 24.0
    site_size: int = 10
    events_per_hour: float = 4.0
    rate_sigma: float = 1.0
    night_floor: float = 0.15
    peak_hour: float = 14.0
    peak_spread_h: float = 3.0
    storms_per_day: float = 2.0
    storm_minutes: float = 40.0
    storm_share: float = 0.4
    storm_factor: float = 6.0
    event_s: float = 15.0
    event_sigma: float = 0.8
    publish_fps: float = 5.0
    min_gap_s: float = 2.0
    seed: int = 1

    def check(self) -> None:
        if not 1 <= self.cameras <= 1_000_000:
            raise ValueError(f"cameras {self.cameras} not in 1..1,000,000")
        if self.hours <= 0 or self.site_size < 1 or self.events_per_hour <= 0:
            raise ValueError("hours, site_size and events_per_hour must be positive")
        if not 0 <= self.night_floor <= 1 or not 0 <= self.storm_share <= 1:
            raise ValueError("night_floor and storm_share are fractions in [0, 1]")


@dataclass(frozen=True)
class Storm:
    start_s: float
    end_s: float
    first_site: int
    last_site: int  # inclusive


def _storms(shape: FleetShape, sites: int, rng: np.random.Generator) -> list[Storm]:
    duration = shape.hours * 3600
    out = []
    for _ in range(int(rng.poisson(shape.storms_per_day * shape.hours / 24))):
        start = float(rng.uniform(0, duration))
        length = float(shape.storm_minutes * 60 * rng.lognormal(0.0, 0.5))
        share = min(1.0, shape.storm_share * float(rng.uniform(0.5, 1.5)))
        span = max(1, round(share * sites))
        first = int(rng.integers(0, max(1, sites - span + 1)))
        out.append(Storm(start, min(duration, start + length), first, first + span - 1))
    return out


def _template_samples(template: Trace | None) -> tuple[np.ndarray, np.ndarray] | None:
    if template is None:
        return None
    lengths, fps = [], []
    for camera in template.cameras:
        for e in camera.events:
            length = e.close_s - e.open_s
            lengths.append(length)
            fps.append(e.frames / length if length > 0 else 0.0)
    if not lengths:
        return None
    return np.asarray(lengths), np.asarray(fps)


def generate_fleet(shape: FleetShape, template: Trace | None = None) -> Trace:
    shape.check()
    rng = np.random.default_rng(shape.seed)
    duration = shape.hours * 3600
    sites = math.ceil(shape.cameras / shape.site_size)
    storms = _storms(shape, sites, rng)
    samples = _template_samples(template)
    cameras = []
    for index in range(shape.cameras):
        site = index // shape.site_size
        rate_h = shape.events_per_hour * float(rng.lognormal(0.0, shape.rate_sigma))
        peak = shape.peak_hour + float(rng.normal(0.0, shape.peak_spread_h))
        floor = min(1.0, shape.night_floor * float(rng.uniform(0.5, 1.5)))
        mean_shape = floor + (1 - floor) * 0.5
        mine = [s for s in storms if s.first_site <= site <= s.last_site]
        boost = shape.storm_factor if mine else 1.0
        peak_rate_s = rate_h / 3600 / mean_shape * boost  # the thinning envelope
        n = int(rng.poisson(peak_rate_s * duration))
        times = np.sort(rng.uniform(0, duration, n))
        hours = times / 3600
        diurnal = floor + (1 - floor) * (0.5 + 0.5 * np.cos(2 * np.pi * (hours - peak) / 24))
        factor = np.ones(n)
        for storm in mine:
            factor[(times >= storm.start_s) & (times < storm.end_s)] = shape.storm_factor
        keep = rng.uniform(0, 1, n) * boost < diurnal * factor
        times = times[keep]
        if samples is not None:
            pick = rng.integers(0, len(samples[0]), len(times))
            stretch = rng.uniform(0.8, 1.25, len(times))
            lengths = samples[0][pick] * stretch
            fps = samples[1][pick]
        else:
            lengths = shape.event_s * rng.lognormal(0.0, shape.event_sigma, len(times))
            fps = np.full(len(times), shape.publish_fps)
        events: list[Event] = []
        open_s = close_s = work = -1.0
        for t, length, rate in zip(times.tolist(), lengths.tolist(), fps.tolist(), strict=True):
            end = min(duration, t + max(length, 0.2))
            if open_s >= 0 and t < close_s + shape.min_gap_s:  # still open: one event
                work += (max(end, close_s) - close_s) * rate
                close_s = max(close_s, end)
                continue
            if open_s >= 0:
                events.append(Event(open_s, close_s, max(1, round(work))))
            open_s, close_s, work = t, end, (end - t) * rate
        if open_s >= 0 and close_s > open_s:
            events.append(Event(open_s, close_s, max(1, round(work))))
        cameras.append(CameraTrace(f"cam-{index + 1}", f"site-{site}", events))
    where = "generated" if template is None else f"generated from {template.source or 'a trace'}"
    trace = Trace(duration, cameras, shape.publish_fps, f"{where}, seed {shape.seed}")
    trace.check("generated fleet")
    return trace
