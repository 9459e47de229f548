"""Live updates for the pages: the broker's events feed in, server-sent events out.

The console subscribes (a core NATS subscription; on RabbitMQ a temporary exclusive queue)
to the subjects the events function consumes, ``tripwire.events.*`` (open, close, camera
status) and ``tripwire.detections.*`` (results), and to ``tripwire.alerts.*``, which the
events function publishes once an alert is committed. A message only says *which* event or
camera changed; what is sent to the browser is read from the events database, so the page
shows what the store holds (the same rows a reload would show). The broker message usually
arrives before the events function has written it, so an event not yet in the store (or not
yet showing the change) is read again every 0.4 s for ~8 s, and sent whenever it changed.

While connected it also reads the detector queue's depth every few seconds and keeps the last
two hours in memory (``depths``): the scaling page draws it. With several models there is no
one queue to read (:func:`open_live_broker`): the page draws each model's backlog from the
scaler's timeline instead.

Each browser holds one bounded queue; a browser too slow to read loses its oldest updates,
never the console's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tripwire.brokers import Broker, open_broker
from tripwire.brokers.routes import routes_of
from tripwire.camera_config import CamerasFile
from tripwire.contract import ALERTS_PREFIX, DETECTIONS_PREFIX, EVENTS_PREFIX
from tripwire.errors import BrokerError
from tripwire.eventstore import Store
from tripwire.eventstore.queries import camera_states, get_event, list_alerts
from tripwire.settings import BrokerSettings

log = logging.getLogger(__name__)

SUBJECTS = (f"{EVENTS_PREFIX}.*", f"{DETECTIONS_PREFIX}.*", f"{ALERTS_PREFIX}.*")
FLUSH_S = 0.4
TRIES = 20  # flushes an event is looked for (x FLUSH_S)
QUEUE = 200
DEPTH_EVERY_S = 5.0
END = "end"  # not sent to browsers: the stream closes

Update = tuple[str, dict[str, Any]]


def open_live_broker(settings: BrokerSettings, url: str, config: CamerasFile) -> Broker:
    """The console's broker adapter. With a ``models:`` section it is given every model's
    route, as the gateway is: it declares the models' consumers or queues, never the default
    one, which would hold a copy of every frame for no reader (NATS: up to the stream's
    bounds; RabbitMQ: up to its limit, then its reject-publish refuses frames for all). Its
    depth is then one model's (one model) or unavailable (several: no single queue)."""
    return open_broker(settings, url, routes=routes_of(config) if config.models else None)


@dataclass
class _Pending:
    tries: int = 0
    seen: str | None = None  # the fingerprint of the row last sent


@dataclass
class LiveFeed:
    store: Store
    broker: Broker | None = None
    render_event: Callable[[dict[str, Any]], str] | None = None
    connected: bool = False
    _clients: set[asyncio.Queue[Update]] = field(default_factory=set)
    _events: dict[str, _Pending] = field(default_factory=dict)
    _sent: dict[str, str] = field(default_factory=dict)
    _cameras: set[str] = field(default_factory=set)
    _alerts: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    depths: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=1440))
    _loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self._flush_loop()))
        if self.broker is not None:
            self._tasks.append(asyncio.create_task(self._listen()))
            self._tasks.append(asyncio.create_task(self._sample_depth()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.close()

    # -- browsers ---------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Update]:
        queue: asyncio.Queue[Update] = asyncio.Queue(QUEUE)
        self._clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Update]) -> None:
        self._clients.discard(queue)

    def end_streams(self) -> None:
        """Tell every open stream to end (thread-safe: a signal handler calls it)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.send, END, {})

    def send(self, kind: str, data: dict[str, Any]) -> None:
        for queue in list(self._clients):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait((kind, data))

    # -- changes ----------------------------------------------------------------------------

    def touch(self, camera: str | None, event_id: str | None, alert: bool = False) -> None:
        if event_id:
            self._events[event_id] = _Pending()
        if camera:
            self._cameras.add(camera)
        if alert:
            self._alerts = True

    def alerts_changed(self) -> None:
        self._alerts = True

    async def _listen(self) -> None:
        assert self.broker is not None
        broker = self.broker
        delay = 1.0
        while True:
            try:
                await broker.connect()
                streams = [asyncio.create_task(self._subscribe(broker, s)) for s in SUBJECTS]
                self.connected = True
                self.send("status", {"live": True})
                delay = 1.0
                done, pending = await asyncio.wait(streams, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                for task in done:
                    if (exc := task.exception()) is not None:
                        raise exc
            except BrokerError as exc:
                log.warning("live updates: broker unavailable (%s); retrying in %gs", exc, delay)
            self.connected = False
            self.send("status", {"live": False})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def _sample_depth(self) -> None:
        assert self.broker is not None
        while True:
            await asyncio.sleep(DEPTH_EVERY_S)
            if not self.connected:
                continue
            try:
                depth = await asyncio.wait_for(self.broker.depth(), DEPTH_EVERY_S)
            except (BrokerError, TimeoutError) as exc:
                log.debug("queue depth unavailable: %s", exc)
                continue
            self.depths.append((time.time_ns(), float(depth)))

    async def _subscribe(self, broker: Broker, subject: str) -> None:
        async for message in broker.subscribe(subject):
            camera = message.subject.rsplit(".", 1)[-1]
            try:
                body = json.loads(message.body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            event_id = body.get("event_id") if isinstance(body, dict) else None
            alert = message.subject.startswith(ALERTS_PREFIX + ".")
            self.touch(camera, event_id if isinstance(event_id, str) else None, alert)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if not (self._events or self._cameras or self._alerts) or not self._clients:
                if not self._clients:  # nobody to tell: forget, the pages read on load
                    self._events.clear()
                    self._cameras.clear()
                    self._alerts = False
                continue
            try:
                await self._flush()
            except Exception as exc:  # a database hiccup: keep the feed, try next time
                log.warning("live updates: store read failed (%s)", exc)

    async def _flush(self) -> None:
        ids = list(self._events)
        cameras, self._cameras = sorted(self._cameras), set()
        alerts, self._alerts = self._alerts, False

        def read() -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
            with self.store.read() as conn:
                found = {i: e for i in ids if (e := get_event(conn, i)) is not None}
                states = camera_states(conn, cameras) if cameras else []
                count = list_alerts(conn, acknowledged=False, camera=None, limit=1)[1]
            return found, states, count if alerts or found else None

        found, states, count = await asyncio.to_thread(read)
        for event_id in ids:
            pending = self._events.get(event_id)
            if pending is None:
                continue
            event = found.get(event_id)
            mark = json.dumps(event, sort_keys=True) if event is not None else None
            if event is not None and mark != self._sent.get(event_id):
                self._sent[event_id] = mark or ""
                self.send("event", self._event_update(event))
            # Keep looking a while: the write this message stands for may still be coming.
            pending.tries += 1
            if pending.tries >= TRIES:
                del self._events[event_id]
        if len(self._sent) > 5000:
            self._sent.clear()
        for state in states:
            self.send("camera", state)
        if count is not None:
            self.send("alerts", {"unacknowledged": count})

    def _event_update(self, event: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": event["id"],
            "camera": event["camera"],
            "status": event["status"],
            "start_ns": event["start_ns"],
            "labels": sorted(event["labels"]),
            "alerts": len(event["alerts"]),
        }
        if self.render_event is not None:
            out["html"] = self.render_event(event)
        return out


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
