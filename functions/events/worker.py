"""The events loop: fetch results and event messages, write them, decide alerts, then ack.

For every batch, in this order: parse (a message that breaks the contract is dead-lettered
with its reason) -> one database transaction for the whole batch (records, alert rules) ->
new alerts published to the broker and handed to the notifiers -> ack. While the database
is down the batch is held and retried with backoff (its ack deadline extended), so nothing
is acked before it is written and nothing is lost. A message the database refuses for good
is found by writing the batch one message at a time, and dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from functions.events.alerts import AlertRules, RaisedAlert
from functions.events.documents import Links, alert_document, encode, event_notice
from functions.events.metrics import EventsMetrics
from functions.events.mqtt import MqttNotifier
from functions.events.webhook import Webhook
from tripwire.brokers import Broker, Message, holding
from tripwire.camera_config import CamerasFile
from tripwire.contract import Header, alerts_subject
from tripwire.errors import BrokerError, ContractError, StoreError, StoreUnavailable
from tripwire.event_messages import (
    CameraStatus,
    EventClosed,
    EventOpened,
    FrameResult,
    Incoming,
    parse_incoming,
)
from tripwire.eventstore import Store
from tripwire.eventstore.tables import alerts
from tripwire.eventstore.writer import (
    end_stale,
    record_close,
    record_open,
    record_results,
    record_status,
)
from tripwire.retry import retry
from tripwire.settings import EventsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Counts:
    batches: int = 0
    acked: int = 0
    results: int = 0
    duplicates: int = 0
    dead: int = 0
    alerts: int = 0
    retries: int = 0


@dataclass
class Written:
    """What one transaction produced, to announce once it is committed."""

    alerts: list[RaisedAlert] = field(default_factory=list)
    notices: list[tuple[str, str, str, int]] = field(default_factory=list)  # kind, cam, id, ns


def _order(item: tuple[Message, Incoming]) -> tuple[str, int]:
    message = item[1]
    if isinstance(message, FrameResult | EventOpened | EventClosed):
        return message.camera, message.capture_ns
    return message.camera, message.last_frame_ns


@dataclass
class EventsFunction:
    settings: EventsSettings
    cameras: CamerasFile
    broker: Broker
    store: Store
    metrics: EventsMetrics = field(default_factory=EventsMetrics)
    webhook: Webhook | None = None
    mqtt: MqttNotifier | None = None
    counts: Counts = field(default_factory=Counts)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rules = AlertRules(self.cameras.alerts, {c.id: c for c in self.cameras.cameras})
        self.links = Links(str(self.settings.console_url))

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; sweep timeouts and unsent alerts now and then."""
        s = self.settings
        next_sweep = 0.0
        while not self.stopping:
            if time.monotonic() >= next_sweep:
                await self.sweep()
                next_sweep = time.monotonic() + s.sweep_interval_s
            try:
                batch = await self.broker.fetch(s.batch_size, s.fetch_wait_s)
            except BrokerError as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(min(s.fetch_wait_s, 1.0))
                continue
            if batch:
                await self.process(batch)

    async def process(self, batch: Sequence[Message]) -> None:
        parsed: list[tuple[Message, Incoming]] = []
        for message in batch:
            if message.deliveries > self.settings.max_deliveries:
                await self._dead(
                    message,
                    f"delivered {message.deliveries} times "
                    f"(max_deliveries {self.settings.max_deliveries})",
                )
                continue
            try:
                parsed.append((message, parse_incoming(message.subject, message.body)))
            except ContractError as exc:
                await self._dead(message, f"bad message: {exc}")
        if not parsed:
            return
        parsed.sort(key=_order)
        started = time.perf_counter()
        try:
            written = await self._holding(parsed, self._writer([m for _, m in parsed]))
        except StoreError as exc:  # one of them is refused for good: find it
            log.warning("batch refused (%s); writing its messages one by one", exc)
            written = Written()
            for message, incoming in parsed:
                try:
                    one = await self._holding([(message, incoming)], self._writer([incoming]))
                except StoreError as why:
                    await self._dead(message, f"events db refused it: {why}")
                    continue
                written.alerts += one.alerts
                written.notices += one.notices
        except _Released:
            return
        self.metrics.write_seconds.observe(time.perf_counter() - started)
        await self._announce(written)
        for message, _ in parsed:
            try:
                await message.ack()
                self.counts.acked += 1
            except BrokerError as exc:  # written already: its redelivery changes nothing
                log.warning("ack failed (%s); it will be redelivered", exc)
        self.counts.batches += 1
        self.metrics.messages.inc(len(parsed))

    def _writer(self, messages: Sequence[Incoming]) -> Callable[[], Written]:
        return lambda: self._write(messages)

    def _write(self, messages: Sequence[Incoming]) -> Written:
        """One transaction (in a worker thread): every message, then the alert rules."""
        written = Written()
        now = time.time_ns()
        found = [m for m in messages if isinstance(m, FrameResult)]
        with self.store.begin() as conn:
            self.rules.serialize(conn, [m.camera for m in found])
            for message in messages:
                if isinstance(message, EventOpened):
                    record_open(conn, message, now)
                    written.notices.append(
                        ("new", message.camera, message.event_id, message.capture_ns)
                    )
                elif isinstance(message, EventClosed):
                    record_close(conn, message, now)
                    written.notices.append(
                        ("end", message.camera, message.event_id, message.capture_ns)
                    )
                elif isinstance(message, CameraStatus):
                    record_status(conn, message, now)
            new = record_results(conn, found, now)
            pending = {(r.camera, r.capture_ns, r.seq) for r in new}
            for result in new:  # the batch is in capture order per camera
                pending.discard((result.camera, result.capture_ns, result.seq))
                written.alerts += self.rules.evaluate(conn, result, now, pending)
        self.counts.results += len(new)
        self.counts.duplicates += len(found) - len(new)
        self.metrics.results.inc(len(new))
        self.metrics.duplicates.inc(len(found) - len(new))
        return written

    async def _holding(self, parsed: Sequence[tuple[Message, Incoming]], op: Callable[[], T]) -> T:
        """Run ``op`` in a thread until the database takes it; hold the messages meanwhile."""

        def on_retry(exc: BaseException, _attempt: int, wait_s: float) -> None:
            self.counts.retries += 1
            self.metrics.db_retries.inc()
            if not self.stopping:
                log.warning("events db unavailable, holding %d message(s), retry in %.1fs: %s",
                            len(parsed), wait_s, exc)  # fmt: skip

        async def hold(wait_s: float) -> None:
            if self.stopping:
                for message, _ in parsed:
                    with contextlib.suppress(BrokerError):
                        await message.nak()
                raise _Released from None
            await holding.hold((message for message, _ in parsed), self._stopping, wait_s)

        return await retry(
            lambda: asyncio.to_thread(op),
            first_s=self.settings.retry_backoff_s,
            max_s=self.settings.retry_max_s,
            on_retry=on_retry,
            sleep=hold,
            transient=StoreUnavailable,
        )

    async def _announce(self, written: Written) -> None:
        for kind, camera, event_id, capture_ns in written.notices:
            if self.mqtt is not None:
                self.mqtt.event(
                    camera, kind, event_notice(kind, camera, event_id, capture_ns, self.links)
                )
        published: list[str] = []
        for alert in written.alerts:
            if await self._send_alert(alert.row):
                published.append(alert.row["id"])
        if published:
            with contextlib.suppress(StoreError):  # unmarked ones are sent again by sweep
                await asyncio.to_thread(self._mark_published, published)

    async def _send_alert(self, row: dict[str, Any]) -> bool:
        """Publish one alert (durable) and hand it to the notifiers; False if the broker failed."""
        doc = alert_document(row, self.links)
        headers = {
            Header.ID: f"alert-{row['id']}",
            Header.CAMERA: row["camera"],
            Header.CONTENT_TYPE: "application/json",
        }
        try:
            await self.broker.publish(alerts_subject(row["camera"]), encode(doc), headers)
        except BrokerError as exc:
            log.warning("alert %s not published yet (%s); the sweep retries it", row["id"], exc)
            return False
        self.counts.alerts += 1
        self.metrics.alerts.labels(row["kind"]).inc()
        if self.webhook is not None:
            self.webhook.send(doc)
        if self.mqtt is not None:
            self.mqtt.alert(row["camera"], doc)
        return True

    def _mark_published(self, ids: Sequence[str]) -> None:
        with self.store.begin() as conn:
            conn.execute(
                alerts.update().where(alerts.c.id.in_(ids)).values(published_ns=time.time_ns())
            )

    async def sweep(self) -> None:
        """End silent events by timeout; send alerts whose publish did not go through."""
        try:
            ended, unsent = await asyncio.to_thread(self._sweep)
        except StoreError as exc:
            log.warning("sweep skipped: %s", exc)
            return
        if ended:
            log.info("%d open event(s) ended by timeout (no close within %ss)",
                     ended, self.settings.event_timeout_s)  # fmt: skip
        await self._announce(Written(alerts=[RaisedAlert(dict(r)) for r in unsent]))

    def _sweep(self) -> tuple[int, list[Any]]:
        now = time.time_ns()
        with self.store.begin() as conn:
            ended = end_stale(conn, now, self.settings.event_timeout_s)
            unsent = (
                conn.execute(
                    sa.select(alerts)
                    .where(
                        alerts.c.published_ns.is_(None), alerts.c.raised_ns < now - 5_000_000_000
                    )
                    .limit(100)
                )
                .mappings()
                .all()
            )
        return ended, list(unsent)

    async def _dead(self, message: Message, reason: str) -> None:
        if await holding.dead_letter(message, reason):
            self.counts.dead += 1
            self.metrics.dead_letters.inc()


class _Released(Exception):
    """The messages went back to the broker (stopping during an outage)."""
