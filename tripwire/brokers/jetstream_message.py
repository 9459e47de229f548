"""One motion message delivered by the JetStream consumer; it settles itself (ack, nak,
in-progress, term) on the message it came from."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg

from tripwire.contract import Header, dead_reason

if TYPE_CHECKING:
    from tripwire.brokers.jetstream import JetStreamBroker


def visible(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Broker-internal headers (Nats-Msg-Id, ...) hidden: callers see what was published."""
    return {k: v for k, v in (headers or {}).items() if not k.startswith("Nats-")}


class JetStreamMessage:
    """One delivered motion message; settles itself on the JetStream consumer."""

    def __init__(self, broker: JetStreamBroker, msg: Msg) -> None:
        self._broker, self._msg = broker, msg
        self.subject: str = msg.subject
        self.body: bytes = msg.data
        self.headers: Mapping[str, str] = visible(msg.headers)
        self.deliveries: int = msg.metadata.num_delivered

    async def ack(self) -> None:
        await self._settle("ack", self._msg.ack())

    async def nak(self, delay: float | None = None) -> None:
        await self._settle("nak", self._msg.nak(delay=delay))

    async def in_progress(self) -> None:
        await self._settle("in_progress", self._msg.in_progress())

    async def term(self, reason: str) -> None:
        # Store the dead letter first (awaiting its PubAck), only then terminate: a crash in
        # between means a redelivery and at worst a second dead letter (deduplicated by
        # Tripwire-Id within the window), never a lost one.
        headers = dict(self.headers)
        headers[Header.DEAD_REASON] = dead_reason(reason)
        headers[Header.DEAD_SUBJECT] = self.subject
        dead_subject = f"{self._broker.settings.dead_prefix}.{self.subject}"
        await self._broker.publish(dead_subject, self.body, headers)
        await self._settle("term", self._msg.term())

    async def _settle(self, what: str, op: Awaitable[None]) -> None:
        try:
            await op
        except (nats.errors.Error, OSError) as exc:  # what nats-py raises; a bug propagates
            raise self._broker.wrap(exc, f"{what} {self.subject}") from exc
