"""The RabbitMQ broker adapter: a durable topic exchange, one motion queue, a dead-letter route.

Threading: none. pika's ``AsyncioConnection`` adapter runs the AMQP protocol on the
caller's event loop (non-blocking sockets; callbacks become futures in ``rabbitmq_link``),
so nothing here blocks the loop, and the management API's depth query is an httpx
request on the same loop. We chose this over a ``BlockingConnection`` in a dedicated thread
because a blocking channel waits for each publisher confirm in turn and cannot give up on
one without wedging its thread: here many publishes are in flight on one channel, each
awaits its own confirm (``rabbitmq_link.Confirms``), a confirm that never comes is a clean
:class:`~tripwire.errors.PublishTimeout`, and there are no locks or cross-thread hand-offs.
A broker belongs to the event loop that called :meth:`RabbitBroker.connect`.

Topology, declared by ``connect`` (and again after every reconnect)::

    tripwire (topic) --tripwire.motion.#--> tripwire.motion (quorum, x-max-length,
                                             x-overflow, x-dead-letter-exchange)
                     --tripwire.detections.#, tripwire.events.#--> tripwire.events (same)
    tripwire.dlx (topic) --#--> tripwire.dead

With several models (:mod:`tripwire.brokers.routes`) each model has its own queue,
``tripwire.motion.<model>``, bound with ``tripwire.motion.#`` (or its cameras' keys), with the
same dead-letter exchange and ``x-max-length`` (the model's ``max_queue``, else
``max_length``): the exchange copies every frame into each. Its
overflow is ``drop-head``: a stalled model's queue keeps its newest ``max_length`` frames
(the oldest are dead-lettered) instead of refusing publishes, which would stop every model.
(Queue arguments cannot change, so a named model's queue is drop-head even while it is the
only one; the default model's queue keeps ``overflow``.)
A queue declared later (a new model) starts with the frames published from then on.

Every connection declares the events queue too, so results and event messages are kept for
the events function even while it is down; its ``feed="events"`` adapter consumes it.

Publishing and consuming use separate connections (the consumer's is opened by the first
``fetch``): a publisher the broker blocks under a memory alarm cannot stall acks that would
drain the queue. Publishes whose routing key matches the motion binding are ``mandatory``,
so a lost binding is an error; detections, alerts and wake-ups go to whoever bound a queue.

Consuming is ``basic_consume`` into a local buffer rather than a ``basic_get`` loop: the
broker pushes up to ``prefetch`` deliveries ahead, so ``fetch`` costs no round trip per
message and no polling; what sits in the buffer is unacked and counts in ``depth``.

``subscribe`` listens on a third connection, through temporary queues (``rabbitmq_listen``).

Reading order: :class:`RabbitBroker` (the Protocol's methods, then publishing, consuming
and plumbing), :class:`RabbitMessage` (a delivery that settles itself through its broker),
:class:`_Management` (depth over HTTP). pika's callbacks turned into awaitables (the
connection, channel RPCs, publisher confirms) are ``rabbitmq_link``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pika
from pika import exceptions as pika_errors

from tripwire.brokers.protocol import Feed, Message
from tripwire.brokers.rabbitmq_link import (
    Confirms,
    Link,
    Lost,
    PendingPublish,
    Ready,
    describe,
    headers_from_amqp,
)
from tripwire.brokers.rabbitmq_listen import Listeners
from tripwire.brokers.routes import DEFAULT_ROUTES, MotionRoute, pick
from tripwire.brokers.settings import RabbitSettings
from tripwire.contract import DETECTIONS_PREFIX, EVENTS_PREFIX, Header, dead_reason
from tripwire.errors import BrokerError, BrokerUnavailable, ConfigError
from tripwire.urls import redact, scrub

log = logging.getLogger(__name__)


# What the events queue is bound with: results and the edge's event messages.
EVENTS_BINDINGS = (f"{DETECTIONS_PREFIX}.#", f"{EVENTS_PREFIX}.#")
MANAGEMENT_PORT = 15672


class RabbitBroker:
    """The Broker Protocol on RabbitMQ (see the module docstring for the design)."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str,
        settings: RabbitSettings,
        *,
        connect_timeout_s: float,
        publish_timeout_s: float,
        feed: Feed = "motion",
        routes: Sequence[MotionRoute] | None = None,
        model: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.username and parts.password is None:
            # pika would raise a TypeError from deep inside its URL parsing.
            raise ConfigError(f"broker url {redact(url)}: a user name needs its password too")
        try:
            params = pika.URLParameters(url)
        except Exception as exc:  # pika raises ValueError, TypeError... for a malformed URL
            raise ConfigError(f"broker url {redact(url)}: {describe(exc, url)}") from None
        self._url = url
        self._settings = settings
        self.feed = feed
        # Routes given: this process knows the models and declares every model's queue.
        # None: the default queue, except for the events feed, which needs none.
        self._routes: tuple[MotionRoute, ...] = tuple(routes) if routes else DEFAULT_ROUTES
        # () : a listener only (declares no motion queue).
        self._declared = (
            tuple(routes) if routes is not None else self._routes if feed == "motion" else ()
        )
        self.route = pick(self._routes, model)
        # The queue fetch and depth read ("" for a publisher of several models' frames).
        if feed == "events":
            self._queue = settings.events_queue_name
        else:
            self._queue = self.route.name(settings.queue, ".") if self.route else ""
        self._connect_timeout_s = connect_timeout_s
        self._management = _Management(
            url,
            settings.management_url,
            (params.credentials.username, params.credentials.password),
            params.virtual_host,
            self._queue,
            settings.management_timeout_s,
        )
        self._confirms = Confirms(
            publish_timeout_s,
            self._context,
            self._why,
            refused=self._refused,
            unroutable=self._unroutable,
        )
        self._publisher = self._link("publisher", self._publisher_ready, self._publisher_lost)
        self._consumer = self._link("consumer", self._consumer_ready, self._consumer_lost)
        self._listeners = Listeners(
            settings.exchange,
            functools.partial(self._link, "listener"),
            connect_timeout_s,
            self._context,
        )
        self._buffer: deque[RabbitMessage] = deque()
        self._arrived = asyncio.Event()
        self._consume_lock = asyncio.Lock()
        self._consuming = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._opened = False
        self._closed = False
        self._warned_ready_only = False

    @property
    def connected(self) -> bool:
        return self._publisher.up and (not self._consuming or self._consumer.up)

    @property
    def max_payload(self) -> int | None:
        """Unknown over AMQP: the server's max_message_size (128 MiB by default) is above
        any frame limit the gateway allows."""
        return None

    async def connect(self) -> None:
        self._check_open(need_connect=False)
        if self._publisher.up or self._publisher.reconnecting:
            return
        await self._publisher.open(self._connect_timeout_s)
        self._opened = True

    async def publish(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        self._check_open()
        properties = self._properties(dict(headers))
        # Mandatory where a tripwire queue must hold it: a lost binding is then an error.
        mandatory = any(
            topic_matches(key, subject)
            for key in [*self._motion_keys(self._declared or self._routes), *EVENTS_BINDINGS]
        )
        await self._publish(self._settings.exchange, subject, body, properties, mandatory)

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:  # noqa: ASYNC109
        self._check_open()
        self._check_queue()
        if max_messages < 1:
            return []
        if not self._consuming:
            async with self._consume_lock:
                if not self._consuming:
                    await self._consumer.open(self._connect_timeout_s)
                    self._consuming = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._buffer and not self._closed:
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()
        batch: list[Message] = []
        while self._buffer and len(batch) < max_messages:
            batch.append(self._buffer.popleft())
        return batch

    async def depth(self) -> int:
        """``messages`` (ready + unacknowledged) of the motion queue, from the management API.

        The same figure KEDA's rabbitmq scaler reads with ``protocol: http``; the broker
        refreshes it every ``collect_statistics_interval`` (5 s by default).
        """
        self._check_queue()
        messages = await self._management.messages()
        if messages is not None:
            return messages
        # A queue the statistics collector has not visited yet (its first seconds) or one
        # whose metrics are disabled: AMQP knows the ready count, not the unacked one.
        if not self._warned_ready_only:
            self._warned_ready_only = True
            log.warning(
                "%s",
                self._context(
                    f"no statistics for {self._queue} yet; "
                    "depth counts ready messages only until they come"
                ),
            )
        channel = self._publisher.channel
        queue = self._queue
        if channel is None:
            raise BrokerUnavailable(self._context(f"{queue} has no statistics yet, no AMQP"))
        try:
            frame = await self._publisher.rpc(channel.queue_declare, queue=queue, passive=True)
        except pika_errors.AMQPError as exc:
            raise BrokerUnavailable(self._context(f"depth of {queue}: {self._why(exc)}")) from None
        return int(frame.method.message_count)

    async def subscribe(self, subject: str) -> AsyncIterator[Message]:
        """A temporary queue bound with ``subject``, consumed on a connection of its own.

        A publish to ``subject`` is not ``mandatory`` (unless the motion binding matches it):
        with no listener bound, the broker confirms it and drops it.
        """
        self._check_open()
        async with contextlib.aclosing(self._listeners.listen(subject)) as messages:
            async for message in messages:
                yield message

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._arrived.set()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._buffer.clear()
        await self._listeners.close()
        await self._consumer.close()  # the broker requeues every unacked delivery
        await self._publisher.close()
        self._confirms.fail_all("closed")
        await self._management.close()

    # -- publishing -------------------------------------------------------------------------

    def _properties(self, headers: dict[str, str]) -> Any:
        return pika.BasicProperties(
            delivery_mode=2,
            headers=headers,
            content_type=headers.get(Header.CONTENT_TYPE),
            message_id=headers.get(Header.ID),
        )

    async def _publisher_ready(self, channel: Any) -> None:
        await self._confirms.start(channel, self._publisher.rpc)
        await self._declare(channel, self._publisher.rpc)

    async def _declare(self, channel: Any, rpc: Callable[..., Awaitable[Any]]) -> None:
        """Exchanges, queues and bindings; idempotent, so each (re)connect runs it."""
        s = self._settings
        for exchange in (s.exchange, s.dead_letter_exchange):
            await rpc(
                channel.exchange_declare, exchange=exchange, exchange_type="topic", durable=True
            )
        dead_args = {"x-queue-type": s.queue_type}
        await rpc(
            channel.queue_declare, queue=s.dead_letter_queue, durable=True, arguments=dead_args
        )
        await rpc(
            channel.queue_bind,
            queue=s.dead_letter_queue,
            exchange=s.dead_letter_exchange,
            routing_key="#",
        )
        arguments: dict[str, Any] = {
            "x-queue-type": s.queue_type,
            "x-dead-letter-exchange": s.dead_letter_exchange,
            "x-max-length": s.max_length,
            "x-overflow": s.overflow,
        }
        if s.delivery_limit is not None:
            arguments["x-delivery-limit"] = s.delivery_limit
        for route in self._declared:
            queue = route.name(s.queue, ".")
            # A named model's queue: a stalled model keeps its newest frames, stops nobody.
            overflow = s.overflow if route.default else "drop-head"
            limit = route.max_queue or s.max_length
            await rpc(channel.queue_declare, queue=queue, durable=True,
                      arguments={**arguments, "x-overflow": overflow,
                                 "x-max-length": limit})  # fmt: skip
            for key in self._motion_keys([route]):
                await rpc(channel.queue_bind, queue=queue, exchange=s.exchange, routing_key=key)
        events = s.events_queue_name
        arguments = {**arguments, "x-max-length": s.events_max_length}
        await rpc(channel.queue_declare, queue=events, durable=True, arguments=arguments)
        for key in EVENTS_BINDINGS:
            await rpc(channel.queue_bind, queue=events, exchange=s.exchange, routing_key=key)

    def _publisher_lost(self, exc: BaseException) -> None:
        why = f"connection lost before the confirm ({self._why(exc)}); it may or may not be stored"
        self._confirms.fail_all(why)

    async def _publish(
        self, exchange: str, key: str, body: bytes, properties: Any, mandatory: bool
    ) -> None:
        channel = self._publisher.channel
        if channel is None or not self._publisher.up:
            raise BrokerUnavailable(self._context(f"not connected; cannot publish to {key}"))
        await self._confirms.publish(channel, exchange, key, body, properties, mandatory)

    def _motion_keys(self, routes: Sequence[MotionRoute]) -> list[str]:
        """The binding keys of ``routes``' queues: the motion binding, or one key per camera
        served (``tripwire.motion.#`` -> ``tripwire.motion.cam-1``)."""
        key = self._settings.binding_key
        keys: list[str] = []
        for route in routes:
            if route.cameras and key.endswith(".#"):
                keys += [key[:-1] + camera for camera in route.cameras]
            else:
                keys.append(key)
        return keys

    def _queue_for(self, pending: PendingPublish) -> tuple[str, int]:
        s = self._settings
        if pending.exchange != s.exchange:
            return s.dead_letter_queue, s.max_length
        for route in self._declared or self._routes:
            if any(topic_matches(k, pending.routing_key) for k in self._motion_keys([route])):
                return route.name(s.queue, "."), route.max_queue or s.max_length
        return s.events_queue_name, s.events_max_length

    def _refused(self, pending: PendingPublish) -> str:
        s = self._settings
        named = any(not r.default for r in self._routes)
        overflow = "drop-head" if named else s.overflow
        if pending.exchange == s.exchange and pending.mandatory and overflow != "drop-head":
            queue, limit = self._queue_for(pending)
            return self._context(
                f"publish to {pending.routing_key} refused: queue {queue} is full "
                f"(x-max-length {limit}, overflow {s.overflow})"
            )
        return self._context(
            f"publish to {pending.routing_key} via {pending.exchange} refused (basic.nack)"
        )

    def _unroutable(self, pending: PendingPublish) -> str:
        queue, _ = self._queue_for(pending)
        return self._context(
            f"{pending.routing_key} was not routed to any queue by exchange {pending.exchange} "
            f"({pending.returned}); is queue {queue} still bound?"
        )

    # -- consuming --------------------------------------------------------------------------

    async def _consumer_ready(self, channel: Any) -> None:
        self._buffer.clear()
        rpc, s = self._consumer.rpc, self._settings
        await self._declare(channel, rpc)  # the queue may have been deleted meanwhile
        await rpc(channel.basic_qos, prefetch_count=s.prefetch)
        # basic.cancel from the broker (queue deleted) leaves the channel open but idle.
        channel.add_on_cancel_callback(lambda _frame: self._consumer.drop("consumer cancelled"))
        await rpc(channel.basic_consume, self._queue, self._on_delivery)

    def _on_delivery(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        headers, count = headers_from_amqp(properties.headers)
        # Classic queues only say whether it was delivered before.
        deliveries = count + 1 if count is not None else 2 if method.redelivered else 1
        self._buffer.append(
            RabbitMessage(
                self, channel, method.delivery_tag, method.routing_key, body, headers, deliveries
            )
        )
        self._arrived.set()

    def _consumer_lost(self, _exc: BaseException) -> None:
        self._buffer.clear()  # the broker delivers these again on the next channel

    def _settle(self, message: RabbitMessage, *, requeue: bool | None) -> None:
        """basic.ack (``requeue`` None) or basic.nack on the channel it arrived on."""
        channel = message.channel
        if channel is not self._consumer.channel:
            if requeue:
                return  # its channel is gone, so the broker requeued it already
            raise BrokerUnavailable(self._stale(message, "ack"))
        try:
            if requeue is None:
                channel.basic_ack(message.tag)
            else:
                channel.basic_nack(message.tag, requeue=True)
        except pika_errors.AMQPError as exc:
            raise BrokerUnavailable(self._stale(message, self._why(exc))) from None

    def _settle_later(self, message: RabbitMessage, delay: float) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            try:
                self._settle(message, requeue=True)
            except BrokerError as exc:
                log.warning("delayed nak: %s", exc)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    async def _dead_letter(self, message: RabbitMessage, reason: str) -> None:
        """Publish ``message`` to the dead-letter exchange and await the confirm."""
        if message.channel is not self._consumer.channel:
            raise BrokerUnavailable(self._stale(message, "term"))
        headers = dict(message.headers)
        headers[Header.DEAD_REASON] = dead_reason(reason)
        headers[Header.DEAD_SUBJECT] = message.subject
        dlx = self._settings.dead_letter_exchange
        await self._publish(dlx, message.subject, message.body, self._properties(headers), True)

    def _stale(self, message: RabbitMessage, what: str) -> str:
        return self._context(
            f"{what} of {message.subject} (delivery {message.tag}) failed: the channel it "
            "arrived on is closed, so the broker delivers it again"
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _link(self, role: str, on_ready: Ready, on_lost: Lost) -> Link:
        attempt_s = min(self._connect_timeout_s, 10.0)
        params = pika.URLParameters(self._url)
        params.heartbeat = self._settings.heartbeat_s
        params.connection_attempts = 1
        params.socket_timeout = attempt_s
        params.stack_timeout = attempt_s
        params.client_properties = {
            "connection_name": f"tripwire {role} {self._queue} pid {os.getpid()}"
        }
        return Link(
            self._url,
            params,
            role,
            on_ready=on_ready,
            on_lost=on_lost,
            attempt_timeout_s=attempt_s,
            max_backoff_s=self._settings.max_backoff_s,
        )

    def _check_queue(self) -> None:
        if not self._queue:
            raise BrokerError(
                self._context(
                    f"{len(self._routes)} models read the motion frames; name the model whose "
                    "queue to read (open_broker(..., model=NAME))"
                )
            )

    def _check_open(self, *, need_connect: bool = True) -> None:
        if self._closed:
            raise BrokerUnavailable(self._context("closed"))
        if need_connect and not self._opened:
            raise BrokerError(self._context("call connect() first"))

    def _context(self, text: str) -> str:
        return f"rabbitmq at {redact(self._url)}: {text}"

    def _why(self, exc: BaseException) -> str:
        return describe(exc, self._url)


# -- a delivery ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class RabbitMessage:
    """One delivery; settle it once with ``ack``, ``nak`` or ``term`` (later calls do nothing)."""

    _broker: RabbitBroker
    channel: Any  # the channel it arrived on: only there can it be acked
    tag: int
    subject: str
    body: bytes
    headers: Mapping[str, str]
    deliveries: int
    _settled: bool = False

    def __repr__(self) -> str:
        return f"<RabbitMessage {self.subject} tag={self.tag} deliveries={self.deliveries}>"

    async def ack(self) -> None:
        """Done: basic.ack on the channel it arrived on."""
        if not self._settled:
            self._settled = True
            self._broker._settle(self, requeue=None)

    async def nak(self, delay: float | None = None) -> None:
        """Requeue it now, or after ``delay`` s (it stays unacked, in flight, until then)."""
        if self._settled:
            return
        self._settled = True
        if delay is not None and delay > 0:
            self._broker._settle_later(self, delay)
        else:
            self._broker._settle(self, requeue=True)

    async def term(self, reason: str) -> None:
        """Publish a copy to the dead-letter exchange, await its confirm, then ack."""
        if not self._settled:
            await self._broker._dead_letter(self, reason)
            self._settled = True
            self._broker._settle(self, requeue=None)

    async def in_progress(self) -> None:
        """Nothing to extend: RabbitMQ has no per-message ack deadline.

        The broker's ``consumer_timeout`` (30 min by default) closes a channel that holds a
        delivery unacked for longer; the message is then redelivered.
        """


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one dot-separated word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


# -- depth -------------------------------------------------------------------------------------


class _Management:
    """GET /api/queues/<vhost>/<queue> with Basic auth: what KEDA's ``protocol: http`` reads."""

    def __init__(
        self,
        amqp_url: str,
        override: str | None,
        credentials: tuple[str, str],
        vhost: str,
        queue: str,
        timeout_s: float,
    ) -> None:
        user, password = credentials
        parts = urlsplit(override or amqp_url)
        host = parts.hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        if override:
            if parts.username:
                user, password = unquote(parts.username), unquote(parts.password or "")
            netloc = f"{host}:{parts.port}" if parts.port else host
            base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        else:  # same host as AMQP, default management port, same credentials
            base = f"http://{host}:{MANAGEMENT_PORT}"
        self._url = f"{base}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"
        self._where = f"rabbitmq management API at {base}: queue {queue} in vhost {vhost!r}"
        self._secrets = (amqp_url, override or "", password)
        self._client = httpx.AsyncClient(auth=(user, password), timeout=timeout_s)

    async def messages(self) -> int | None:
        """Ready + unacknowledged; None while the queue has no statistics yet (first ~5 s).

        Raises BrokerUnavailable when the API cannot be reached: the caller must not fall
        back to a ready-only count that hides in-flight work from the scaler.
        """
        try:
            response = await self._client.get(self._url)
        except httpx.HTTPError as exc:  # refused, timed out, reset
            text = scrub(str(exc) or type(exc).__name__, *self._secrets)
            raise BrokerUnavailable(f"{self._where}: {text}; depth unknown") from None
        if response.status_code == 404:
            raise BrokerError(f"{self._where}: not found")
        if response.status_code in (401, 403):
            raise BrokerError(f"{self._where}: HTTP {response.status_code}, credentials refused")
        if not response.is_success:
            raise BrokerUnavailable(f"{self._where}: HTTP {response.status_code}; depth unknown")
        try:
            info = response.json()
        except ValueError:
            raise BrokerUnavailable(
                f"{self._where}: the reply is not JSON; depth unknown"
            ) from None
        if not isinstance(info, dict):
            raise BrokerError(f"{self._where}: unexpected reply {type(info).__name__}")
        messages = info.get("messages")
        return messages if isinstance(messages, int) else None

    async def close(self) -> None:
        await self._client.aclose()
