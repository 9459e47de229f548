"""Camera sources over HTTP (a snapshot URL, an MJPEG stream), ``source:`` in the config file,
and which cameras a ``tripwire cameras`` process pulls.

The HTTP camera is a real server on a local port (``http.server`` in a thread) serving
synthetic scene frames; it is shut down and started again on the same port mid-test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from functions.motion.cameras import pulls_for
from functions.motion.pull import Backoff, PullState, iter_frames, iter_pull
from functions.motion.sources import resolve_kind
from tripwire.app.scenes import Scene, Walker
from tripwire.camera_config import CameraConfig, parse_config
from tripwire.embedded_nats import free_port
from tripwire.errors import ConfigError
from tripwire.settings import MotionSettings

HASH = "sha256:" + "0" * 64
BOUNDARY = "frame"


def _jpegs() -> list[bytes]:
    scene = Scene(seed=3, walkers=[Walker(x=-120, y=300, w=120, h=260, vx=600, start_s=0.5)])
    out = []
    for i in range(30):
        ok, buf = cv2.imencode(".jpg", scene.bgr(i), [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        out.append(buf.tobytes())
    return out


class HttpCamera:
    """GET /snapshot.jpg: the next frame; GET /mjpeg: every frame as multipart/x-mixed-replace."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.frames = _jpegs()
        self.served = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/snapshot.jpg":
                    body = camera.next_frame()
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.end_headers()
                try:
                    while camera.server is not None:
                        body = camera.next_frame()
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n".encode()
                            + body
                            + b"\r\n"
                        )
                        time.sleep(0.1)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_frame(self) -> bytes:
        self.served += 1
        return self.frames[self.served % len(self.frames)]

    def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.shutdown()
            server.server_close()


@pytest.fixture
def http_camera() -> Iterator[HttpCamera]:
    camera = HttpCamera(free_port())
    camera.start()
    yield camera
    camera.stop()


def _until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        time.sleep(0.05)


