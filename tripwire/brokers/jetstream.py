"""NATS JetStream adapter: motion frames in an interest stream, one durable consumer per model.

Three streams are declared on connect: motion (interest retention: a frame lives until every
model that serves its camera has acked it), results (detections, alerts, event open/close,
wake; limits retention) and dead letters. Each model reads the motion stream through its own
durable pull consumer (:mod:`tripwire.brokers.routes`; ``detector`` for the default model),
so every model sees every frame once; with one model this is exactly a work queue. A
consumer's lag (waiting + unacked) is what the KEDA NATS JetStream scaler reads.

What bounds the motion stream: ``stream_max_bytes``, ``stream_max_age_s`` and
``stream_max_msgs``. With the one default model (no models section) the stream discards new
frames when full (the gateway answers 503: back-pressure, nothing queued is lost); with named
models it discards the oldest, so that one stalled model cannot stop the others: its backlog
is held up to those bounds and beyond them it loses its oldest frames (the others acked them
long ago). A model's own ``max_queue`` (a RabbitMQ queue bound) is refused here: the
stream's bounds are the only ones.

The ``events`` feed is a durable consumer on the results stream, filtered to detections and
event messages: the events function reads it. ``subscribe`` is a plain core NATS subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client, Server
from nats.js import JetStreamContext, api

from tripwire import contract
from tripwire.brokers.jetstream_message import JetStreamMessage, visible
from tripwire.brokers.protocol import Feed, Message, TransientMessage
from tripwire.brokers.routes import DEFAULT_ROUTES, MotionRoute, pick
from tripwire.brokers.settings import NatsSettings
from tripwire.contract import Header
from tripwire.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    PayloadTooLarge,
    PublishTimeout,
)
from tripwire.model_config import max_queue_on_nats
from tripwire.retry import retry
from tripwire.urls import redact, scrub

log = logging.getLogger(__name__)

# JetStream's dedup header; the contract's Tripwire-Id is copied into it.
NATS_MSG_ID = "Nats-Msg-Id"

# JetStream API error codes this adapter tells apart.
_ERR_STREAM_NAME_IN_USE = 10058  # exists with a different config: update it instead
_ERR_MSG_TOO_BIG = 10054  # message size exceeds the stream's max_msg_size

_UNAVAILABLE = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,  # also "maximum bytes exceeded": retry later
    TimeoutError,
    OSError,
)


# What nats-py raises; anything else is a bug of ours and propagates as itself.
_NATS_ERRORS = (nats.errors.Error, OSError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, nats.js.errors.APIError) and exc.description:
        return f"{exc.description} (code {exc.code}, err_code {exc.err_code})"
    return str(exc) or type(exc).__name__


class JetStreamBroker:
    """Broker on NATS JetStream (see :class:`tripwire.brokers.protocol.Broker`)."""

    name = "nats"

    def __init__(
        self,
        url: str,
        settings: NatsSettings,
        *,
        connect_timeout_s: float,
        publish_timeout_s: float,
        feed: Feed = "motion",
        routes: Sequence[MotionRoute] | None = None,
        model: str | None = None,
    ) -> None:
        self.settings = settings
        self.feed = feed
        # Routes given: this process knows the models (it loaded the config) and declares
        # every model's consumer and the motion stream's discard policy. Not given: the
        # default route only, declared when the stream has no consumer yet.
        self._routes_given = bool(routes)
        self._declares_none = routes is not None and not routes  # () : a listener only
        self._routes = tuple(routes) if routes else DEFAULT_ROUTES
        if bounded := [r.model for r in self._routes if r.max_queue is not None]:
            raise ConfigError(max_queue_on_nats(bounded))
        self.route = pick(self._routes, model)
        # What fetch and depth read: the motion stream's detector consumer, or the events
        # function's consumer of detections and event messages on the results stream.
        if feed == "events":
            self._stream, self._durable = settings.results_stream, settings.events_durable
            self._filters: list[str] | None = [
                f"{contract.DETECTIONS_PREFIX}.>",
                f"{contract.EVENTS_PREFIX}.>",
            ]
        elif self.route is None:  # publishes only: several models, none named
            self._stream, self._durable, self._filters = settings.stream, "", None
        else:
            self._stream, self._filters = settings.stream, self._camera_filters(self.route)
            self._durable = self.route.name(settings.durable, "-")
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._consumer_lock = asyncio.Lock()
        self._redeclaring: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"JetStreamBroker({redact(self._url)!r}, stream={self.settings.stream!r})"

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def wrap(self, exc: BaseException, what: str) -> BrokerError:
        """A tripwire error for a nats exception, with context and without credentials."""
        text = scrub(f"nats {redact(self._url)}: {what}: {_describe(exc)}", self._url)
        if isinstance(exc, nats.errors.MaxPayloadError):
            return PayloadTooLarge(f"{text}: message larger than the server's max_payload")
        if isinstance(exc, nats.js.errors.APIError) and exc.err_code == _ERR_MSG_TOO_BIG:
            return PayloadTooLarge(f"{text}: message larger than the stream's max_msg_size")
        if isinstance(exc, _UNAVAILABLE):
            return BrokerUnavailable(text)
        return BrokerError(text)

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()  # a client still reconnecting on its own is replaced, not leaked
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await self._attempt(max(deadline - loop.time(), 0.05))

        try:
            await retry(
                attempt,
                first_s=self.settings.reconnect_wait_s,
                max_s=self.settings.reconnect_max_wait_s,
                deadline_s=self._connect_timeout_s,
            )
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"nats {redact(self._url)}: not reachable after {attempts} attempt(s) in "
                f"{self._connect_timeout_s:g}s; last error: {exc}"
            ) from None
        log.info("nats %s connected (stream %s)", redact(self._url), self.settings.stream)

    async def _attempt(self, budget: float) -> None:
        """Connect once and declare the streams; BrokerUnavailable means try again."""
        try:
            nc = await self._open(budget)
        except (OSError, TimeoutError, nats.errors.Error) as exc:  # refused, TLS, auth, ...
            raise BrokerUnavailable(scrub(_describe(exc), self._url)) from None
        self._nc, self._js, self._sub = nc, nc.jetstream(timeout=self._publish_timeout_s), None
        try:
            await self._declare_streams()
        except BrokerError:
            await self.close()
            raise

    async def _open(self, budget: float) -> Client:
        """One TCP + CONNECT attempt; once it is up, nats-py's own reconnect loop takes over."""
        nc = Client()
        # Resolved by the first error of this attempt: connect() backs off itself, because
        # with max_reconnect_attempts=-1 nats-py would retry forever at a fixed pace.
        failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        where = redact(self._url)

        async def on_error(exc: Exception) -> None:
            if not failed.done():
                failed.set_result(exc)
                return
            level = logging.DEBUG if nc.is_reconnecting else logging.WARNING
            log.log(level, "nats %s: %s", where, scrub(_describe(exc), self._url))

        async def on_disconnect() -> None:
            if nc.is_reconnecting:
                log.warning("nats %s disconnected; reconnecting", where)

        async def on_reconnect() -> None:
            log.warning("nats %s reconnected", where)
            # A server that came back without its store (no volume) lost the streams.
            if self._redeclaring is not None:
                self._redeclaring.cancel()
            self._redeclaring = asyncio.ensure_future(self._redeclare())

        connecting = asyncio.ensure_future(
            nc.connect(
                servers=[self._url],
                name="tripwire",
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_to_server_handler=self._next_reconnect,
                connect_timeout=max(1, min(5, int(budget))),
            )
        )
        waiters: set[asyncio.Future[Any]] = {connecting, failed}
        await asyncio.wait(waiters, timeout=max(budget, 0.05), return_when=asyncio.FIRST_COMPLETED)
        if connecting.done() and connecting.exception() is None:
            failed.cancel()  # from now on errors are logged, not taken as a failed attempt
            return nc
        connecting.cancel()
        await asyncio.wait({connecting})
        await _close_quietly(nc)
        if failed.done():
            raise failed.result()
        if not connecting.cancelled() and (error := connecting.exception()) is not None:
            raise error
        raise TimeoutError(f"no connection within {budget:.1f}s")

    def _next_reconnect(
        self, servers: list[Server], info: dict[str, Any]
    ) -> tuple[Server | None, float]:
        """nats-py's reconnect hook: exponential backoff with jitter, capped."""
        attempt = min(servers[0].reconnects if servers else 0, 30)
        delay = min(self.settings.reconnect_wait_s * 2**attempt, self.settings.reconnect_max_wait_s)
        return None, delay * random.uniform(0.8, 1.2)

    async def _declare_streams(self) -> None:
        s = self.settings
        # The default model: discard=new, a full stream refuses frames (the gateway answers
        # 503) instead of silently dropping frames already queued. Named models: discard=old,
        # so that a stalled model loses its oldest frames instead of stopping every model.
        named = any(not route.default for route in self._routes)
        discard = api.DiscardPolicy.OLD if named else api.DiscardPolicy.NEW
        streams = [
            (s.stream, s.subjects, api.RetentionPolicy.INTEREST, discard,
             s.stream_max_bytes, s.stream_max_age_s, s.max_msg_bytes),
            (s.results_stream, s.results_subjects, api.RetentionPolicy.LIMITS,
             api.DiscardPolicy.OLD, s.results_max_bytes, s.results_max_age_s, -1),
            (s.dead_stream, [f"{s.dead_prefix}.>"], api.RetentionPolicy.LIMITS,
             api.DiscardPolicy.OLD, s.dead_max_bytes, s.dead_max_age_s, -1),
        ]  # fmt: skip
        for name, subjects, retention, discard, max_bytes, max_age, max_msg_size in streams:
            config = api.StreamConfig(
                name=name,
                subjects=list(subjects),
                retention=retention,
                discard=discard,
                max_bytes=max_bytes,
                max_age=max_age,
                max_msgs=s.stream_max_msgs if name == s.stream else -1,
                max_msg_size=max_msg_size,
                storage=api.StorageType(s.storage),
                num_replicas=s.replicas,
                duplicate_window=s.duplicate_window_s,
            )
            # Without routes this process does not know the models: it leaves an existing
            # motion stream's discard policy as the processes that know them declared it.
            keep = name == s.stream and not self._routes_given
            await self._ensure_stream(config, keep_discard=keep)
        await self._declare_consumers()

    async def _declare_consumers(self) -> None:
        """Every model's consumer, before any frame is published: in an interest stream a
        frame that no consumer wants is not stored."""
        js, s = self._jetstream(), self.settings
        if self._declares_none:
            return
        try:
            if not self._routes_given:
                info = await js.stream_info(s.stream)
                if info.state.consumer_count:
                    return
            for route in self._routes:
                await js.add_consumer(s.stream, self._motion_consumer_config(route))
        except _NATS_ERRORS as exc:
            raise self.wrap(exc, f"declare the consumers of {s.stream}") from exc

    async def _redeclare(self) -> None:
        try:
            await self._declare_streams()
            if self._sub is not None:
                await self._jetstream().add_consumer(self._stream, self._consumer_config())
        except BrokerError as exc:
            log.warning("%s", exc)
        except _NATS_ERRORS as exc:
            log.warning("%s", self.wrap(exc, "re-declare after reconnect"))

    async def _ensure_stream(self, config: api.StreamConfig, *, keep_discard: bool = False) -> None:
        js = self._jetstream()
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _ERR_STREAM_NAME_IN_USE:
                    raise
                await self._update_stream(js, config, keep_discard)
        except BrokerError:
            raise
        except _NATS_ERRORS as exc:
            raise self.wrap(exc, f"declare stream {config.name}") from exc

    async def _update_stream(
        self, js: JetStreamContext, config: api.StreamConfig, keep_discard: bool
    ) -> None:
        """Update in place; a motion stream of the work-queue days (retention cannot change)
        is replaced when it is empty, else the operator is told what to do."""
        name = config.name or ""
        current = await js.stream_info(name)
        if keep_discard:
            config.discard = current.config.discard
        if current.config.retention == config.retention:
            await js.update_stream(config)
            return
        if current.state.messages:
            raise BrokerError(
                f"nats stream {config.name} has {current.config.retention} retention and "
                f"{current.state.messages} frames; let the detector drain it, then delete it "
                f"(nats stream rm {config.name}) so that it is declared with "
                f"{config.retention} retention"
            )
        log.warning("replacing the empty stream %s (retention %s -> %s)", config.name,
                    current.config.retention, config.retention)  # fmt: skip
        await js.delete_stream(name)
        await js.add_stream(config)

    def _jetstream(self) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            raise BrokerUnavailable(f"nats {redact(self._url)}: not connected")
        return self._js

    @property
    def max_payload(self) -> int | None:
        """The largest body it can publish: the server's max_payload (known once connected;
        it counts the headers too) and the stream's max_msg_bytes."""
        if self._nc is None:
            return None
        return min(self._nc.max_payload, self.settings.max_msg_bytes)

    async def publish(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        js = self._jetstream()
        if len(body) > self.settings.max_msg_bytes:
            raise PayloadTooLarge(
                f"nats publish {subject}: {len(body)} bytes is over max_msg_bytes "
                f"({self.settings.max_msg_bytes})"
            )
        if not self.connected:
            # Fail fast while reconnecting rather than buffer a request nobody will await.
            raise BrokerUnavailable(f"nats {redact(self._url)}: publish {subject}: disconnected")
        hdrs = dict(headers)
        msg_id = hdrs.get(Header.ID)
        if msg_id:
            hdrs[NATS_MSG_ID] = msg_id
        # nats-py checks the body alone against max_payload; the server counts headers too
        # and answers an oversized message by closing the connection (a reconnect loop).
        size = len(body) + sum(len(k) + len(v) + 4 for k, v in hdrs.items()) + 12
        if self._nc is not None and size > self._nc.max_payload:
            raise PayloadTooLarge(
                f"nats publish {subject}: {size} bytes with headers is over the server's "
                f"max_payload ({self._nc.max_payload})"
            )
        try:
            await js.publish(subject, body, timeout=self._publish_timeout_s, headers=hdrs or None)
        except TimeoutError as exc:
            raise PublishTimeout(
                f"nats {redact(self._url)}: publish {subject}: no ack within "
                f"{self._publish_timeout_s:g}s"
            ) from exc
        except _NATS_ERRORS as exc:
            raise self.wrap(exc, f"publish {subject}") from exc

    def _consumer_config(self) -> api.ConsumerConfig:
        if self.feed == "motion" and self.route is not None:
            return self._motion_consumer_config(self.route)
        s = self.settings
        return api.ConsumerConfig(
            name=self._durable,
            durable_name=self._durable,
            filter_subjects=self._filters,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_ack_pending=s.max_ack_pending,
            max_deliver=-1,  # unlimited: the detector dead-letters by delivery count itself
        )

    def _camera_filters(self, route: MotionRoute) -> list[str] | None:
        """The subjects of the cameras ``route`` serves, under the stream's own subjects
        (``tripwire.motion.>`` -> ``tripwire.motion.cam-1``); None = every frame."""
        if not route.cameras:
            return None
        bases = [subject[:-1] for subject in self.settings.subjects if subject.endswith(".>")]
        return [base + camera for base in bases for camera in route.cameras] or None

    def _motion_consumer_config(self, route: MotionRoute) -> api.ConsumerConfig:
        """A model's consumer. A named model added later starts from new frames, not from
        what the stream holds for the others; the default one keeps today's start (all)."""
        s = self.settings
        durable = route.name(s.durable, "-")
        return api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subjects=self._camera_filters(route),
            deliver_policy=api.DeliverPolicy.ALL if route.default else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_ack_pending=s.max_ack_pending,
            max_deliver=-1,  # unlimited: the detector dead-letters by delivery count itself
        )

    async def _consumer(self) -> JetStreamContext.PullSubscription:
        """The durable pull consumer, created (or updated) on first use."""
        if self._sub is not None:
            return self._sub
        if not self._durable:
            raise BrokerError(
                f"nats {self._stream}: {len(self._routes)} models read it; name the model whose "
                "frames to fetch or measure (open_broker(..., model=NAME))"
            )
        js, stream, durable = self._jetstream(), self._stream, self._durable
        async with self._consumer_lock:
            if self._sub is None:
                try:
                    await js.add_consumer(stream, self._consumer_config())
                    self._sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
                except _NATS_ERRORS as exc:
                    raise self.wrap(exc, f"create consumer {stream}/{durable}") from exc
            return self._sub

    # The Protocol names the parameter `timeout`; it bounds the pull request, not this call.
    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:  # noqa: ASYNC109
        self._jetstream()
        if not self.connected:
            await asyncio.sleep(timeout)  # nats-py is reconnecting: nothing can arrive now
            return []
        sub = await self._consumer()
        try:
            msgs = await sub.fetch(batch=max(1, max_messages), timeout=max(timeout, 0.01))
        except TimeoutError:
            return []
        except _NATS_ERRORS as exc:
            raise self.wrap(exc, f"fetch from {self._stream}") from exc
        return [JetStreamMessage(self, m) for m in msgs]

    async def depth(self) -> int:
        if not self.connected:
            raise BrokerUnavailable(f"nats {redact(self._url)}: depth: disconnected")
        await self._consumer()
        stream, durable = self._stream, self._durable
        try:
            info = await self._jetstream().consumer_info(
                stream, durable, timeout=self._publish_timeout_s
            )
        except _NATS_ERRORS as exc:
            raise self.wrap(exc, f"consumer info {stream}/{durable}") from exc
        return (info.num_pending or 0) + (info.num_ack_pending or 0)

    async def subscribe(self, subject: str) -> AsyncIterator[Message]:
        """A core NATS subscription, replayed by nats-py after each reconnect.

        It lives on the client: it ends when the client is closed, by :meth:`close` or by
        a :meth:`connect` that replaces a client still reconnecting.
        """
        nc = self._nc
        if nc is None or nc.is_closed:
            raise BrokerUnavailable(f"nats {redact(self._url)}: subscribe {subject}: not connected")
        try:
            sub = await nc.subscribe(subject)
        except _NATS_ERRORS as exc:
            raise self.wrap(exc, f"subscribe {subject}") from exc
        try:
            # nats-py ends this iterator when the client closes.
            async for msg in sub.messages:
                yield TransientMessage(msg.subject, msg.data, visible(msg.headers))
        finally:
            if not nc.is_closed:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

    async def close(self) -> None:
        if self._redeclaring is not None:
            self._redeclaring.cancel()
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        if nc is not None:
            await _close_quietly(nc)


async def _close_quietly(nc: Client) -> None:
    try:
        await nc.close()
    except Exception as exc:  # closing is best effort; the server reclaims the connection
        log.debug("nats close: %s", _describe(exc))
