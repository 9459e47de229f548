"""Shared pieces of the detector tests: models loaded once per process, frames with contract
headers, broker names no other test shares, readers of results, alerts and dead letters, and
a detector run as a real ``tripwire detector`` subprocess.

Nothing here replaces the thing under test: brokers, archives and models are the real ones.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import nats
import numpy as np
import pika
import pytest
from pydantic import BaseModel

from functions.detector.model import BatchTimes, Image, Model, ModelOptions, Prediction, Task
from functions.detector.worker import Detector
from tripwire.archive import detections_key, frame_key
from tripwire.brokers.jetstream import JetStreamBroker
from tripwire.brokers.rabbitmq import RabbitBroker
from tripwire.brokers.settings import MiB, NatsSettings, RabbitSettings
from tripwire.contract import (
    FrameMeta,
    alerts_subject,
    detections_subject,
    events_subject,
    motion_subject,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
YAML = "yolo11n.yaml"  # untrained architecture: plumbing only, finds nothing
TFLITE = SHARED_DATA / "coco_yolov8n_int8_tflite" / "yolov8n_int8.tflite"
ACCIDENT = SHARED_DATA / "accident_cls_yolov8n_cctv" / "accident_cls_yolov8n-cls_best.pt"
ACCIDENT_TEST = SHARED_DATA / "accident_cls_yolov8n_cctv" / "test"
FIRE_IMAGES = SHARED_DATA / "fire_smoke_images_roboflow_fire8_test" / "images"
RABBIT_MANAGEMENT = "http://127.0.0.1:15672"

Received = tuple[str, dict[str, str], bytes]  # subject / routing key, headers, body


def need_ultralytics() -> None:
    pytest.importorskip(
        "ultralytics",
        reason="the detector's model stack is not installed (pip install -e '.[detector]')",
    )


# -- models ----------------------------------------------------------------------------------

_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="tripwire-test-yolo-"))
atexit.register(shutil.rmtree, _CONFIG_DIR, True)


@cache
def model(weights: str | Path, task: Task | None = None, imgsz: int | None = None) -> Model:
    """A loaded, warmed-up model, once per test process (loading costs seconds)."""
    need_ultralytics()
    return Model(ModelOptions(weights=str(weights), task=task, imgsz=imgsz), _CONFIG_DIR)


class StandInModel:
    """A small deterministic model that needs no torch, for the worker's own tests (batching,
    archiving, publishing, acks, faults): like the untrained architecture it finds nothing,
    but it loads at once and infers in microseconds. It reads every pixel, so an image that
    did not decode would fail here as it would in ultralytics. The ultralytics path
    (:class:`~functions.detector.model.Model`) keeps its own tests."""

    name = "stand-in"
    version = "test"
    task: Task = "detect"
    untrained = True
    load_s = 0.001
    first_inference_s = 0.001

    def predict(self, images: Sequence[Image]) -> tuple[list[Prediction], BatchTimes]:
        started = time.perf_counter()
        for image in images:
            assert image.ndim == 3 and float(image.mean()) >= 0.0
        inference_ms = max((time.perf_counter() - started) * 1000, 0.001)
        return [Prediction((), None) for _ in images], BatchTimes(0.0, inference_ms, 0.0)


def bus_path() -> Path:
    """ultralytics' own bus.jpg: 4 people and a bus (810x1080)."""
    need_ultralytics()
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


def bus_jpeg() -> bytes:
    return bus_path().read_bytes()


def jpeg_size(data: bytes) -> tuple[int, int]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable image"
    return int(image.shape[1]), int(image.shape[0])


def gray_jpeg(width: int = 640, height: int = 480, level: int = 128) -> bytes:
    """A flat frame: nothing for any model to find."""
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), level, np.uint8))
    assert ok
    return buf.tobytes()


# -- frames and metadata ---------------------------------------------------------------------


