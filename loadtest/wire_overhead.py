"""Measure the message contract's overhead on the wire for a typical 720p motion frame.

A byte-counting TCP proxy sits between the broker adapter and the real broker; after the
connection is set up, N frames are published and every byte the client sends is counted.
Overhead = (bytes sent per message - JPEG bytes) / JPEG bytes: headers and all protocol
framing (NATS HPUB line; AMQP method, content-header and body frames) included.

    python -m loadtest.wire_overhead [--broker nats|rabbitmq|both] [--frames 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from loadtest.clips import sample_720p_jpeg
from tripwire.brokers import open_broker
from tripwire.contract import FrameMeta
from tripwire.embedded_nats import EmbeddedNats
from tripwire.settings import BrokerSettings

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/%2F"


class CountingProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.upstream_bytes = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if count:
                    self.upstream_bytes += len(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False)
            )

    async def stop(self) -> None:
        if self.server:
            self.server.close()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{port}", parts.path, "", ""))


async def measure(url: str, frame: bytes, n: int, settings: BrokerSettings) -> dict[str, float]:
    parts = urlsplit(url)
    proxy = CountingProxy((parts.hostname or "127.0.0.1", parts.port or 0))
    port = await proxy.start()
    broker = open_broker(settings, _via(url, port))
    await broker.connect()
    await asyncio.sleep(0.2)
    now = time.time_ns()
    metas = [
        FrameMeta(
            camera="cam-1",
            seq=812 + i,
            capture_ns=now + i,
            receive_ns=now + i + 4_000_000,
            width=1280,
            height=720,
            content_type="image/jpeg",
            motion_score=0.0132,
            boxes=((412, 288, 530, 551), (900, 10, 960, 80)),
            event_id=f"cam-1-{now}",
        )
        for i in range(n)
    ]
    header_bytes = sum(len(k) + len(v) + 4 for k, v in metas[0].to_headers().items())
    before = proxy.upstream_bytes
    for meta in metas:
        await broker.publish(meta.subject, frame, meta.to_headers())
    sent = (proxy.upstream_bytes - before) / n
    while batch := await broker.fetch(n, 0.5):  # leave the benchmark queue empty
        for message in batch:
            await message.ack()
    await broker.close()
    await proxy.stop()
    return {
        "jpeg_bytes": len(frame),
        "contract_header_bytes": header_bytes,
        "wire_bytes_per_message": round(sent, 1),
        "overhead_bytes": round(sent - len(frame), 1),
        "overhead_pct": round(100 * (sent - len(frame)) / len(frame), 3),
    }


async def run(which: str, n: int) -> dict[str, dict[str, float]]:
    frame = sample_720p_jpeg()
    out: dict[str, dict[str, float]] = {}
    if which in ("nats", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            server = EmbeddedNats.start(Path(tmp))
            try:
                out["nats"] = await measure(server.url, frame, n, BrokerSettings())
            finally:
                server.stop()
    if which in ("rabbitmq", "both"):
        # Fixed names of its own, drained after the run, so the machine's broker stays clean.
        settings = BrokerSettings.model_validate(
            {
                "rabbitmq": {
                    "exchange": "tripwire.bench",
                    "queue": "tripwire.bench.motion",
                    "binding_key": "tripwire.motion.#",
                    "dead_letter_exchange": "tripwire.bench.dlx",
                    "dead_letter_queue": "tripwire.bench.dead",
                }
            }
        )
        out["rabbitmq"] = await measure(RABBITMQ, frame, n, settings)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["nats", "rabbitmq", "both"], default="both")
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(run(args.broker, args.frames))
    print(f"{'broker':<10}{'JPEG B':>10}{'headers B':>11}{'wire B/msg':>12}{'overhead':>10}")
    for name, r in result.items():
        print(
            f"{name:<10}{r['jpeg_bytes']:>10.0f}{r['contract_header_bytes']:>11.0f}"
            f"{r['wire_bytes_per_message']:>12.1f}{r['overhead_pct']:>9.3f}%"
        )
    print(json.dumps({"wire_overhead": result}))


if __name__ == "__main__":
    main()
