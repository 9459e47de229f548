"""``tripwire cameras`` and ``tripwire motion``: pull cameras, run motion, publish and wake.

``tripwire cameras`` pulls every camera of the config file that declares a ``source:`` (on a
cluster, those whose source names this node, ``TRIPWIRE_NODE``), each at its configured rate,
through the same publish and wake path as the HTTP gateway
(:class:`~functions.motion.publisher.MotionPublisher`). A camera that drops is reconnected with
backoff; a camera whose loop fails unexpectedly is restarted with backoff; the process exits
only on SIGTERM/SIGINT. Each camera's state (connected, retrying, last frame, reconnects) is
served as Prometheus metrics on ``TRIPWIRE_METRICS_PORT`` and logged when it changes.

Reading and analysing block (VideoCapture, OpenCV), so each camera's frames are read and
analysed in a worker thread one at a time; publishing awaits each broker confirm on the event
loop, like the gateway. A frame the broker refuses is dropped and counted (a pulled camera
cannot be asked to send it again, unlike a pushing camera that gets 503).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from functions.motion.publisher import MotionPublisher, frame_meta
from functions.motion.pull import Backoff, PullState, iter_pull
from tripwire.broker_endpoint import connected_broker
from tripwire.brokers import Broker
from tripwire.camera_config import CameraConfig, SourceConfig, load_config
from tripwire.errors import BrokerError, ConfigError, TripwireError
from tripwire.settings import MotionSettings
from tripwire.urls import redact

log = logging.getLogger(__name__)

RESTART = Backoff(initial_s=1.0, max_s=60.0)  # a camera loop that failed unexpectedly


@dataclass
class Pull:
    """One pulled camera: its config, source, live state and counts."""

    camera: CameraConfig
    source: SourceConfig
    state: PullState
    published: int = 0
    publish_failures: int = 0
    wake_failures: int = 0


# As the gateway's default (TRIPWIRE_STATUS_INTERVAL_S): camera status every 5 s.
STATUS_INTERVAL_S = 5.0


async def pull_camera(
    pull: Pull, broker: Broker, stop: threading.Event, max_frames: int | None = None
) -> None:
    """Pull one camera until its file ends, ``max_frames`` or ``stop``; reconnect on drops."""
    publisher = MotionPublisher(broker, lambda: _count_wake_failure(pull))
    camera, source = pull.camera, pull.source
    frames = iter_pull(
        source.url,
        camera,
        kind=source.kind,
        fps=source.fps,
        max_frames=max_frames,
        realtime=True,
        backoff=Backoff(),
        state=pull.state,
        stop=stop,
    )
    next_status = time.monotonic() + STATUS_INTERVAL_S
    try:
        while (pulled := await asyncio.to_thread(next, frames, None)) is not None:
            publisher.observe(camera.id, pulled.result, pulled.capture_ns)
            if time.monotonic() >= next_status:  # each camera's status for the events function
                next_status = time.monotonic() + STATUS_INTERVAL_S
                await publisher.report_status()
            if pulled.jpeg is None:
                continue
            meta = frame_meta(
                camera.id,
                pulled.seq,
                pulled.capture_ns,
                time.time_ns(),
                pulled.result,
                pulled.content_type,
            )
            try:
                await publisher.publish(meta, pulled.jpeg, pulled.result.event_opened)
            except BrokerError as exc:
                pull.publish_failures += 1
                if pull.publish_failures % 100 == 1:  # first of a run, then every 100th
                    log.warning(
                        "camera %s: motion frame %d not published (%s); %d dropped so far",
                        camera.id,
                        pulled.seq,
                        exc,
                        pull.publish_failures,
                    )
                continue
            pull.published += 1
    finally:
        await publisher.drain()


def _count_wake_failure(pull: Pull) -> None:
    pull.wake_failures += 1


async def supervise(pull: Pull, broker: Broker, stop: threading.Event) -> None:
    """Run :func:`pull_camera`, restarting it with backoff if it fails; a file just ends."""
    failures = 0
    while not stop.is_set():
        try:
            await pull_camera(pull, broker, stop)
            return
        # OpenCV and the OS raise their own errors from deep in a read: one camera's
        # failure must not end the others' pulls or the process.
        except (TripwireError, cv2.error, OSError) as exc:
            failures += 1
            delay = RESTART.delay(failures)
            log.error("camera %s: %s; restarting in %.0fs", pull.camera.id, exc, delay)
            pull.state.set("retrying", str(exc), delay)
            await asyncio.to_thread(stop.wait, delay)


class PullCollector(Collector):
    """Prometheus view of every pulled camera, read from its state at scrape time."""

    def __init__(self, pulls: Iterable[Pull]) -> None:
        self._pulls = list(pulls)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily(
            "tripwire_camera_connected", "1 while the source is connected", labels=["camera"]
        )
        retrying = GaugeMetricFamily(
            "tripwire_camera_retrying", "1 while waiting to reconnect the source", labels=["camera"]
        )
        last = GaugeMetricFamily(
            "tripwire_camera_last_frame_timestamp_seconds",
            "Wall clock of the last frame read",
            labels=["camera"],
        )
        frames = CounterMetricFamily(
            "tripwire_camera_frames", "Frames read from the source", labels=["camera"]
        )
        connects = CounterMetricFamily(
            "tripwire_camera_connects", "Connections made, the first included", labels=["camera"]
        )
        drops = CounterMetricFamily(
            "tripwire_camera_drops", "Connections lost or failed", labels=["camera"]
        )
        published = CounterMetricFamily(
            "tripwire_motion_frames", "Frames published as motion", labels=["camera"]
        )
        failed = CounterMetricFamily(
            "tripwire_publish_failures", "Motion frames the broker refused", labels=["camera"]
        )
        for pull in self._pulls:
            s, cam = pull.state, [pull.camera.id]
            up.add_metric(cam, float(s.status == "connected"))
            retrying.add_metric(cam, float(s.status == "retrying"))
            last.add_metric(cam, (s.last_frame_ns or 0) / 1e9)
            frames.add_metric(cam, s.frames)
            connects.add_metric(cam, s.connects)
            drops.add_metric(cam, s.drops)
            published.add_metric(cam, pull.published)
            failed.add_metric(cam, pull.publish_failures)
        yield from (up, retrying, last, frames, connects, drops, published, failed)


def pulls_for(settings: MotionSettings) -> list[Pull]:
    """The cameras this process pulls: those with a source (on this node, when it is set)."""
    out = []
    for camera in load_config(settings.config_path()).cameras:
        source = camera.source
        if source is None:
            continue
        if settings.node is not None and source.node != settings.node:
            if source.node is None:
                log.warning("camera %s: its source names no node; not pulled here", camera.id)
            continue
        out.append(Pull(camera, source, PullState(camera.id, redact(source.url))))
    return out


async def run_cameras(settings: MotionSettings) -> int:
    """``tripwire cameras``: pull every declared camera until SIGTERM/SIGINT."""
    pulls = pulls_for(settings)
    if not pulls:
        log.warning("no camera declares a source here (source: in the config file); idle")
    registry = CollectorRegistry()
    registry.register(PullCollector(pulls))
    try:
        server, _ = start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        raise ConfigError(f"metrics port {where}: {exc.strerror}") from None
    log.info(
        "tripwire cameras: %d camera(s), metrics on http://%s:%d/metrics",
        len(pulls),
        settings.metrics_host,
        server.server_port,
    )
    print(f"tripwire cameras: metrics on port {server.server_port}", flush=True)
    stop = threading.Event()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        async with connected_broker(settings) as broker:
            tasks = [asyncio.create_task(supervise(p, broker, stop)) for p in pulls]
            await stopped.wait()
            stop.set()  # readers see it between frames (a read gives up within its timeout)
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        server.shutdown()
    for pull in pulls:
        log.info(
            "camera %s: %d frames read, %d published, %d drops",
            pull.camera.id,
            pull.state.frames,
            pull.published,
            pull.state.drops,
        )
    return 0


async def run_pull_mode(settings: MotionSettings, *, max_frames: int | None = None) -> int:
    """``tripwire motion --source S --camera ID``: one camera; a live source is reconnected."""
    if not settings.camera or not settings.source:
        raise ConfigError("pull mode needs --camera and --source")
    camera = load_config(settings.config_path()).camera(settings.camera)
    if camera is None:
        raise ConfigError(f"camera {settings.camera!r} is not in the config file")
    declared = camera.source
    source = SourceConfig(
        url=settings.source,
        kind=declared.kind if declared and declared.url == settings.source else "auto",
        fps=declared.fps if declared else None,
    )
    pull = Pull(camera, source, PullState(camera.id, redact(source.url)))
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with connected_broker(settings) as broker:
        await pull_camera(pull, broker, stop, max_frames)
    read, published = pull.state.frames, pull.published
    log.info("camera %s: %d frames read, %d motion frames published", camera.id, read, published)
    print(f"camera {camera.id}: {read} frames read, {published} motion frames published")
    return 0
