"""MQTT notifications, with the topics Home Assistant users know from NVRs.

- ``<prefix>/<camera>/events``: ``{"type": "new" | "end", "event": {...}}`` per motion event
- ``<prefix>/<camera>/alerts``: the alert document, with links to the event and snapshot
- ``<prefix>/available``: ``online`` / ``offline`` (retained; ``offline`` is the will)

paho-mqtt runs its network loop in its own thread and reconnects with backoff by itself;
``publish`` only queues (bounded), so a broker that is down never holds up the events
function. Messages queued while it is down go out once it is back, up to ``queue_size``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tripwire.settings import MqttSettings
from tripwire.urls import redact

log = logging.getLogger(__name__)


class MqttNotifier:
    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        assert settings.url is not None
        self.settings = settings
        self.where = redact(settings.url)
        self.sent = 0
        self.dropped = 0
        url = urlsplit(settings.url)
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        if url.username:
            self._client.username_pw_set(
                unquote(url.username), unquote(url.password) if url.password else None
            )
        if url.scheme == "mqtts":
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.max_queued_messages_set(settings.queue_size)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (8883 if url.scheme == "mqtts" else 1883)

    def topic(self, *parts: str) -> str:
        return "/".join((self.settings.topic_prefix, *parts))

    def start(self) -> None:
        # connect_async: the first connection is made by the loop thread, with its backoff,
        # so a broker that is down at start-up delays nothing here.
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt %s refused the connection: %s", self.where, reason)
            return
        log.info("mqtt %s connected", self.where)
        client.publish(self.topic("available"), "online", qos=1, retain=True)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt %s disconnected (%s); reconnecting", self.where, reason)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Queue one message; never blocks."""
        info = self._client.publish(
            topic, json.dumps(payload, separators=(",", ":")), qos=self.settings.qos
        )
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            log.warning("mqtt %s: queue full, dropped a message to %s", self.where, topic)
        else:
            self.sent += 1

    def event(self, camera: str, kind: str, event: dict[str, Any]) -> None:
        self.publish(self.topic(camera, "events"), {"type": kind, "event": event})

    def alert(self, camera: str, alert: dict[str, Any]) -> None:
        self.publish(self.topic(camera, "alerts"), alert)

    def close(self) -> None:
        info = self._client.publish(self.topic("available"), "offline", qos=1, retain=True)
        if self._client.is_connected():
            with contextlib.suppress(ValueError, RuntimeError):
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()
