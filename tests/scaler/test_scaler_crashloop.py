"""Crashing detector workers and ``tripwire up``'s start-up checks, with real processes.

The pool tests use stand-in workers (Python processes that write a cause and exit at once);
the ``up`` tests run the real command against a real nats-server: a model that cannot load
stops it with the worker's own error, and a busy ``--port`` is never taken for its gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tripwire.app.stack import StackError, StackOptions, _listens_on, running_stack
from tripwire.errors import MODEL_UNAVAILABLE_EXIT
from tripwire.scaler.executor import WorkerFatal, WorkerPool
from tripwire.settings import DetectorSettings, GatewaySettings

REPO = Path(__file__).resolve().parents[2]


def _crasher(code: int, cause: str) -> list[str]:
    script = f"import sys; print('starting'); print({cause!r}, file=sys.stderr); sys.exit({code})"
    return [sys.executable, "-c", script]


async def test_crashing_worker_restarts_with_backoff_and_logs_the_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = WorkerPool(
        _crasher(3, "RuntimeError: broker said no"),
        dict(os.environ),
        5.0,
        tmp_path / "logs",
        crash_backoff_s=0.4,
        crash_backoff_max_s=5.0,
    )
    caplog.set_level(logging.WARNING, logger="tripwire.scaler.executor")
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:  # the scaler's loop: converge every 50 ms
        await pool.converge(1)
        await asyncio.sleep(0.05)
    await pool.stop_all()
    # Without backoff a worker that dies at once is restarted at every step (~80 here);
    # with 0, 0.4, 0.8, 1.6, 3.2 s between starts, at most 6 fit in 4 s.
    assert 3 <= pool.started <= 6, pool.started
    assert pool.crashed >= 2 and pool.crash_streak >= 2
    assert pool.last_crash == "RuntimeError: broker said no"
    warnings = [r.getMessage() for r in caplog.records if "exited with 3" in r.getMessage()]
    assert warnings and "RuntimeError: broker said no" in warnings[0]
    assert "restarting in" in warnings[0]


async def test_a_worker_alive_long_enough_ends_the_crash_streak(tmp_path: Path) -> None:
    now = [0.0]
    pool = WorkerPool(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        dict(os.environ),
        5.0,
        tmp_path / "logs",
        healthy_after_s=10.0,
        clock=lambda: now[0],
    )
    pool.crash_streak = 4
    await pool.converge(1)
    pool.reap()
    assert pool.crash_streak == 4  # just started
    now[0] = 11.0
    pool.reap()
    assert pool.crash_streak == 0
    await pool.stop_all()


async def test_a_worker_whose_model_cannot_load_stops_the_pool(tmp_path: Path) -> None:
    cause = "tripwire detector: weights 'gone.pt' did not load: bad magic"
    pool = WorkerPool(
        _crasher(MODEL_UNAVAILABLE_EXIT, cause), dict(os.environ), 5.0, tmp_path / "logs"
    )
    await pool.converge(1)
    with pytest.raises(WorkerFatal, match="bad magic"):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await pool.converge(1)
            await asyncio.sleep(0.05)
    assert pool.started == 1, "no restart of a worker that cannot load its model"
    await pool.stop_all()


def _up(args: list[str], home: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env |= {"TRIPWIRE_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tripwire.app.cli", "up", "--no-prefork", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_up_without_weights_stops_at_once_with_the_error(
    tmp_path: Path, module_nats_url: str
) -> None:
    process = _up(
        ["--broker", module_nats_url, "--port", "0", "--weights", "nowhere/yolo.pt"], tmp_path
    )
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    assert "tripwire up: weights 'nowhere/yolo.pt' not found" in err


def test_up_stops_when_a_worker_cannot_load_its_model(tmp_path: Path, module_nats_url: str) -> None:
    """The weights exist but are no model: the first worker (started by a wake) exits with
    MODEL_UNAVAILABLE_EXIT, and ``up`` stops with the worker's own error."""
    from tripwire.brokers import open_broker
    from tripwire.contract import WAKE_SUBJECT

    weights = tmp_path / "broken.pt"
    weights.write_bytes(b"this is not a checkpoint")
    process = _up(["--broker", module_nats_url, "--port", "0", "--weights", str(weights)], tmp_path)

    async def wake_until_exit() -> None:
        broker = open_broker(GatewaySettings().broker, module_nats_url)
        await broker.connect()
        try:
            while process.poll() is None:
                await broker.publish(WAKE_SUBJECT, b"{}", {})
                await asyncio.sleep(0.5)
        finally:
            await broker.close()

    waker = threading.Thread(target=asyncio.run, args=(wake_until_exit(),), daemon=True)
    waker.start()
    try:
        _, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    waker.join(10)
    assert process.returncode == 2, err[-3000:]
    assert "tripwire up: detector worker cannot load its model:" in err, err[-3000:]
    assert "broken.pt' did not load" in err


class _Impostor:
    """Another program on the gateway's port that answers 200 to everything."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def impostor() -> Iterator[_Impostor]:
    server = _Impostor()
    yield server
    server.close()


async def test_up_on_a_busy_port_is_refused(
    tmp_path: Path, module_nats_url: str, impostor: _Impostor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("TRIPWIRE_")]:
        monkeypatch.delenv(name)
    broker = {"url": module_nats_url}
    options = StackOptions(
        GatewaySettings(home=tmp_path, port=impostor.port, broker=broker),
        DetectorSettings(home=tmp_path, weights="yolo11n.yaml", broker=broker),
        prefork=False,
    )
    with pytest.raises(StackError, match=rf"port 127.0.0.1:{impostor.port} is in use"):
        async with running_stack(options):
            pytest.fail(f"another program's port {impostor.port} was announced as the gateway")


def test_listens_on_tells_the_owner_of_a_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert _listens_on(os.getpid(), port)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
        try:
            assert not _listens_on(child.pid, port)  # answering is not the same as owning
        finally:
            child.kill()
            child.wait()
