"""pika's callback API as awaitables: one connection and channel, reopened when lost
(:class:`Link`), and publisher confirms on such a channel (:class:`Confirms`).

:class:`Link` turns pika's callback API (``AsyncioConnection``) into awaitables: ``open``
retries with exponential backoff up to a deadline, ``rpc`` awaits a channel method's
``...Ok`` frame, and a link that was up and is lost reconnects by itself in the background
(backoff capped at ``max_backoff_s``) until :meth:`Link.close`. Every pika exception that
leaves this module is wrapped in a :mod:`tripwire.errors` class, scrubbed of the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pika
from pika import exceptions as pika_errors
from pika.adapters.asyncio_connection import AsyncioConnection

from tripwire.errors import BrokerError, BrokerUnavailable, PublishTimeout
from tripwire.retry import retry
from tripwire.urls import redact, scrub

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.1
# Retrying does not fix these: wrong password, no access to the vhost, or a declare the
# broker refused (a queue that exists with other arguments: PRECONDITION_FAILED).
_FATAL = (
    pika_errors.ProbableAuthenticationError,
    pika_errors.AuthenticationError,
    pika_errors.ProbableAccessDeniedError,
    pika_errors.ChannelClosedByBroker,
)
# Failures to connect that a later attempt may not see: refused, reset, DNS, a broker
# starting up, a declare that met a broker going down.
_CONNECT_ERRORS = (pika_errors.AMQPError, OSError, BrokerUnavailable)

# Set by quorum queues: failed delivery attempts so far (0 on the first delivery).
DELIVERY_COUNT = "x-delivery-count"

# A publish the broker could not take now, as opposed to one it refuses.
_UNAVAILABLE = (pika_errors.AMQPConnectionError, pika_errors.AMQPChannelError)

Ready = Callable[[Any], Awaitable[None]]
Lost = Callable[[BaseException], None]


def describe(exc: BaseException, url: str) -> str:
    """``Type: text`` of a third-party exception, without the password of ``url``."""
    text = str(exc) or repr(exc)
    return scrub(f"{type(exc).__name__}: {text}", url)


def headers_from_amqp(table: Mapping[str, Any] | None) -> tuple[dict[str, str], int | None]:
    """String headers of a delivery, and its ``x-delivery-count`` when the queue sets one.

    Tables and arrays (``x-death``) are broker bookkeeping, not message metadata: dropped.
    """
    headers: dict[str, str] = {}
    count: int | None = None
    for key, value in (table or {}).items():
        if key == DELIVERY_COUNT and isinstance(value, int):
            count = value
        elif isinstance(value, bytes):
            headers[key] = value.decode("utf-8", "replace")
        elif isinstance(value, str | int | float | Decimal):
            headers[key] = str(value)
    return headers, count


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _close_quietly(conn: Any) -> None:
    if conn is not None and not (conn.is_closed or conn.is_closing):
        with contextlib.suppress(pika_errors.AMQPError):
            conn.close()


class Link:
    """A connection + channel that ``on_ready`` sets up after every (re)open."""

    def __init__(
        self,
        url: str,
        params: Any,
        role: str,
        *,
        on_ready: Ready,
        on_lost: Lost,
        attempt_timeout_s: float,
        max_backoff_s: float,
    ) -> None:
        self._url = url
        self._params = params
        self._role = role
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._attempt_timeout_s = attempt_timeout_s
        self._max_backoff_s = max_backoff_s
        self._conn: Any = None
        self._channel: Any = None
        self._up = False
        self._closing = False
        self._gone = asyncio.Event()
        self._waiting: set[asyncio.Future[Any]] = set()
        self._reconnector: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """Connected, channel open and ``on_ready`` done."""
        return self._up and self.channel is not None

    @property
    def reconnecting(self) -> bool:
        return self._reconnector is not None and not self._reconnector.done()

    @property
    def channel(self) -> Any:
        """The open channel, or None while disconnected."""
        channel = self._channel
        return channel if channel is not None and channel.is_open else None

    async def open(self, timeout_s: float) -> None:
        """Connect, retrying with backoff; BrokerUnavailable after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = "timed out"
        self._closing = False

        async def attempt() -> None:
            nonlocal last
            try:
                left = max(deadline - loop.time(), 0.05)
                await asyncio.wait_for(self._attempt(), min(left, self._attempt_timeout_s))
            except _FATAL as exc:
                raise BrokerError(self._context(describe(exc, self._url))) from None
            except TimeoutError:
                # Keep the reason of the previous attempt: "refused" says more.
                raise BrokerUnavailable(last) from None
            except _CONNECT_ERRORS as exc:
                last = describe(exc, self._url)
                raise BrokerUnavailable(last) from None

        try:
            await retry(
                attempt, first_s=FIRST_BACKOFF_S, max_s=self._max_backoff_s, deadline_s=timeout_s
            )
        except BrokerUnavailable:
            raise BrokerUnavailable(
                self._context(f"not reachable within {timeout_s:g} s: {last}")
            ) from None

    async def rpc(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a channel method with ``callback=`` and await its reply frame."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        method(*args, callback=lambda frame: _resolve(future, frame), **kwargs)
        return await self._track(future)

    def drop(self, why: str) -> None:
        """Close the connection so that the link reopens it (and runs ``on_ready`` again)."""
        if self._up:
            log.warning("%s", self._context(f"{why}; reopening"))
            _close_quietly(self._conn)

    async def close(self) -> None:
        """Close without reconnecting; the broker requeues what this link left unacked."""
        self._closing = True
        self._up = False
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
        conn = self._conn
        if conn is not None and not conn.is_closed:
            _close_quietly(conn)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), 5.0)
        self._conn = self._channel = None

    def _context(self, text: str) -> str:
        return f"rabbitmq at {redact(self._url)} ({self._role}): {text}"

    async def _attempt(self) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        gone = self._gone = asyncio.Event()
        conn = AsyncioConnection(
            self._params,
            on_open_callback=lambda c: _resolve(opened, c),
            on_open_error_callback=lambda c, exc: _fail(opened, exc),
            on_close_callback=lambda c, exc: self._on_connection_closed(c, exc, gone),
            custom_ioloop=loop,
        )
        self._conn = conn
        try:
            await self._track(opened)
            channel_open: asyncio.Future[Any] = loop.create_future()
            conn.channel(on_open_callback=lambda ch: _resolve(channel_open, ch))
            channel = await self._track(channel_open)
            channel.add_on_close_callback(self._on_channel_closed)
            self._channel = channel
            await self._on_ready(channel)
        except BaseException:
            self._conn = self._channel = None
            _close_quietly(conn)
            raise
        self._up = True

    async def _track(self, future: asyncio.Future[Any]) -> Any:
        """Await ``future``; it fails if the channel or connection goes meanwhile."""
        self._waiting.add(future)
        try:
            return await future
        finally:
            self._waiting.discard(future)

    def _fail_waiting(self, exc: BaseException) -> None:
        for future in list(self._waiting):
            _fail(future, exc)

    def _on_connection_closed(self, conn: Any, exc: BaseException, gone: asyncio.Event) -> None:
        gone.set()
        if conn is not self._conn:
            return
        self._conn = self._channel = None
        self._fail_waiting(exc)
        self._lost(exc)

    def _on_channel_closed(self, channel: Any, exc: BaseException) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        self._fail_waiting(exc)
        if self._up:
            # A channel the broker closed (consumer_timeout, a deleted queue) takes its
            # connection along: one reopen path re-declares and re-consumes everything.
            conn, self._conn = self._conn, None
            self._lost(exc)
            _close_quietly(conn)

    def _lost(self, exc: BaseException) -> None:
        if not self._up:
            return
        self._up = False
        self._on_lost(exc)
        if not self._closing and not self.reconnecting:
            log.warning("%s; reconnecting", self._context(f"lost: {describe(exc, self._url)}"))
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reopen until it works or :meth:`close`: the outage may be long."""

        async def attempt() -> None:
            try:
                await asyncio.wait_for(self._attempt(), self._attempt_timeout_s)
            except (TimeoutError, *_FATAL, *_CONNECT_ERRORS, BrokerError) as exc:
                raise BrokerUnavailable(describe(exc, self._url)) from None

        def on_retry(error: BaseException, _attempt: int, wait_s: float) -> None:
            log.warning(
                "%s; next try in %.1f s", self._context(f"reconnect failed: {error}"), wait_s
            )

        await asyncio.sleep(FIRST_BACKOFF_S)
        await retry(
            attempt, first_s=FIRST_BACKOFF_S * 2, max_s=self._max_backoff_s, on_retry=on_retry
        )
        log.info("%s", self._context("reconnected"))


@dataclass(slots=True)
class PendingPublish:
    """A publish awaiting its confirm."""

    future: asyncio.Future[None]
    exchange: str
    routing_key: str
    message_id: str | None
    mandatory: bool
    returned: str | None = None


class Confirms:
    """Publish on a confirm-mode channel and await the broker's answer.

    The broker numbers the publishes of a confirm-mode channel 1, 2, 3... and answers each
    with basic.ack (stored), basic.nack (refused: a full ``reject-publish`` queue) or, for a
    ``mandatory`` publish no queue took, basic.return followed by basic.ack.
    """

    def __init__(
        self,
        timeout_s: float,
        context: Callable[[str], str],
        why: Callable[[BaseException], str],
        *,
        refused: Callable[[PendingPublish], str],
        unroutable: Callable[[PendingPublish], str],
    ) -> None:
        """``refused`` and ``unroutable`` word a basic.nack and a basic.return: which queue
        is full or unbound is the adapter's topology, not this class's business."""
        self._timeout_s = timeout_s
        self._context = context
        self._why = why
        self._refused = refused
        self._unroutable = unroutable
        self._pending: dict[int, PendingPublish] = {}
        self._sent = 0  # sequence number of the last publish on the current channel

    async def start(self, channel: Any, rpc: Callable[..., Any]) -> None:
        """Put a fresh channel in confirm mode; numbering starts again at 1."""
        self._sent = 0
        channel.add_on_return_callback(self._on_return)
        await rpc(channel.confirm_delivery, ack_nack_callback=self._on_confirm)

    async def publish(
        self, channel: Any, exchange: str, key: str, body: bytes, properties: Any, mandatory: bool
    ) -> None:
        """Publish and return once the broker acked; raise on nack, return or timeout."""
        try:
            channel.basic_publish(exchange, key, body, properties=properties, mandatory=mandatory)
        except _UNAVAILABLE as exc:
            raise BrokerUnavailable(self._context(f"publish to {key}: {self._why(exc)}")) from None
        except pika_errors.AMQPError as exc:
            raise BrokerError(self._context(f"publish to {key}: {self._why(exc)}")) from None
        self._sent += 1
        tag = self._sent
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[tag] = PendingPublish(future, exchange, key, properties.message_id, mandatory)
        try:
            async with asyncio.timeout(self._timeout_s):
                await future
        except TimeoutError:
            raise PublishTimeout(
                self._context(
                    f"no confirm for {key} within {self._timeout_s:g} s; "
                    "the message may or may not be stored"
                )
            ) from None
        finally:
            self._pending.pop(tag, None)

    def fail_all(self, why: str) -> None:
        """Fail every publish still waiting (its channel is gone)."""
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    BrokerUnavailable(self._context(f"publish to {pending.routing_key}: {why}"))
                )
        self._pending.clear()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        last: int = method.delivery_tag
        tags = sorted(t for t in self._pending if t <= last) if method.multiple else [last]
        for tag in tags:
            pending = self._pending.pop(tag, None)
            if pending is None or pending.future.done():
                continue
            if not acked:
                pending.future.set_exception(BrokerUnavailable(self._refused(pending)))
            elif pending.returned is not None:
                pending.future.set_exception(BrokerError(self._unroutable(pending)))
            else:
                pending.future.set_result(None)

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        # basic.return carries no sequence number, but it comes before the basic.ack of
        # its message: mark the oldest unconfirmed publish it describes.
        for tag in sorted(self._pending):
            pending = self._pending[tag]
            if (
                pending.mandatory
                and pending.returned is None
                and (pending.exchange, pending.routing_key) == (method.exchange, method.routing_key)
                and pending.message_id == properties.message_id
            ):
                pending.returned = f"{method.reply_code} {method.reply_text}"
                return
