"""A delivery from the RabbitMQ motion queue, as a :class:`tripwire.brokers.protocol.Message`."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripwire.brokers.rabbitmq import RabbitBroker

# Set by quorum queues: failed delivery attempts so far (0 on the first delivery).
DELIVERY_COUNT = "x-delivery-count"


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


class RabbitMessage:
    """One delivery; settle it once with ``ack``, ``nak`` or ``term`` (later calls do nothing)."""

    __slots__ = (
        "_broker",
        "_settled",
        "body",
        "channel",
        "deliveries",
        "headers",
        "subject",
        "tag",
    )

    def __init__(
        self,
        broker: RabbitBroker,
        channel: Any,
        tag: int,
        subject: str,
        body: bytes,
        headers: dict[str, str],
        deliveries: int,
    ) -> None:
        self._broker = broker
        self._settled = False
        self.channel = channel
        self.tag = tag
        self.subject = subject
        self.body = body
        self.headers: Mapping[str, str] = headers
        self.deliveries = deliveries

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
