"""A decompression bomb against a gateway it starts: one valid 16384 x 16384 grayscale PNG
(~261 KB on the wire, 256 MiB once decoded) posted by a configured camera; prints the answer,
its time and the gateway's resident memory before and at its peak (sampled every 10 ms).

    python -m loadtest.decompression_bomb
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import psutil

from tripwire.embedded_nats import free_port
from tripwire.starter import write_starter_config


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 16384) -> bytes:
    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + one gray byte per pixel, all black
    idat = b"".join(packer.compress(row * 64) for _ in range(side // 64)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def main() -> None:
    bomb = png_bomb()
    with tempfile.TemporaryDirectory() as home:
        _, tokens = write_starter_config(Path(home), 1, force=True)
        token = next(
            line.split("=", 1)[1] for line in tokens.read_text().splitlines() if "=" in line
        )
        port = free_port()
        env = {**os.environ, "TRIPWIRE_HOME": home, "TRIPWIRE_PORT": str(port)}
        env["TRIPWIRE_LOG_LEVEL"] = "WARNING"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "tripwire.app.cli", "gateway"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            process = psutil.Process(gateway.pid)
            before = peak = process.memory_info().rss
            done = threading.Event()

            def watch() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, process.memory_info().rss)
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch)
            watcher.start()
            started = time.perf_counter()
            answer = httpx.post(
                f"{url}/v1/cameras/cam-1/frames",
                content=bomb,
                timeout=120,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
            )
            ms = (time.perf_counter() - started) * 1000
            time.sleep(0.5)
            done.set()
            watcher.join()
        finally:
            gateway.terminate()
            gateway.wait(30)
    mib = 2**20
    print(
        f"PNG of {len(bomb)} bytes (16384x16384): HTTP {answer.status_code} in {ms:.0f} ms; "
        f"gateway RSS {before / mib:.0f} MiB before, {peak / mib:.0f} MiB at peak"
    )
    print(f"  {answer.text[:160]}")


if __name__ == "__main__":
    main()
