"""Deliver alerts to an optional webhook without ever holding up the events function.

Alerts go into a bounded queue; one background task POSTs them as JSON with a timeout and
retries with exponential backoff. A full queue drops the oldest alert (counted and logged),
because a dead webhook must not grow memory without bound. Alerts are also published to the
broker, which is the durable record; the webhook is a convenience.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from tripwire.errors import Unavailable
from tripwire.retry import retry
from tripwire.urls import redact

log = logging.getLogger(__name__)


class WebhookUnavailable(Unavailable):
    """The receiver did not answer, or answered 5xx or 429: worth another attempt."""


class Webhook:
    def __init__(self, url: str, *, timeout_s: float, attempts: int, queue_size: int = 256) -> None:
        self.url = url
        self.attempts = attempts
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_size)
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook")

    def send(self, alert: dict[str, Any]) -> None:
        """Queue an alert; never blocks."""
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()  # else join() (close's drain) never returns
            self.dropped += 1
            log.warning("webhook %s: queue full, dropped the oldest alert", redact(self.url))
        self._queue.put_nowait(alert)

    async def _post(self, alert: dict[str, Any]) -> None:
        try:
            await retry(
                lambda: self._attempt(alert), first_s=0.5, max_s=30.0, attempts=self.attempts
            )
        except WebhookUnavailable as exc:
            self.failed += 1
            log.warning(
                "webhook %s: alert not delivered after %d attempts (%s)",
                redact(self.url),
                self.attempts,
                exc,
            )

    async def _attempt(self, alert: dict[str, Any]) -> None:
        try:
            response = await self._client.post(self.url, json=alert)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise WebhookUnavailable(type(exc).__name__) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise WebhookUnavailable(f"HTTP {response.status_code}")
        if response.is_success:
            self.delivered += 1
        else:  # a 4xx will not get better by retrying
            self.failed += 1
            log.warning(
                "webhook %s refused an alert: HTTP %d", redact(self.url), response.status_code
            )

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            await self._post(alert)
            self._queue.task_done()

    async def close(self, drain_s: float = 2.0) -> None:
        """Give queued alerts ``drain_s`` to go out, then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()
