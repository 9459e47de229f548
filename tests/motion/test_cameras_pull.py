"""Pull mode against a real RTSP server that is stopped and restarted mid-test.

The server is GStreamer's gst-rtsp-server (``tests/rtsp_server.py``, run with the system
python3 and gi; scripts/test installs Debian's packages). The puller must not exit when the
stream drops: it goes to "retrying", reconnects with backoff once the server is back, and
frames flow again. ``tripwire cameras`` is run as its own process, on a real nats-server, with
a camera declared by ``source:`` in the config file: its motion frames and its wake reach the
broker through the gateway's publish path, and its state is read from its /metrics.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from functions.motion.pull import Backoff, PullState, iter_frames
from tripwire.brokers import open_broker
from tripwire.contract import WAKE_SUBJECT, FrameMeta
from tripwire.embedded_nats import free_port
from tripwire.settings import BrokerSettings

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
HASH = "sha256:" + "0" * 64


def _gst_rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _gst_rtsp_available(),
    reason="gst-rtsp-server missing (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi)",
)


class RtspServer:
    """tests/rtsp_server.py on a fixed port, so that a restart serves the same URL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(REPO / "tests" / "rtsp_server.py"), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = RtspServer(free_port())
    server.start()
    yield server
    server.stop()


def _until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        time.sleep(0.1)