def meta_for(
    camera: str, seq: int, data: bytes, *, capture_ns: int, content_type: str = "image/jpeg"
) -> FrameMeta:
    width, height = jpeg_size(data) if data else (640, 480)
    return FrameMeta(
        camera=camera,
        seq=seq,
        capture_ns=capture_ns,
        receive_ns=capture_ns + 1_000_000,
        width=width,
        height=height,
        content_type=content_type,
        motion_score=0.05,
        boxes=((10, 20, 110, 220),),
        event_id=f"{camera}-event",
    )


@dataclass(frozen=True)
class Sent:
    """A published frame: its metadata and bytes, and the keys the detector must write."""

    meta: FrameMeta
    data: bytes

    @property
    def frame_key(self) -> str:
        return frame_key(self.meta.camera, self.meta.capture_ns, self.meta.seq, "image/jpeg")

    @property
    def detections_key(self) -> str:
        return detections_key(self.meta.camera, self.meta.capture_ns, self.meta.seq)


async def publish_frames(
    broker: JetStreamBroker | RabbitBroker,
    camera: str,
    frames: Sequence[bytes],
    *,
    first_seq: int = 0,
) -> list[Sent]:
    """Publish frames in capture order (1 ms apart) as the gateway would: body = the bytes."""
    base = time.time_ns()
    sent = []
    for i, data in enumerate(frames):
        seq = first_seq + i
        meta = meta_for(camera, seq, data, capture_ns=base + i * 1_000_000)
        await broker.publish(motion_subject(camera), data, meta.to_headers())
        sent.append(Sent(meta, data))
    return sent


# -- waiting ---------------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool],
    what: str,
    within: float = 30.0,
    every: float = 0.05,
) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def running(detector: Detector, stop_within: float = 30.0) -> AsyncIterator[Detector]:
    """``detector.run()`` in a task for the block; stopped (and its errors raised) at exit."""
    task = asyncio.create_task(detector.run())
    try:
        yield detector
    finally:
        detector.stop()
        await asyncio.wait_for(task, stop_within)


# -- NATS ------------------------------------------------------------------------------------


def nats_settings(unique: str, cameras: Sequence[str], **overrides: Any) -> NatsSettings:
    """Streams and subjects of this test only: the contract's subjects of its own cameras."""
    fields: dict[str, Any] = {
        "stream": f"DM_{unique}",
        "subjects": [motion_subject(c) for c in cameras],
        "results_stream": f"DR_{unique}",
        "results_subjects": [
            f(c) for c in cameras for f in (detections_subject, alerts_subject, events_subject)
        ],
        "dead_stream": f"DD_{unique}",
        "dead_prefix": f"t{unique}.dead",
        "durable": f"det_{unique}",
        # nats-server reserves each stream's max_bytes up front: the defaults (GiBs) of a
        # few dozen test streams would exhaust the session server's JetStream storage.
        "stream_max_bytes": 256 * MiB,
        "results_max_bytes": 64 * MiB,
        "dead_max_bytes": 64 * MiB,
        "reconnect_wait_s": 0.05,
        "reconnect_max_wait_s": 0.5,
    }
    fields.update(overrides)
    return NatsSettings(**fields)


def nats_broker(url: str, settings: NatsSettings) -> JetStreamBroker:
    return JetStreamBroker(url, settings, connect_timeout_s=10.0, publish_timeout_s=5.0)


async def nats_read(
    url: str, stream: str, subject: str, count: int, within: float = 30.0
) -> list[Received]:
    """Every message stored in ``stream`` on ``subject`` (may be a wildcard), once at least
    ``count`` are there; in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        stored = 0

        async def enough() -> bool:
            nonlocal stored
            info = await js.stream_info(stream, subjects_filter=subject)
            stored = sum((info.state.subjects or {}).values())
            return stored >= count

        await wait_until(enough, f"{count} message(s) on {subject} (stream {stream})", within)
        sub = await js.pull_subscribe(subject, stream=stream)
        got: list[Received] = []
        while len(got) < stored:
            for msg in await sub.fetch(stored - len(got), timeout=5):
                await msg.ack()
                headers = dict(msg.headers or {})
                got.append((msg.subject, headers, msg.data))
        await sub.unsubscribe()
        return got
    finally:
        await nc.close()


async def nats_consumer_counts(url: str, settings: NatsSettings) -> tuple[int, int] | None:
    """(pending, ack-pending) of the detector's durable consumer; None before it exists."""
    nc = await nats.connect(url)
    try:
        try:
            info = await nc.jetstream().consumer_info(settings.stream, settings.durable)
        except nats.js.errors.NotFoundError:
            return None
        return info.num_pending or 0, info.num_ack_pending or 0
    finally:
        await nc.close()


