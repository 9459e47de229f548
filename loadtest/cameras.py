"""Camera load test: N simulated cameras push JPEG frames at F fps to a running gateway.

Each camera keeps one HTTP/1.1 keep-alive connection and its own schedule (frame k due at
start + k/F; a frame more than one period late is counted as skipped, as a camera would
drop it). The client is a few lines of asyncio streams rather than an HTTP library, so that
on a 2-core machine the load generator costs little next to the gateway it measures.

    python -m loadtest.cameras --cameras 20 --fps 30 --duration 20
    python -m loadtest.cameras --sweep 30 35 40 45 --fps 30 --duration 15
    python -m loadtest.cameras --sweep 40 45 50 --analysis-fps 5 --fps 30 --duration 15

Without ``--url`` it starts a gateway on embedded NATS in a child process (tokens from a
fresh starter config); with ``--url`` it needs ``--tokens`` (the env file ``tripwire init``
writes). Prints accepted fps, latency p50/p95/p99, errors by status, the motion fraction,
then one JSON line; ``--sweep`` finds the largest N with p99 < 100 ms, no errors and at
most 1 % of frames skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import yaml

from loadtest.clips import WAREHOUSE, find_video
from tripwire.app.camera_sim import Answer, Post, SimulatedCamera, video_source
from tripwire.app.scenes import demo_scene
from tripwire.embedded_nats import free_port
from tripwire.starter import read_tokens, write_starter_config

P99_LIMIT_S = 0.100


# The generated scene loops 8 s in real time (someone walks in from 5 s on, so about 3/8 of
# the frames show motion); SCENES different noise seeds are shared among the cameras.
LOOP_S = 8.0
SCENES = 4


def frames_for(scene: int, video: Path | None, fps: float) -> list[bytes]:
    """A loop of 720p JPEGs played at the camera's own rate, rendered before the clock starts."""
    count = max(1, round(LOOP_S * fps))
    if video is not None:
        source, _ = video_source(video, max_frames=count)
        return [source(i) for i in range(count)]
    generated = demo_scene(seed=scene, fps=fps, period_s=2 * LOOP_S)
    return [generated.jpeg(i) for i in range(count)]


