"""What every consumer does with a message it cannot finish now: hold it through an outage,
or dead-letter it with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from tripwire.brokers.protocol import Message
from tripwire.errors import BrokerError

log = logging.getLogger(__name__)


async def hold(messages: Iterable[Message], stopping: asyncio.Event, wait_s: float) -> None:
    """Extend the ack deadline of ``messages``, then wait ``wait_s`` or until ``stopping``."""
    for message in messages:
        with contextlib.suppress(BrokerError):
            await message.in_progress()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), wait_s)


async def dead_letter(message: Message, reason: str) -> bool:
    """Dead-letter ``message`` with ``reason``; False if the broker failed (the message is not
    acked either: it comes back and is judged again)."""
    log.warning("dead-lettering %s: %s", message.subject, reason)
    try:
        await message.term(reason)
    except BrokerError as exc:
        log.warning("dead-letter failed (%s); the message stays on the queue", exc)
        return False
    return True
