"""Publisher confirms on one RabbitMQ channel: many publishes in flight, each awaiting its own.

The broker numbers the publishes of a confirm-mode channel 1, 2, 3... and answers each with
basic.ack (stored), basic.nack (refused: a full ``reject-publish`` queue) or, for a
``mandatory`` publish no queue took, basic.return followed by basic.ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pika
from pika import exceptions as pika_errors

from tripwire.errors import BrokerError, BrokerUnavailable, PublishTimeout

if TYPE_CHECKING:
    from tripwire.brokers.rabbitmq import RabbitSettings

_UNAVAILABLE = (pika_errors.AMQPConnectionError, pika_errors.AMQPChannelError)


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[None]
    exchange: str
    routing_key: str
    message_id: str | None
    mandatory: bool
    returned: str | None = None


class Confirms:
    """Publish on a confirm-mode channel and await the broker's answer."""

    def __init__(
        self,
        settings: RabbitSettings,
        timeout_s: float,
        context: Callable[[str], str],
        why: Callable[[BaseException], str],
    ) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._context = context
        self._why = why
        self._pending: dict[int, _Pending] = {}
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
        self._pending[tag] = _Pending(future, exchange, key, properties.message_id, mandatory)
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

    def _queue_for(self, pending: _Pending) -> tuple[str, int]:
        s = self._settings
        if pending.exchange != s.exchange:
            return s.dead_letter_queue, s.max_length
        if topic_matches(s.binding_key, pending.routing_key):
            return s.queue, s.max_length
        return s.events_queue_name, s.events_max_length

    def _refused(self, pending: _Pending) -> str:
        s = self._settings
        if pending.exchange == s.exchange and pending.mandatory and s.overflow != "drop-head":
            queue, limit = self._queue_for(pending)
            return self._context(
                f"publish to {pending.routing_key} refused: queue {queue} is full "
                f"(x-max-length {limit}, overflow {s.overflow})"
            )
        return self._context(
            f"publish to {pending.routing_key} via {pending.exchange} refused (basic.nack)"
        )

    def _unroutable(self, pending: _Pending) -> str:
        queue, _ = self._queue_for(pending)
        return self._context(
            f"{pending.routing_key} was not routed to any queue by exchange {pending.exchange} "
            f"({pending.returned}); is queue {queue} still bound?"
        )


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one dot-separated word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))
