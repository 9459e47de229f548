"""The fleet's command-line parts: ``tripwire trace record|generate`` and ``tripwire bench fleet``.

Kept here so that :mod:`tripwire.app.cli` only hooks them in (two lines).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tripwire.fleet.generate import FleetShape


def _cmd_trace_record(args: argparse.Namespace) -> int:
    from tripwire.app.trace_record import camera_config, record_trace
    from tripwire.fleet.trace import write_trace

    camera = camera_config(args.camera, args.config)
    trace = record_trace(
        args.source, camera, seconds=args.seconds, loops=args.loops, site=args.site
    )
    write_trace(trace, args.out)
    events = trace.cameras[0].events
    print(
        f"{args.out}: {len(events)} event(s) over {trace.duration_s:.1f} s "
        f"({sum(e.close_s - e.open_s for e in events):.1f} s open, "
        f"{sum(e.frames for e in events)} frames published)"
    )
    return 0


def _shape(args: argparse.Namespace, cameras: int) -> FleetShape:
    from tripwire.fleet.generate import FleetShape

    return FleetShape(
        cameras=cameras,
        hours=args.hours,
        site_size=args.site_size,
        events_per_hour=args.events_per_hour,
        seed=args.seed,
    )


def _cmd_trace_generate(args: argparse.Namespace) -> int:
    from tripwire.fleet.generate import generate_fleet
    from tripwire.fleet.trace import read_trace, write_trace

    shape = _shape(args, args.cameras)
    template = read_trace(args.template) if args.template else None
    trace = generate_fleet(shape, template)
    write_trace(trace, args.out)
    print(f"{args.out}: {len(trace.cameras)} cameras, {trace.events} events")
    return 0


def _cmd_bench_fleet(args: argparse.Namespace) -> int:
    from tripwire.fleet.bench import FleetOptions, ratios, run_fleet, table
    from tripwire.fleet.simulate import SimOptions

    options = FleetOptions(
        cameras=args.cameras,
        hours=args.hours,
        policies=args.policies,
        profile=args.profile,
        site_size=args.site_size,
        events_per_hour=args.events_per_hour,
        seed=args.seed,
        trace=args.trace,
        template=args.template,
        sim=SimOptions(
            cold_start_s=args.cold_start_s,
            first_result_s=args.first_result_s,
            stop_s=args.stop_s,
            seed=args.seed,
            fast_forward=not args.every_poll,
        ),
        out=args.out,
    )
    summary = run_fleet(options)
    print()
    print(table(summary["rows"]))
    print()
    print(ratios(summary["rows"]))
    print(f"\nsimulator speed: {summary['camera_h_per_s']:,.0f} camera-hours per second")
    if args.json:
        print(json.dumps(summary["rows"]))
    return 0


def _fleet_shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument(
        "--site-size", type=int, default=10, help="cameras per detector deployment (default 10)"
    )
    p.add_argument(
        "--events-per-hour",
        type=float,
        default=4.0,
        help="a camera's median motion events per hour over the day (default 4)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--template", type=Path, help="draw event lengths from this recorded trace")


def add_trace_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "trace",
        help="motion traces: record one from a clip or camera, generate a fleet",
        description="motion traces: record one from a clip or camera, generate a fleet",
    )
    trace = p.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    rec = trace.add_parser(
        "record",
        help="run the motion function over a clip or a live camera; write its events",
        description="Run the motion function over a video file, rtsp:// or http(s) stream or "
        "/dev/videoN and write a tripwire.trace/1 file: each motion event's open and close "
        "(capture seconds from the first frame) and the frames it published.",
    )
    rec.add_argument("--source", required=True, help="FILE | rtsp://… | http(s)://… | /dev/videoN")
    rec.add_argument("--camera", default="cam-1", help="camera id (and its motion settings)")
    rec.add_argument("--config", type=Path, help="camera config with the camera's motion block")
    rec.add_argument("--seconds", type=float, help="stop after this much capture time")
    rec.add_argument("--loops", type=int, default=1, help="play a file this many times")
    rec.add_argument("--site", help="the camera's site (default: its id)")
    rec.add_argument("--out", type=Path, default=Path("trace.jsonl"), help=".gz: compressed")
    rec.set_defaults(func=_cmd_trace_record)
    gen = trace.add_parser(
        "generate",
        help="a fleet trace: diurnal shape, per-camera variety, correlated bursts",
        description="Generate a fleet's trace (see tripwire.fleet.generate).",
    )
    gen.add_argument("--cameras", type=int, default=100)
    _fleet_shape_args(gen)
    gen.add_argument("--out", type=Path, default=Path("fleet.jsonl.gz"))
    gen.set_defaults(func=_cmd_trace_generate)


def add_bench_fleet(bench: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from tripwire.fleet.bench import POLICIES

    p = bench.add_parser(
        "fleet",
        help="simulate N cameras over hours with the scaler's own rules: keep-alive policies",
        description="Simulate a fleet (generated, or --trace) with every keep-alive policy "
        "through the local scaler's own rules on simulated time and a device power profile: "
        "energy by component, cold starts, wake -> first result latency, GPU-hours held.",
    )
    p.add_argument("--cameras", type=int, nargs="+", default=[10, 100, 1000, 10000])
    _fleet_shape_args(p)
    p.add_argument("--trace", type=Path, help="replay this trace instead of generating")
    p.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    p.add_argument("--profile", default="h200", help="GPU power profile (default h200)")
    p.add_argument(
        "--cold-start-s", type=float, default=8.0, help="worker start -> ready (default 8)"
    )
    p.add_argument(
        "--first-result-s",
        type=float,
        default=0.1,
        help="a ready replica: frame published -> result (default 0.1)",
    )
    p.add_argument("--stop-s", type=float, default=1.0, help="SIGTERM -> exit (default 1)")
    p.add_argument(
        "--every-poll", action="store_true", help="decide every poll (no fast-forward; slower)"
    )
    p.add_argument("--out", type=Path, help="write summary.json and report.md here")
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    p.set_defaults(func=_cmd_bench_fleet)