def _camera(**motion: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": "cam-http", "token_hash": HASH, "motion": motion})


def test_auto_kind_tells_a_snapshot_url_from_an_mjpeg_stream(http_camera: HttpCamera) -> None:
    base = f"http://127.0.0.1:{http_camera.port}"
    assert resolve_kind(f"{base}/snapshot.jpg", "auto") == "snapshot"
    assert resolve_kind(f"{base}/mjpeg", "auto") == "stream"
    assert resolve_kind("rtsp://127.0.0.1:1/x", "auto") == "stream"


def test_snapshot_source_polls_at_its_rate_and_reconnects(http_camera: HttpCamera) -> None:
    url = f"http://127.0.0.1:{http_camera.port}/snapshot.jpg"
    state = PullState("cam-http", url)
    stop = threading.Event()
    pulled: list[tuple[bool, str, bytes | None]] = []

    def read() -> None:
        for p in iter_pull(
            url,
            _camera(analysis_fps=0, max_publish_fps=100),
            kind="auto",
            fps=10,
            backoff=Backoff(initial_s=0.2, max_s=0.5),
            state=state,
            stop=stop,
        ):
            pulled.append((p.result.publish, p.content_type, p.jpeg))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        started = time.monotonic()
        _until(lambda: len(pulled) >= 20, 30, "20 snapshots")
        # 10 frames/s configured: 20 frames take about 2 s, not the few ms a busy loop would.
        assert time.monotonic() - started > 1.2
        http_camera.stop()
        _until(lambda: state.status == "retrying", 15, "the failed GET is a drop")
        before = len(pulled)
        http_camera.start()
        _until(lambda: len(pulled) >= before + 10, 30, "snapshots after the restart")
        assert state.connects >= 2 and state.status == "connected"
    finally:
        stop.set()
        reader.join(10)
    published = [(ct, body) for publish, ct, body in pulled if publish]
    assert published, "the walker is motion"
    # Snapshot bytes are published as the camera sent them: no decode and re-encode.
    assert all(ct == "image/jpeg" and body in http_camera.frames for ct, body in published)


def test_mjpeg_stream_over_http_reconnects(http_camera: HttpCamera) -> None:
    url = f"http://127.0.0.1:{http_camera.port}/mjpeg"
    state = PullState("cam-http", url)
    stop = threading.Event()
    heights: list[int] = []

    def read() -> None:
        backoff = Backoff(initial_s=0.2, max_s=0.5)
        for _, image in iter_frames(url, state, kind="auto", backoff=backoff, stop=stop):
            assert not isinstance(image, bytes)
            heights.append(image.shape[0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _until(lambda: len(heights) >= 10, 60, "10 frames of the stream")
        http_camera.stop()
        _until(lambda: state.status == "retrying", 30, "the drop is seen")
        before = len(heights)
        http_camera.start()
        _until(lambda: len(heights) >= before + 10, 60, "frames after the restart")
        assert state.connects >= 2 and set(heights) == {720}
    finally:
        stop.set()
        reader.join(15)


def test_source_in_the_config_file() -> None:
    cameras = parse_config(
        {
            "cameras": [
                {"id": "a", "token_hash": HASH, "source": "rtsp://u:p@10.0.0.7/s"},  # shorthand
                {
                    "id": "b",
                    "token_hash": HASH,
                    "source": {"url": "http://cam/snap.jpg", "kind": "snapshot", "fps": 2},
                },
                {"id": "c", "token_hash": HASH},  # pushes: no source
            ]
        }
    )
    a, b, c = cameras.cameras
    assert a.source is not None and a.source.url == "rtsp://u:p@10.0.0.7/s"
    assert a.source.kind == "auto" and a.source.fps is None
    assert b.source is not None and (b.source.kind, b.source.fps) == ("snapshot", 2.0)
    assert c.source is None
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.source\.kind"):
        parse_config(
            {"cameras": [{"id": "a", "token_hash": HASH, "source": {"url": "x", "kind": "y"}}]}
        )
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.source\.rate"):
        parse_config(
            {"cameras": [{"id": "a", "token_hash": HASH, "source": {"url": "x", "rate": 1}}]}
        )


def test_a_node_pulls_only_the_cameras_whose_source_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cameras.yaml"
    config.write_text(
        "cameras:\n"
        f"  - {{id: a, token_hash: '{HASH}', source: {{url: rtsp://x/a, node: edge-1}}}}\n"
        f"  - {{id: b, token_hash: '{HASH}', source: {{url: rtsp://x/b, node: edge-2}}}}\n"
        f"  - {{id: c, token_hash: '{HASH}', source: rtsp://x/c}}\n"
        f"  - {{id: d, token_hash: '{HASH}'}}\n"
    )
    for name in [n for n in os.environ if n.startswith("TRIPWIRE_")]:
        monkeypatch.delenv(name)
    everything = pulls_for(MotionSettings(config=config))
    assert [p.camera.id for p in everything] == ["a", "b", "c"]  # one machine: all of them
    on_edge_1 = pulls_for(MotionSettings(config=config, node="edge-1"))
    assert [p.camera.id for p in on_edge_1] == ["a"]  # never pulled twice on a cluster


async def test_a_failing_camera_loop_is_restarted_not_ended(tmp_path: Path) -> None:
    """A source that fails for good (a declared file that is missing) keeps its camera in
    "retrying" with a restart backoff; the supervisor neither ends nor raises."""
    import asyncio

    from functions.motion.cameras import Pull, supervise
    from tripwire.brokers import open_broker
    from tripwire.camera_config import SourceConfig
    from tripwire.settings import BrokerSettings

    missing = str(tmp_path / "gone.mp4")
    pull = Pull(_camera(), SourceConfig(url=missing), PullState("cam-http", missing))
    broker = open_broker(BrokerSettings(), "nats://127.0.0.1:1")  # never used: no frame
    stop = threading.Event()
    task = asyncio.create_task(supervise(pull, broker, stop))
    await asyncio.sleep(2.5)  # restarts after 1 s, then waits 2 s
    assert not task.done()
    assert pull.state.status == "retrying" and "no such file" in (pull.state.last_error or "")
    stop.set()
    await asyncio.wait_for(task, 10)
