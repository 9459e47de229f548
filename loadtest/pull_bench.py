"""``tripwire cameras`` on one RTSP camera: CPU per frame, and recovery after server restarts.

    python -m loadtest.pull_bench [--seconds 30] [--restarts 3] [--away 3]

Starts a throwaway nats-server, GStreamer's RTSP server (``tests/rtsp_server.py`` with the
system python3: 640x360 MJPEG over RTP at 10 frames/s, a moving ball) and ``tripwire cameras``
with one camera declared by ``source:``. Measures the puller's CPU over ``--seconds`` of
steady streaming, then stops the RTSP server ``--restarts`` times for ``--away`` seconds each
and times server back -> first frame read again (reconnect backoff + RTSP open), from the
puller's own /metrics. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from tripwire.embedded_nats import EmbeddedNats, free_port

REPO = Path(__file__).resolve().parents[1]


def _rtsp(port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("the RTSP server did not start (scripts/ensure-rtsp-server)")
    return server


def _metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1.0
    found = re.search(rf'^{name}{{camera="cam-1"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def _wait(port: int, name: str, done: float, above: bool = True) -> None:
    while (_metric(port, name) > done) if not above else (_metric(port, name) <= done):
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--away", type=float, default=3.0, help="seconds the server is down")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pull-bench-"))
    nats = EmbeddedNats.start(tmp / "nats")
    rtsp_port, metrics_port = free_port(), free_port()
    server = _rtsp(rtsp_port)
    config = tmp / "cameras.yaml"
    config.write_text(
        f"cameras:\n  - id: cam-1\n    token_hash: 'sha256:{'0' * 64}'\n"
        f"    source: rtsp://127.0.0.1:{rtsp_port}/cam\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env |= {"TRIPWIRE_HOME": str(tmp / "home"), "PYTHONPATH": str(REPO)}
    command = ["cameras", "--config", str(config), "--broker", nats.url]
    with (tmp / "cameras.log").open("wb") as log:
        puller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tripwire.app.cli",
                *command,
                "--metrics-port",
                str(metrics_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    frames = "tripwire_camera_frames_total"
    try:
        _wait(metrics_port, frames, 20)
        process = psutil.Process(puller.pid)
        cpu0, frames0, t0 = sum(process.cpu_times()[:2]), _metric(metrics_port, frames), time.time()
        time.sleep(args.seconds)
        cpu1, frames1, t1 = sum(process.cpu_times()[:2]), _metric(metrics_port, frames), time.time()
        gaps = []
        for _ in range(args.restarts):
            server.terminate()
            server.wait()
            _wait(metrics_port, "tripwire_camera_retrying", 0.5)
            time.sleep(args.away)
            before = _metric(metrics_port, frames)
            back = time.monotonic()
            server = _rtsp(rtsp_port)
            _wait(metrics_port, frames, before)
            gaps.append(time.monotonic() - back)
            if puller.poll() is not None:
                raise SystemExit(f"tripwire cameras exited: see {tmp / 'cameras.log'}")
    finally:
        puller.terminate()
        code = puller.wait(30)
        server.terminate()
        nats.stop()
    fps = (frames1 - frames0) / (t1 - t0)
    ms_per_frame = (cpu1 - cpu0) / (frames1 - frames0) * 1000
    cores = (cpu1 - cpu0) / (t1 - t0)
    print("                                         value")
    print(f"frames/s read (640x360, 10 fps stream)   {fps:8.1f}")
    print(f"puller CPU per frame (ms)                {ms_per_frame:8.2f}")
    print(f"puller cores                             {cores:8.3f}")
    print(f"server back -> frames again, median (s)  {statistics.median(gaps):8.2f}")
    print(f"  each (s), server away {args.away:.0f} s            {[round(g, 2) for g in gaps]}")
    print(f"exit status on SIGTERM                   {code:8d}")
    result = {
        "fps": round(fps, 2),
        "cpu_ms_per_frame": round(ms_per_frame, 3),
        "cores": round(cores, 4),
        "recovery_s": [round(g, 3) for g in gaps],
        "exit": code,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