# -- RabbitMQ --------------------------------------------------------------------------------


def rabbit_settings(unique: str, **overrides: Any) -> RabbitSettings:
    fields: dict[str, Any] = {
        "exchange": f"test-{unique}",
        "queue": f"test-{unique}.motion",
        "dead_letter_exchange": f"test-{unique}.dlx",
        "dead_letter_queue": f"test-{unique}.dead",
        "max_length": 1000,
    }
    fields.update(overrides)
    return RabbitSettings(**fields)


def rabbit_broker(url: str, settings: RabbitSettings) -> RabbitBroker:
    return RabbitBroker(url, settings, connect_timeout_s=10.0, publish_timeout_s=5.0)


def rabbit_admin_delete(kind: str, name: str) -> None:
    """DELETE a queue or exchange through the management API (gone already is fine)."""
    request = urllib.request.Request(
        f"{RABBIT_MANAGEMENT}/api/{kind}/%2F/{quote(name, safe='')}",
        method="DELETE",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5).close()


def rabbit_listen(url: str, exchange: str, queue: str, keys: Sequence[str]) -> None:
    """Declare ``queue`` bound to ``exchange`` for ``keys``: what a results consumer does."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        for key in keys:
            channel.queue_bind(queue, exchange, routing_key=key)
    finally:
        connection.close()


def _rabbit_take(url: str, queue: str, count: int, within: float) -> list[Received]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    got: list[Received] = []
    try:
        channel = connection.channel()
        deadline = time.monotonic() + within
        while len(got) < count and time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.sleep(0.05)
                continue
            headers = {k: str(v.decode() if isinstance(v, bytes) else v)
                       for k, v in (properties.headers or {}).items()
                       if isinstance(v, str | bytes | int | float)}  # fmt: skip
            got.append((method.routing_key, headers, body))
    finally:
        connection.close()
    return got


async def rabbit_take(url: str, queue: str, count: int, within: float = 30.0) -> list[Received]:
    """Take (and ack) up to ``count`` messages from ``queue``, waiting at most ``within`` s."""
    return await asyncio.to_thread(_rabbit_take, url, queue, count, within)


def rabbit_ready(url: str, queue: str) -> int:
    """Ready messages of ``queue`` (AMQP passive declare: no statistics lag)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return int(frame.method.message_count)
    finally:
        connection.close()


# -- one interface over both brokers for the tests that run on each ------------------------


