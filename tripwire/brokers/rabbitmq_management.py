"""Queue depth from the RabbitMQ management HTTP API (what KEDA's ``protocol: http`` reads)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from tripwire.errors import BrokerError, BrokerUnavailable
from tripwire.urls import scrub

MANAGEMENT_PORT = 15672


class Management:
    """GET /api/queues/<vhost>/<queue> with Basic auth, off the event loop."""

    def __init__(
        self,
        amqp_url: str,
        override: str | None,
        credentials: tuple[str, str],
        vhost: str,
        queue: str,
        timeout_s: float,
    ) -> None:
        user, password = credentials
        parts = urlsplit(override or amqp_url)
        host = parts.hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        if override:
            if parts.username:
                user, password = unquote(parts.username), unquote(parts.password or "")
            netloc = f"{host}:{parts.port}" if parts.port else host
            base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        else:  # same host as AMQP, default management port, same credentials
            base = f"http://{host}:{MANAGEMENT_PORT}"
        self.base = base
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._url = f"{base}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"
        self._where = f"rabbitmq management API at {base}: queue {queue} in vhost {vhost!r}"
        self._secrets = (amqp_url, override or "")
        self._timeout_s = timeout_s

    async def messages(self) -> int | None:
        """Ready + unacknowledged; None while the queue has no statistics yet (first ~5 s).

        Raises BrokerUnavailable when the API cannot be reached: the caller must not fall
        back to a ready-only count that hides in-flight work from the scaler.
        """
        info = await asyncio.to_thread(self._get)
        messages = info.get("messages")
        return messages if isinstance(messages, int) else None

    def _get(self) -> dict[str, Any]:
        request = urllib.request.Request(self._url, headers={"Authorization": self._auth})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                info = json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise BrokerError(f"{self._where}: not found") from None
            if exc.code in (401, 403):
                raise BrokerError(f"{self._where}: HTTP {exc.code}, credentials refused") from None
            raise BrokerUnavailable(f"{self._where}: HTTP {exc.code}; depth unknown") from None
        except (OSError, ValueError) as exc:  # refused, timed out, not JSON
            text = scrub(str(exc), *self._secrets)
            raise BrokerUnavailable(f"{self._where}: {text}; depth unknown") from None
        if not isinstance(info, dict):
            raise BrokerError(f"{self._where}: unexpected reply {type(info).__name__}")
        return info