def test_reader_reconnects_after_the_rtsp_server_restarts(rtsp: RtspServer) -> None:
    state = PullState("cam-rtsp", rtsp.url)
    stop = threading.Event()
    frames: list[tuple[int, int]] = []  # (connection number, frame height)

    def read() -> None:
        backoff = Backoff(initial_s=0.2, max_s=1.0)
        for _, image in iter_frames(rtsp.url, state, backoff=backoff, stop=stop):
            assert not isinstance(image, bytes)
            frames.append((state.connects, image.shape[0]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _until(lambda: len(frames) >= 10, 60, "10 frames before the restart")
        assert state.status == "connected" and state.connects == 1
        rtsp.stop()
        _until(lambda: state.status == "retrying", 30, "the drop is seen")
        assert state.drops >= 1 and reader.is_alive()
        before = len(frames)
        time.sleep(1.5)  # a few failed reconnects while the server is away
        assert state.status in ("retrying", "connecting") and reader.is_alive()
        rtsp.start()
        _until(lambda: len(frames) >= before + 10, 60, "10 frames after the restart")
        assert state.status == "connected" and state.connects >= 2
        assert frames[-1] == (state.connects, 360)
        assert state.last_frame_ns is not None and state.last_frame_ns > time.time_ns() - 10**10
    finally:
        stop.set()
        reader.join(15)
    assert not reader.is_alive()


def _tripwire(args: list[str], home: Path, log: Path, stdout: int) -> subprocess.Popen[str]:
    """``python -m tripwire.app.cli ARGS``: this checkout's code, no TRIPWIRE_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env |= {"TRIPWIRE_HOME": str(home), "PYTHONPATH": str(REPO)}
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tripwire.app.cli", *args],
            env=env,
            stdout=stdout,
            stderr=err,
            text=True,
        )


def _metric(text: str, name: str, camera: str) -> float:
    match = re.search(rf'^{name}{{camera="{camera}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


async def test_tripwire_cameras_survives_a_restart_and_publishes_and_wakes(
    rtsp: RtspServer, module_nats_url: str, tmp_path: Path, unique: str
) -> None:
    camera = f"cam-{unique}"[:63]
    config = tmp_path / "cameras.yaml"
    config.write_text(
        f"cameras:\n  - id: {camera}\n    token_hash: '{HASH}'\n"
        f"    source: {{url: '{rtsp.url}', fps: 10}}\n"
        "    motion: {analysis_fps: 0, max_publish_fps: 100}\n"
    )
    broker = open_broker(BrokerSettings(), module_nats_url)
    await broker.connect()
    wakes: list[str] = []

    async def listen() -> None:
        async for message in broker.subscribe(WAKE_SUBJECT):
            wakes.append(message.body.decode())

    listener = asyncio.create_task(listen())
    # The subscription takes effect asynchronously: ping until it hears one.
    while not wakes:
        await broker.publish(WAKE_SUBJECT, b"ping", {})
        await asyncio.sleep(0.2)
    wakes.clear()

    port = free_port()
    args = [
        "cameras",
        "--config",
        str(config),
        "--broker",
        module_nats_url,
        "--metrics-port",
        str(port),
    ]
    process = _tripwire(args, tmp_path / "home", tmp_path / "cameras.log", subprocess.DEVNULL)
    metrics = f"http://127.0.0.1:{port}/metrics"

    def scrape(name: str) -> float:
        try:
            return _metric(httpx.get(metrics, timeout=2).text, name, camera)
        except httpx.HTTPError:
            return -1.0

    async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while not await asyncio.to_thread(condition):
            if process.poll() is not None:
                log = (tmp_path / "cameras.log").read_text()[-2000:]
                raise AssertionError(f"tripwire cameras exited ({process.returncode}): {log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within_s}s: {what}")
            await asyncio.sleep(0.2)

    try:
        await until(lambda: scrape("tripwire_camera_frames_total") >= 20, 90, "frames flow")
        assert scrape("tripwire_camera_connected") == 1.0
        await until(lambda: scrape("tripwire_motion_frames_total") >= 1, 60, "motion published")
        rtsp.stop()
        await until(lambda: scrape("tripwire_camera_retrying") == 1.0, 30, "the drop is seen")
        frames_at_drop = scrape("tripwire_camera_frames_total")
        assert scrape("tripwire_camera_drops_total") >= 1 and process.poll() is None
        await asyncio.sleep(2)  # the server stays away for a while
        assert process.poll() is None, "a dropped stream must not end tripwire cameras"
        rtsp.start()
        await until(
            lambda: scrape("tripwire_camera_frames_total") >= frames_at_drop + 20,
            90,
            "frames flow again after the restart",
        )
        assert scrape("tripwire_camera_connected") == 1.0
        assert scrape("tripwire_camera_connects_total") >= 2
        published = scrape("tripwire_motion_frames_total")
    finally:
        process.terminate()
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0, (tmp_path / "cameras.log").read_text()[-2000:]

    # The gateway's publish path: motion frames with the contract's headers, and a wake.
    got: list[FrameMeta] = []
    while batch := await broker.fetch(64, 1.0):
        for message in batch:
            meta = FrameMeta.from_headers(message.headers)
            if meta.camera == camera:
                assert message.body.startswith(b"\xff\xd8\xff")
                got.append(meta)
            await message.ack()
    assert len(got) >= published >= 1  # more may have come between the scrape and the stop
    assert all((m.width, m.height) == (640, 360) and m.event_id for m in got)
    assert any(camera in body for body in wakes), wakes
    listener.cancel()
    await broker.close()


def test_tripwire_motion_does_not_exit_when_the_stream_drops(
    rtsp: RtspServer, module_nats_url: str, tmp_path: Path
) -> None:
    """The reported failure: `tripwire motion` exited 2 ("no frame after 179") on a restart."""
    config = tmp_path / "cameras.yaml"
    config.write_text(f"cameras:\n  - id: cam-motion\n    token_hash: '{HASH}'\n")
    log = tmp_path / "motion.log"
    args = [
        "motion",
        "--config",
        str(config),
        "--broker",
        module_nats_url,
        "--camera",
        "cam-motion",
    ]
    args += ["--source", rtsp.url, "--max-frames", "60"]
    process = _tripwire(args, tmp_path / "home", log, subprocess.PIPE)
    _until(lambda: "connected rtsp" in log.read_text(), 60, "connected")
    time.sleep(1.5)  # some frames, not all 60 (10 frames/s)
    rtsp.stop()
    _until(lambda: "retrying rtsp" in log.read_text(), 30, "the drop is seen")
    time.sleep(1.5)
    assert process.poll() is None, log.read_text()[-2000:]
    rtsp.start()
    out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert "cam-motion: 60 frames read" in out