class NatsWire:
    """A JetStream broker with streams of its own, and readers of what the detector wrote."""

    kind = "nats"

    def __init__(self, url: str, unique: str, cameras: Sequence[str], **overrides: Any) -> None:
        self.url = url
        self.settings = nats_settings(unique, cameras, **overrides)
        self.broker = nats_broker(url, self.settings)

    async def open(self) -> None:
        await self.broker.connect()

    def events_feed(self) -> JetStreamBroker:
        """An adapter whose fetch reads the events function's feed (not yet connected)."""
        return JetStreamBroker(
            self.url, self.settings, connect_timeout_s=10.0, publish_timeout_s=5.0, feed="events"
        )

    async def events_waiting(self) -> int:
        feed = self.events_feed()
        await feed.connect()
        try:
            return await feed.depth()
        finally:
            await feed.close()

    async def results(self, camera: str, count: int, within: float = 30.0) -> list[Received]:
        return await nats_read(
            self.url, self.settings.results_stream, detections_subject(camera), count, within
        )

    async def alerts(self, camera: str, count: int, within: float = 30.0) -> list[Received]:
        return await nats_read(
            self.url, self.settings.results_stream, alerts_subject(camera), count, within
        )

    async def dead(self, count: int, within: float = 30.0) -> list[Received]:
        subject = f"{self.settings.dead_prefix}.>"
        return await nats_read(self.url, self.settings.dead_stream, subject, count, within)

    async def waiting(self) -> int:
        """Motion messages not yet settled (pending + unacked): the depth."""
        return await self.broker.depth()

    async def drained(self) -> bool:
        return await self.waiting() == 0

    async def close(self) -> None:
        await self.broker.close()
        nc = await nats.connect(self.url)
        try:
            s = self.settings
            for stream in (s.stream, s.results_stream, s.dead_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()


class RabbitWire:
    """A RabbitMQ topology of its own, plus a queue bound for results and alerts."""

    kind = "rabbitmq"

    def __init__(self, url: str, unique: str, **overrides: Any) -> None:
        self.url = url
        self.settings = rabbit_settings(unique, **overrides)
        self.broker = rabbit_broker(url, self.settings)
        self.results_queue = f"test-{unique}.results"
        self._seen: dict[str, list[Received]] = {}

    async def open(self) -> None:
        await self.broker.connect()
        keys = ["tripwire.detections.#", "tripwire.alerts.#"]
        await asyncio.to_thread(
            rabbit_listen, self.url, self.settings.exchange, self.results_queue, keys
        )

    def events_feed(self) -> RabbitBroker:
        """An adapter whose fetch reads the events function's feed (not yet connected)."""
        return RabbitBroker(
            self.url, self.settings, connect_timeout_s=10.0, publish_timeout_s=5.0, feed="events"
        )

    async def events_waiting(self) -> int:
        """Ready messages of the events queue (AMQP: no statistics lag)."""
        return await asyncio.to_thread(rabbit_ready, self.url, self.settings.events_queue_name)

    async def _take(self, subject: str, count: int, within: float) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self._seen.get(subject, [])) < count and time.monotonic() < deadline:
            need = count - len(self._seen.get(subject, []))
            for item in await rabbit_take(self.url, self.results_queue, need, 0.5):
                self._seen.setdefault(item[0], []).append(item)
        for item in await rabbit_take(self.url, self.results_queue, 10_000, 0.2):  # any extra
            self._seen.setdefault(item[0], []).append(item)
        got = self._seen.get(subject, [])
        assert len(got) >= count, f"{len(got)} of {count} messages on {subject} in {within:g}s"
        return list(got)

    async def results(self, camera: str, count: int, within: float = 30.0) -> list[Received]:
        return await self._take(detections_subject(camera), count, within)

    async def alerts(self, camera: str, count: int, within: float = 30.0) -> list[Received]:
        return await self._take(alerts_subject(camera), count, within)

    async def dead(self, count: int, within: float = 30.0) -> list[Received]:
        got = await rabbit_take(self.url, self.settings.dead_letter_queue, count, within)
        got += await rabbit_take(self.url, self.settings.dead_letter_queue, 10_000, 0.2)
        assert len(got) >= count, f"{len(got)} of {count} dead letters in {within:g}s"
        return got

    async def waiting(self) -> int:
        """Ready messages of the motion queue (unacked ones are the consumer's to settle)."""
        return await asyncio.to_thread(rabbit_ready, self.url, self.settings.queue)

    async def close(self) -> None:
        await self.broker.close()
        s = self.settings
        for queue in (s.queue, s.dead_letter_queue, s.events_queue_name, self.results_queue):
            await asyncio.to_thread(rabbit_admin_delete, "queues", queue)
        for exchange in (s.exchange, s.dead_letter_exchange):
            await asyncio.to_thread(rabbit_admin_delete, "exchanges", exchange)


