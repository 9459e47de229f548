"""The one interface every broker adapter implements.

A broker carries motion frames from the edge to the detector with at-least-once delivery:
``publish`` returns only once the broker has stored the message (JetStream ack, RabbitMQ
publisher confirm); a consumer acks a :class:`Message` only after its work is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class Message(Protocol):
    """A received message that carries its own acknowledgement."""

    @property
    def subject(self) -> str:
        """The subject (NATS) or routing key (RabbitMQ) it was published to."""
        ...

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def deliveries(self) -> int:
        """How many times this message has been delivered, this time included (>= 1)."""
        ...

    async def ack(self) -> None:
        """Done: the broker may forget the message."""
        ...

    async def nak(self, delay: float | None = None) -> None:
        """Not done: deliver it again (after ``delay`` seconds where the broker supports it)."""
        ...

    async def term(self, reason: str) -> None:
        """Never deliver again: move it to the dead-letter route with ``reason``."""
        ...

    async def in_progress(self) -> None:
        """Still working on it: extend the ack deadline where the broker has one."""
        ...


@runtime_checkable
class Broker(Protocol):
    """Publish, consume and measure queue depth on one broker."""

    name: str

    @property
    def connected(self) -> bool:
        """True while the adapter holds a live connection (used by /readyz)."""
        ...

    async def connect(self) -> None:
        """Connect and declare what this adapter needs (stream or exchange, queues, DLQ).

        Retries with backoff up to the adapter's connect timeout, then raises
        :class:`~tripwire.errors.BrokerUnavailable`.
        """
        ...

    async def publish(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Store one message durably; return after the broker confirmed it.

        Raises :class:`~tripwire.errors.BrokerUnavailable` when it cannot be confirmed.
        """
        ...

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:  # noqa: ASYNC109
        """Up to ``max_messages`` motion messages, waiting at most ``timeout`` s for the first."""
        ...

    async def depth(self) -> int:
        """Messages not yet acknowledged by the detector: waiting plus in flight."""
        ...

    async def close(self) -> None:
        """Release the connection; unacknowledged messages go back to the broker."""
        ...


async def messages(broker: Broker, *, batch: int = 16, wait: float = 1.0) -> AsyncIterator[Message]:
    """Consume forever as an async iterator of ackable messages (``wait``: each fetch's bound)."""
    while True:
        for message in await broker.fetch(batch, wait):
            yield message
