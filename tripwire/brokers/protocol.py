"""The one interface every broker adapter implements.

A broker carries motion frames from the edge to the detector with at-least-once delivery:
``publish`` returns only once the broker has stored the message (JetStream ack, RabbitMQ
publisher confirm); a consumer acks a :class:`Message` only after its work is done.

It also carries low-rate signals best effort: ``subscribe`` is a transient listener, so the
scaler hears the gateway's wake-up (``tripwire.wake``) within milliseconds instead of at its
next depth poll, and the poll stays the source of truth for anything a listener missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

# What a broker's ``fetch`` and ``depth`` read: motion frames (the detectors' work queue) or
# the events function's feed of detections and event open/close/status messages.
Feed = Literal["motion", "events"]


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
    """Publish, consume and measure queue depth on one broker; listen for signals."""

    name: str

    @property
    def connected(self) -> bool:
        """True while the adapter holds a live connection (used by /readyz)."""
        ...

    @property
    def max_payload(self) -> int | None:
        """The largest message body :meth:`publish` can store, once connected; None when the
        broker does not say. A larger one raises :class:`~tripwire.errors.PayloadTooLarge`."""
        ...

    async def connect(self) -> None:
        """Connect and declare what this adapter needs (stream or exchange, queues, DLQ).

        Retries with backoff up to the adapter's connect timeout, then raises
        :class:`~tripwire.errors.BrokerUnavailable`.
        """
        ...

    async def publish(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Store one message durably; return after the broker confirmed it.

        Raises :class:`~tripwire.errors.BrokerUnavailable` when it cannot be confirmed (try
        again later) and :class:`~tripwire.errors.BrokerRejected` when it never can be.
        """
        ...

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:  # noqa: ASYNC109
        """Up to ``max_messages`` motion messages, waiting at most ``timeout`` s for the first.

        The consuming call, rather than an async iterator of messages: a detector waits for
        its first frame, then gives the rest of its batch a few milliseconds, and it stops
        between batches. An async generator cannot be awaited with a timeout without being
        closed, so each wait is a bounded ``fetch``; :meth:`subscribe`, which has neither
        batches nor deadlines, is the iterator.
        """
        ...

    async def depth(self) -> int:
        """Messages not yet acknowledged by the detector: waiting plus in flight."""
        ...

    def subscribe(self, subject: str) -> AsyncIterator[Message]:
        """Messages published to ``subject`` from now on, as they arrive (a transient listener).

        For low-rate signals such as ``tripwire.wake``: nothing is stored for an absent listener,
        and ack/nak/term/in_progress are no-ops. The iterator ends when the broker is closed.

        An async generator: the subscription is made when iteration starts, and a message
        published before the broker has it in place is not seen. The adapter restores it
        after a reconnect; what was published during the outage is lost. ``subject`` is an
        exact subject (wildcards differ between brokers). The first iteration raises
        :class:`~tripwire.errors.BrokerUnavailable` when the broker is unreachable or closed.
        """
        ...

    async def close(self) -> None:
        """Release the connection; unacknowledged messages go back to the broker.

        Ends every :meth:`subscribe` iterator.
        """
        ...


@dataclass(frozen=True, slots=True)
class TransientMessage:
    """A message from :meth:`Broker.subscribe`: nothing was stored, so nothing to settle."""

    subject: str
    body: bytes
    headers: Mapping[str, str]
    deliveries: int = 1

    async def ack(self) -> None:
        """No-op."""

    async def nak(self, delay: float | None = None) -> None:
        """No-op: a transient message is never delivered again."""

    async def term(self, reason: str) -> None:
        """No-op: there is no dead-letter route for signals."""

    async def in_progress(self) -> None:
        """No-op: there is no ack deadline."""
