"""Transient listeners for ``RabbitBroker.subscribe``: one temporary queue per subscription.

Each subscription gets a server-named, exclusive, auto-delete queue bound to the topic
exchange with its subject as the binding key, consumed with auto-ack: nothing is stored for
an absent listener and nothing is left to settle. The queue goes when its consumer is
cancelled (the iterator ends) or its connection closes.

All subscriptions share one connection of their own, opened by the first ``subscribe``: not
the consumer's, whose set-up starts consuming motion frames (a scaler listening for wake-ups
must not take frames), and not the publisher's, which a memory alarm may block. After a
reconnect every live subscription gets a fresh queue, bound again; what was published in
between is lost (best effort: the scaler's depth poll remains the source of truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pika import exceptions as pika_errors

from tripwire.brokers.protocol import Message, TransientMessage
from tripwire.brokers.rabbitmq_link import Link, Lost, Ready, headers_from_amqp

log = logging.getLogger(__name__)

# Deliveries one subscription holds while its reader is busy; beyond this they are dropped.
MAX_BUFFERED = 1000


class _Subscription:
    __slots__ = ("channel", "dropped", "inbox", "subject", "tag")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        # None ends the iterator (the broker closed).
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.channel: Any = None  # the channel its queue and consumer live on
        self.tag: str | None = None
        self.dropped = 0


class Listeners:
    """Every transient subscription of one broker, on one link."""

    def __init__(
        self,
        exchange: str,
        make_link: Callable[[Ready, Lost], Link],
        open_timeout_s: float,
        context: Callable[[str], str],
    ) -> None:
        self._exchange = exchange
        self._link = make_link(self._ready, self._lost)
        self._open_timeout_s = open_timeout_s
        self._context = context
        self._subs: set[_Subscription] = set()
        self._open_lock = asyncio.Lock()
        self._closed = False

    async def listen(self, subject: str) -> AsyncGenerator[Message, None]:
        """What arrives on ``subject`` until :meth:`close` (or the caller stops iterating)."""
        sub = _Subscription(subject)
        self._subs.add(sub)
        try:
            await self._start(sub)
            while (message := await sub.inbox.get()) is not None:
                yield message
        finally:
            self._subs.discard(sub)
            await self._cancel(sub)

    async def close(self) -> None:
        self._closed = True
        for sub in self._subs:
            sub.inbox.put_nowait(None)
        await self._link.close()  # an exclusive queue goes with its connection

    async def _start(self, sub: _Subscription) -> None:
        async with self._open_lock:
            if not (self._link.up or self._link.reconnecting):
                await self._link.open(self._open_timeout_s)  # _ready binds sub with the rest
                if self._closed:  # close() came while it was opening
                    await self._link.close()
                    return
        channel = self._link.channel
        if self._link.up and sub.channel is not channel:
            try:
                await self._bind(sub, channel)
            except pika_errors.AMQPError as exc:
                # The link is lost; its reopen binds every subscription, this one included.
                log.debug("%s", self._context(f"listen to {sub.subject}: {exc!r}"))

    async def _ready(self, channel: Any) -> None:
        """After every (re)open: the exchange, then a fresh queue for each subscription."""
        rpc = self._link.rpc
        await rpc(
            channel.exchange_declare, exchange=self._exchange, exchange_type="topic", durable=True
        )
        # basic.cancel from the broker (queue deleted): reopen, and so bind again.
        channel.add_on_cancel_callback(lambda _frame: self._link.drop("listener cancelled"))
        # A subscribe that arrives while this runs is bound here too: the link is not up yet.
        while pending := [sub for sub in self._subs if sub.channel is not channel]:
            for sub in pending:
                await self._bind(sub, channel)

    def _lost(self, _exc: BaseException) -> None:
        for sub in self._subs:
            sub.channel = sub.tag = None

    async def _bind(self, sub: _Subscription, channel: Any) -> None:
        rpc = self._link.rpc
        frame = await rpc(
            channel.queue_declare,
            queue="",  # the broker names it (amq.gen-...)
            exclusive=True,
            auto_delete=True,
            arguments={"x-queue-type": "classic"},  # the only type an exclusive queue may have
        )
        queue = frame.method.queue
        await rpc(channel.queue_bind, queue=queue, exchange=self._exchange, routing_key=sub.subject)
        deliver = functools.partial(self._deliver, sub)
        frame = await rpc(channel.basic_consume, queue, deliver, auto_ack=True)
        sub.channel, sub.tag = channel, frame.method.consumer_tag
        if sub not in self._subs:  # its iterator ended while this ran
            await self._cancel(sub)

    async def _cancel(self, sub: _Subscription) -> None:
        """Cancel the consumer; auto-delete then deletes its queue."""
        channel, tag = sub.channel, sub.tag
        sub.channel = sub.tag = None
        if channel is None or tag is None or channel is not self._link.channel:
            return  # gone with its channel already
        with contextlib.suppress(pika_errors.AMQPError):
            await self._link.rpc(channel.basic_cancel, tag)

    def _deliver(
        self, sub: _Subscription, _channel: Any, method: Any, properties: Any, body: bytes
    ) -> None:
        if sub.inbox.qsize() >= MAX_BUFFERED:
            sub.dropped += 1
            if sub.dropped == 1 or sub.dropped % MAX_BUFFERED == 0:
                log.warning(
                    "%s",
                    self._context(
                        f"listener on {sub.subject} is not reading: {sub.dropped} dropped"
                    ),
                )
            return
        headers, _count = headers_from_amqp(properties.headers)
        sub.inbox.put_nowait(TransientMessage(method.routing_key, body, headers))