@contextlib.asynccontextmanager
async def open_wire(
    request: pytest.FixtureRequest, unique: str, camera: str
) -> AsyncIterator[NatsWire | RabbitWire]:
    """The wire that a fixture's param names ("nats" or "rabbitmq"), opened; on NATS with the
    streams of ``camera``."""
    made: NatsWire | RabbitWire
    if request.param == "nats":
        made = NatsWire(request.getfixturevalue("nats_url"), unique, [camera])
    else:
        made = RabbitWire(request.getfixturevalue("rabbitmq_url"), unique)
    await made.open()
    yield made
    await made.close()


# -- results ---------------------------------------------------------------------------------


def documents(received: Sequence[Received]) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in received]


def labels(doc: Mapping[str, Any]) -> list[str]:
    return [box["class"] for box in doc["boxes"]]


# -- a detector subprocess -------------------------------------------------------------------


def settings_env(prefix: str, block: BaseModel) -> dict[str, str]:
    """``TRIPWIRE_*`` variables for the explicitly set fields of a settings block."""
    out: dict[str, str] = {}
    for name in block.model_fields_set:
        value = getattr(block, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            out.update(settings_env(f"{key}__", value))
        elif isinstance(value, list | dict):
            out[key] = json.dumps(value)
        elif hasattr(value, "get_secret_value"):
            out[key] = value.get_secret_value()
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


_STOPPED_RE = re.compile(r"detector stopped: (\d+) acked, (\d+) dead-lettered, (\d+) released")
_METRICS_RE = re.compile(r"detector metrics on http://[\d.]+:(\d+)/metrics")


@dataclass
class DetectorProcess:
    """``python -m tripwire.app.cli detector`` with the given environment; output to a log file."""

    home: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    name: str = "detector"
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    def start(self) -> DetectorProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        # Nothing of this test process's own settings: TRIPWIRE_*, and the ultralytics
        # config dirs the in-process models set (the detector picks its own under its home).
        inherited = ("TRIPWIRE_", "YOLO_", "MPLCONFIGDIR")
        env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
        env.update({"TRIPWIRE_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.env})
        cmd = [
            sys.executable,
            "-m",
            "tripwire.app.cli",
            "detector",
            "--metrics-port",
            "0",
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _not_dead(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")

    async def metrics_port(self, within: float = 60.0) -> int:
        port = 0

        def found() -> bool:
            nonlocal port
            self._not_dead()
            match = _METRICS_RE.search(self.log())
            port = int(match.group(1)) if match else 0
            return bool(port)

        await wait_until(found, f"{self.name}'s metrics port in its log", within, every=0.1)
        return port

    async def ready(self, within: float = 90.0) -> int:
        """Wait for /readyz 200 (model loaded and warm, broker and archive up); the port."""
        port = await self.metrics_port(within)

        async def up() -> bool:
            self._not_dead()
            status, _ = await http_get(f"http://127.0.0.1:{port}/readyz")
            return status == 200

        await wait_until(up, f"{self.name} /readyz 200", within, every=0.1)
        return port

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, within: float) -> int:
        """The exit code; fails if the process outlives ``within`` seconds."""
        assert self.process is not None
        proc = self.process
        await wait_until(lambda: proc.poll() is not None, f"{self.name} to exit", within, 0.05)
        return int(proc.returncode)

    def counts(self) -> dict[str, int]:
        """The figures of its closing log line (acked, dead, released, alerts)."""
        match = _STOPPED_RE.search(self.log())
        assert match, f"{self.name} did not log its closing counts:\n{self.log()[-3000:]}"
        acked, dead, released = (int(g) for g in match.groups())
        return {"acked": acked, "dead": dead, "released": released}

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()


async def http_get(url: str, wait_s: float = 5.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answers."""

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=wait_s) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError:
            return 0, ""

    return await asyncio.to_thread(get)


def metric(text: str, name: str, **labels_: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels_.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        base, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == wanted:
            return float(value)
    return 0.0
