"""One AMQP connection with one channel on the running event loop, reopened when lost.

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
from collections.abc import Awaitable, Callable
from typing import Any

from pika import exceptions as pika_errors
from pika.adapters.asyncio_connection import AsyncioConnection

from tripwire.errors import BrokerError, BrokerUnavailable
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

Ready = Callable[[Any], Awaitable[None]]
Lost = Callable[[BaseException], None]


def describe(exc: BaseException, url: str) -> str:
    """``Type: text`` of a third-party exception, without the password of ``url``."""
    text = str(exc) or repr(exc)
    return scrub(f"{type(exc).__name__}: {text}", url)


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