def _stream_post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, camera: str, token: str
) -> Post:
    """POST over one keep-alive connection with asyncio streams: on 2 cores the load
    generator must cost little next to the gateway it measures (an HTTP library costs more)."""
    head = (
        f"POST /v1/cameras/{camera}/frames HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: image/jpeg\r\n"
    )

    async def post(index: int, body: bytes, capture_ns: int) -> Answer:
        request = (
            f"{head}X-Seq: {index}\r\nX-Capture-Ns: {capture_ns}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        answer = await reader.readexactly(length)
        status = status_line.split(b" ", 2)[1].decode() if status_line else "closed"
        return status, b'"motion":true' in answer, b'"published":true' in answer

    return post


async def _camera(
    host: str, port: int, camera: SimulatedCamera, duration_s: float, phase_s: float
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    # Real cameras are not in lockstep: each one starts at its own phase, so frames and
    # the gateway's analysis slots spread over time instead of arriving as one burst.
    await asyncio.sleep(phase_s)
    try:
        await camera.run(
            _stream_post(reader, writer, host, camera.camera_id, camera.token), duration_s
        )
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        camera.stats.statuses[type(exc).__name__] += 1
    finally:
        writer.close()


async def _progress(
    tasks: list[asyncio.Task[None]], cams: list[SimulatedCamera], duration_s: float
) -> None:
    start = time.monotonic()
    while not all(task.done() for task in tasks):
        elapsed = time.monotonic() - start
        filled = int(30 * min(1.0, elapsed / duration_s))
        sent = sum(c.stats.sent for c in cams)
        accepted = sum(c.stats.accepted for c in cams)
        print(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {elapsed:5.1f}s  sent {sent}  ok {accepted}",
            end="",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(0.5)
    print(file=sys.stderr)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_load(
    url: str,
    tokens: dict[str, str],
    cameras: int,
    fps: float,
    duration_s: float,
    video: Path | None,
    gateway_pid: int | None = None,
) -> dict[str, object]:
    """Run the cameras; with ``gateway_pid`` (a gateway on this machine) also report the CPU
    that it and this load generator used while the cameras were sending."""
    parts = urlsplit(url)
    ids = sorted(tokens, key=lambda c: int(c.split("-")[-1]) if c[-1].isdigit() else 0)
    if len(ids) < cameras:
        raise SystemExit(f"only {len(ids)} camera tokens for {cameras} cameras")
    scenes = 1 if video is not None else SCENES  # a clip is the same for every camera
    loops = [await asyncio.to_thread(frames_for, i, video, fps) for i in range(scenes)]
    frames = [loops[i % scenes] for i in range(cameras)]
    cams = [SimulatedCamera(ids[i], tokens[ids[i]], frames[i], fps) for i in range(cameras)]
    phases = random.Random(0)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    me = psutil.Process()
    gateway = psutil.Process(gateway_pid) if gateway_pid is not None else None
    me_start = _cpu_s(me)
    gateway_start = _cpu_s(gateway) if gateway is not None else 0.0
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_camera(host, port, cam, duration_s, phases.uniform(0.0, 1.0)))
        for cam in cams
    ]
    await asyncio.gather(*tasks, _progress(tasks, cams, duration_s))
    elapsed = time.monotonic() - started
    sent, skipped = sum(c.stats.sent for c in cams), sum(c.stats.skipped for c in cams)
    accepted, motion = sum(c.stats.accepted for c in cams), sum(c.stats.motion for c in cams)
    statuses: Counter[str] = sum((c.stats.statuses for c in cams), Counter())
    lat = [x for c in cams for x in c.stats.latencies_s]
    cpu: dict[str, float | None] = {
        "gateway_cores": None,
        "gateway_ms_per_frame": None,
        "loadgen_cores": round((_cpu_s(me) - me_start) / elapsed, 3),
    }
    if gateway is not None:
        spent = _cpu_s(gateway) - gateway_start
        cpu["gateway_cores"] = round(spent / elapsed, 3)
        cpu["gateway_ms_per_frame"] = round(1000 * spent / max(sent, 1), 3)
    errors = {s: n for s, n in statuses.items() if s != "202"}
    return {
        "cameras": cameras,
        "fps_per_camera": fps,
        "seconds": round(elapsed, 1),
        "offered_fps": round(cameras * fps, 1),
        # Over the schedule's length: each camera sends for duration_s from its own start;
        # connection set-up and the last answer in flight are not sending time.
        "accepted_fps": round(accepted / duration_s, 1),
        "sent": sent,
        "skipped": skipped,
        "skipped_fraction": round(skipped / max(1, sent + skipped), 4),
        "errors": errors,
        "latency_ms": {
            "p50": round(1000 * _percentile(lat, 0.50), 1),
            "p95": round(1000 * _percentile(lat, 0.95), 1),
            "p99": round(1000 * _percentile(lat, 0.99), 1),
            "mean": round(1000 * statistics.fmean(lat), 1) if lat else None,
        },
        "motion_fraction": round(motion / accepted, 3) if accepted else None,
        "cpu": cpu,
    }


def _cpu_s(process: psutil.Process) -> float:
    """CPU time (user + system) a process has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def _ok(result: dict[str, object]) -> bool:
    """p99 under the limit, no errors, and the gateway kept pace: a camera had to drop
    (skip) at most 1 % of its frames because the previous answer came more than a frame
    period late."""
    lat = result["latency_ms"]
    assert isinstance(lat, dict)
    kept_pace = float(str(result["skipped_fraction"])) <= 0.01
    return not result["errors"] and lat["p99"] < 1000 * P99_LIMIT_S and kept_pace


def _start_gateway(
    home: Path, cameras: int, analysis_fps: float | None
) -> tuple[subprocess.Popen[bytes], str]:
    config, _ = write_starter_config(home, cameras, force=True)
    if analysis_fps is not None:
        doc = yaml.safe_load(config.read_text())
        doc["defaults"] = {"motion": {"analysis_fps": analysis_fps}}
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
    port = free_port()
    env = {
        **os.environ,
        "TRIPWIRE_HOME": str(home),
        "TRIPWIRE_PORT": str(port),
        "TRIPWIRE_CONFIG": str(home / "cameras.yaml"),
        "TRIPWIRE_LOG_LEVEL": "WARNING",
    }
    env.pop("TRIPWIRE_BROKER__URL", None)
    log = (home / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tripwire.app.cli", "gateway"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"gateway did not start; see {home / 'gateway.log'}")


def _print(result: dict[str, object]) -> None:
    lat = result["latency_ms"]
    assert isinstance(lat, dict)
    print(
        f"{result['cameras']:>4} cameras x {result['fps_per_camera']} fps: accepted "
        f"{result['accepted_fps']}/{result['offered_fps']} fps, latency p50 {lat['p50']} "
        f"p95 {lat['p95']} p99 {lat['p99']} ms, errors {result['errors'] or 'none'}, "
        f"skipped {result['skipped']}, motion {result['motion_fraction']}",
        flush=True,
    )
    cpu = result["cpu"]
    assert isinstance(cpu, dict)
    if cpu["gateway_cores"] is not None:
        print(
            f"      CPU: gateway {cpu['gateway_cores']} cores "
            f"({cpu['gateway_ms_per_frame']} ms per frame), load generator "
            f"{cpu['loadgen_cores']} cores",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--sweep", type=int, nargs="+", help="camera counts to try in turn")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--video", type=Path, help="loop this clip (default: generated scene)")
    parser.add_argument("--warehouse", action="store_true", help="use the shared warehouse clip")
    parser.add_argument("--url", help="a running gateway (default: start one here)")
    parser.add_argument("--tokens", type=Path, help="camera-tokens.env for --url")
    parser.add_argument(
        "--analysis-fps",
        type=float,
        help="motion analyses per camera per second in the gateway it starts "
        "(default: the camera config's default, 10)",
    )
    args = parser.parse_args()
    video = find_video(WAREHOUSE) if args.warehouse else args.video
    counts = args.sweep or [args.cameras]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            if args.url:
                if args.tokens is None:
                    raise SystemExit("--url needs --tokens")
                url, process = args.url, None
                tokens = dict(
                    line.split("=", 1)
                    for line in args.tokens.read_text().splitlines()
                    if "=" in line
                )
            else:  # a fresh gateway per step: motion state and queues start clean
                process, url = _start_gateway(Path(tmp) / f"n{n}", n, args.analysis_fps)
                tokens = read_tokens(Path(tmp) / f"n{n}")
            try:
                pid = process.pid if process is not None else None
                result = asyncio.run(
                    run_load(url, tokens, n, args.fps, args.duration, video, gateway_pid=pid)
                )
            finally:
                if process is not None:
                    process.terminate()
                    process.wait(20)
            _print(result)
            results.append(result)
    passing = [int(str(r["cameras"])) for r in results if _ok(r)]
    capacity = max(passing) if passing else 0
    if args.sweep:
        print(
            f"capacity: {capacity} cameras x {args.fps} fps with p99 < "
            f"{int(P99_LIMIT_S * 1000)} ms and no errors"
        )
    print(
        json.dumps({"camera_load": results, "capacity_cameras": capacity if args.sweep else None})
    )


if __name__ == "__main__":
    main()
