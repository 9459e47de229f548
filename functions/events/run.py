"""Run one events function process: database, broker feed, notifiers, metrics, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from prometheus_client import start_http_server

from functions.events.metrics import EventsMetrics
from functions.events.mqtt import MqttNotifier
from functions.events.webhook import Webhook
from functions.events.worker import EventsFunction
from tripwire.broker_endpoint import resolve_broker
from tripwire.brokers import open_broker
from tripwire.camera_config import load_config
from tripwire.errors import StoreUnavailable
from tripwire.eventstore import Store
from tripwire.retry import log_retry, retry
from tripwire.settings import EventsSettings

log = logging.getLogger(__name__)


async def _migrated(store: Store, stop: asyncio.Event, retry_max_s: float) -> bool:
    """Upgrade the schema, waiting for a database that is not up yet; False if stopped."""

    async def wait(delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            raise _Stopped

    if stop.is_set():
        return False
    try:
        await retry(
            lambda: asyncio.to_thread(store.migrate),
            first_s=0.5,
            max_s=retry_max_s,
            on_retry=log_retry(log, "events db not reachable yet"),
            sleep=wait,
            transient=StoreUnavailable,
        )
    except _Stopped:
        return False
    return True


class _Stopped(Exception):
    """Stopped while waiting for the database."""


async def run_events(settings: EventsSettings) -> int:
    cameras = load_config(settings.config_path())
    stop = asyncio.Event()
    function: EventsFunction | None = None

    def on_signal() -> None:
        stop.set()
        if function is not None:
            function.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    metrics = EventsMetrics()
    server, _ = start_http_server(
        settings.metrics_port, settings.metrics_host, registry=metrics.registry
    )
    log.info("events metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)
    store = Store.from_settings(settings.events_db, settings.home)
    endpoint = resolve_broker(settings)
    broker = open_broker(settings.broker, endpoint.url, feed="events")
    webhook = mqtt = None
    try:
        if not await _migrated(store, stop, settings.retry_max_s):
            return 0
        log.info("events db %s at revision %s", store.display_url, store.revision())
        await broker.connect()
        if settings.webhook_url:
            webhook = Webhook(
                str(settings.webhook_url),
                timeout_s=settings.webhook_timeout_s,
                attempts=settings.webhook_attempts,
            )
            webhook.start()
        if settings.mqtt.url:
            mqtt = MqttNotifier(settings.mqtt, f"tripwire-events-{os.getpid()}")
            mqtt.start()
        function = EventsFunction(settings, cameras, broker, store, metrics, webhook, mqtt)
        if stop.is_set():
            function.stop()
        runner = asyncio.create_task(function.run())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if runner.done():
            runner.result()  # the loop ended on its own: an error, raised here
        try:
            await asyncio.wait_for(runner, settings.stop_timeout_s)
        except TimeoutError:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        c = function.counts
        log.info(
            "events stopped: %d acked, %d results (%d duplicates), %d alerts, %d dead-lettered",
            c.acked, c.results, c.duplicates, c.alerts, c.dead,
        )  # fmt: skip
    finally:
        if webhook is not None:
            await webhook.close()
        if mqtt is not None:
            await asyncio.to_thread(mqtt.close)
        await broker.close()
        endpoint.stop()
        store.close()
        server.shutdown()
    return 0
