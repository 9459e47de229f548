"""Cost of fan-out on the broker: publish and consume rates with 1, 2 and 4 models.

``python -m loadtest.fanout_bench [--broker nats|rabbitmq|both] [--frames N] [--size BYTES]``

For each model count, on fresh stream/queue names: publish ``--frames`` motion frames of
``--size`` bytes through the adapter (``--window`` publishes in flight, each confirmed, as
the gateway's publisher does), then let every model's consumer drain its copy concurrently
(fetch 32, ack each). Printed per broker and model count: publish frames/s and MB/s, consume
deliveries/s summed over the models, and the time until every model had every frame.
NATS runs on its own embedded server (file storage, in a temp dir); RabbitMQ is the one at
``--rabbitmq`` (default: the machine's, guest/guest).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from tripwire.brokers import Broker, MotionRoute, open_broker
from tripwire.contract import FrameMeta
from tripwire.embedded_nats import EmbeddedNats
from tripwire.settings import BrokerSettings

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _settings(broker: str, tag: str) -> BrokerSettings:
    if broker == "nats":
        return BrokerSettings.model_validate(
            {"nats": {"stream": f"FAN_{tag}", "subjects": [f"fan{tag}.motion.>"],
                      "results_stream": f"FANR_{tag}", "results_subjects": [f"fan{tag}.res.>"],
                      "dead_stream": f"FAND_{tag}", "dead_prefix": f"fan{tag}.dead",
                      "stream_max_bytes": 1024**3, "results_max_bytes": 16 * 1024**2,
                      "dead_max_bytes": 16 * 1024**2, "max_ack_pending": 100_000}}
        )  # fmt: skip
    return BrokerSettings.model_validate(
        {"rabbitmq": {"exchange": f"fan.{tag}", "queue": f"fan.{tag}.motion",
                      "dead_letter_exchange": f"fan.{tag}.dlx",
                      "dead_letter_queue": f"fan.{tag}.dead", "prefetch": 64,
                      "max_length": 100_000}}
    )  # fmt: skip


async def _delete_rabbit_names(url: str, tag: str) -> None:
    """The bench's queues and exchanges, through the management API (AMQP credentials)."""
    parts = urlsplit(url)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    base = f"http://{parts.hostname}:15672/api"
    async with httpx.AsyncClient(auth=auth, timeout=10) as client:
        for queue in (await client.get(f"{base}/queues/%2F")).json():
            if queue["name"].startswith(f"fan.{tag}"):
                await client.delete(f"{base}/queues/%2F/{quote(queue['name'], safe='')}")
        for exchange in (f"fan.{tag}", f"fan.{tag}.dlx"):
            await client.delete(f"{base}/exchanges/%2F/{quote(exchange, safe='')}")


def _subject(broker: str, tag: str) -> str:
    return f"fan{tag}.motion.cam-1" if broker == "nats" else "tripwire.motion.cam-1"


async def _publish(broker: Broker, subject: str, frames: int, size: int, window: int) -> float:
    body = os.urandom(size)
    sem = asyncio.Semaphore(window)

    async def one(seq: int) -> None:
        meta = FrameMeta("cam-1", seq, 1_700_000_000_000_000_000 + seq, 0, 640, 480,
                         "image/jpeg", 0.5)  # fmt: skip
        async with sem:
            await broker.publish(subject, body, meta.to_headers())

    started = time.perf_counter()
    await asyncio.gather(*(one(seq) for seq in range(1, frames + 1)))
    return time.perf_counter() - started


async def _drain(broker: Broker, frames: int) -> int:
    got = 0
    idle = 0
    while got < frames and idle < 20:
        batch = await broker.fetch(32, 0.5)
        idle = 0 if batch else idle + 1
        for message in batch:
            await message.ack()
        got += len(batch)
    return got


async def bench(broker: str, url: str, models: int, frames: int, size: int, window: int) -> Any:
    tag = uuid.uuid4().hex[:8]
    settings = _settings(broker, tag)
    routes: Sequence[MotionRoute] = (
        [MotionRoute()] if models == 1 else [MotionRoute(f"m{i}") for i in range(models)]
    )
    publisher = open_broker(settings, url, routes=routes)
    await publisher.connect()
    readers = [open_broker(settings, url, routes=routes, model=r.model) for r in routes]
    for reader in readers:
        await reader.connect()
    try:
        publish_s = await _publish(publisher, _subject(broker, tag), frames, size, window)
        started = time.perf_counter()
        got = await asyncio.gather(*(_drain(r, frames) for r in readers))
        consume_s = time.perf_counter() - started
    finally:
        for each in [publisher, *readers]:
            await each.close()
        if broker == "rabbitmq":
            await _delete_rabbit_names(url, tag)
    return {
        "broker": broker,
        "models": models,
        "frames": frames,
        "bytes": size,
        "publish_fps": round(frames / publish_s),
        "publish_MBps": round(frames * size / publish_s / 1e6, 1),
        "consume_deliveries_per_s": round(sum(got) / consume_s),
        "every_model_had_every_frame": all(g == frames for g in got),
        "drain_s": round(consume_s, 2),
    }


async def main_async(args: argparse.Namespace) -> list[Any]:
    out = []
    brokers = ["nats", "rabbitmq"] if args.broker == "both" else [args.broker]
    with contextlib.ExitStack() as stack:
        for broker in brokers:
            url = args.rabbitmq
            if broker == "nats":
                server = EmbeddedNats.start(
                    Path(stack.enter_context(tempfile.TemporaryDirectory()))
                )
                stack.callback(server.stop)
                url = server.url
            for models in args.models:
                row = await bench(broker, url, models, args.frames, args.size, args.window)
                print(json.dumps(row), flush=True)
                out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["nats", "rabbitmq", "both"], default="both")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=60_000, help="frame bytes (a 720p JPEG)")
    parser.add_argument("--window", type=int, default=32, help="publishes in flight")
    parser.add_argument("--models", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rabbitmq", default=RABBITMQ)
    rows = asyncio.run(main_async(parser.parse_args()))
    print("broker   models  publish fps  publish MB/s  consume deliveries/s  drain s  complete")
    for r in rows:
        print(f"{r['broker']:<8} {r['models']:>6} {r['publish_fps']:>12} {r['publish_MBps']:>13} "
              f"{r['consume_deliveries_per_s']:>21} {r['drain_s']:>8}  "
              f"{r['every_model_had_every_frame']}")  # fmt: skip


if __name__ == "__main__":
    main()
