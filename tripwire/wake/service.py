"""The ``tripwire cluster wake`` process: settings, broker subscription, health and metrics.

/healthz answers while the process serves; /readyz is 200 while the broker is connected and the
last API call (the start-up probe, then each check) reached the API server and was allowed;
/metrics is the Prometheus text of :class:`~tripwire.wake.controller.WakeMetrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from tripwire.brokers import Broker, open_broker
from tripwire.cluster import ClusterError
from tripwire.contract import WAKE_SUBJECT
from tripwire.errors import BrokerError, ConfigError
from tripwire.health_server import HealthServer
from tripwire.settings import CommonSettings
from tripwire.wake.controller import WakeController, WakeMetrics
from tripwire.wake.kube import KubeScaler, load_client

log = logging.getLogger(__name__)


class WakeSettings(CommonSettings):
    """The wake controller: which Deployments to wake, how often at most, where to report."""

    namespace: str = Field("tripwire", description="namespace of the Deployments")
    deployments: list[str] = Field(
        default_factory=lambda: ["tripwire-detector"],
        min_length=1,
        description="Deployments to wake; each one's ScaledObject has its name",
    )
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file; unset = in-cluster service account, else ~/.kube"
    )
    min_interval_s: float = Field(
        2.0, ge=0.05, le=60, description="at most one check per Deployment per this many seconds"
    )
    subject: str = Field(WAKE_SUBJECT, description="the wake subject the gateway publishes")
    metrics_host: str = Field("127.0.0.1", description="/metrics and /readyz listen address")
    metrics_port: int = Field(9110, ge=0, le=65535, description="0 = any free port")


async def listen(broker: Broker, subject: str, controller: WakeController) -> None:
    """Feed every wake on ``subject`` to the controller; resubscribe after a broker error."""
    while True:
        try:
            async for _ in broker.subscribe(subject):
                controller.wake()
            return  # the broker was closed
        except BrokerError as exc:  # KEDA's poll still scales; retry the subscription
            log.warning("wake subscription lost (%s); retrying", exc)
            await asyncio.sleep(1.0)


async def probe(scaler: KubeScaler, settings: WakeSettings, controller: WakeController) -> None:
    """Read each Deployment's /scale and ScaledObject once (no patch) until the API allows it:
    a wrong token or Role shows in /readyz at start instead of at the first motion."""
    while True:
        try:
            for name in settings.deployments:
                await asyncio.to_thread(scaler.replicas, name)
                await asyncio.to_thread(scaler.paused, name)
        except ClusterError as exc:
            controller.api_ok = False
            log.warning("API probe failed: %s", exc)
            await asyncio.sleep(5.0)
            continue
        controller.api_ok = True
        return


@dataclass
class Running:
    """A started wake controller: its pieces, for ``run_wake``, tests and benchmarks."""

    controller: WakeController
    health: HealthServer
    tasks: list[asyncio.Task[None]]


@contextlib.asynccontextmanager
async def running_wake(settings: WakeSettings) -> AsyncIterator[Running]:
    """Start the controller, yield it, stop it (broker closed, HTTP server down) on exit."""
    if not settings.broker.url:
        raise ConfigError("cluster wake needs a broker URL (--broker or TRIPWIRE_BROKER__URL)")
    client = load_client(str(settings.kubeconfig) if settings.kubeconfig else None)
    metrics = WakeMetrics()
    scaler = KubeScaler(
        client, settings.namespace, lambda call: metrics.requests.labels(call).inc()
    )
    controller = WakeController(
        [(name, name) for name in settings.deployments],
        scaler.wake,
        min_interval_s=settings.min_interval_s,
        metrics=metrics,
    )
    controller.api_ok = False  # until the probe succeeds
    # It only listens: it declares no model's consumer or queue.
    broker = open_broker(settings.broker, settings.broker.url, routes=())

    def ready() -> bool:
        ok = broker.connected and controller.api_ok
        controller.metrics.ready.set(1 if ok else 0)
        return ok

    health = HealthServer(controller.metrics.registry, ready, before_scrape=ready)
    tasks: list[asyncio.Task[None]] = []
    try:
        await health.start(settings.metrics_host, settings.metrics_port)
        await broker.connect()
        tasks = [
            asyncio.create_task(listen(broker, settings.subject, controller), name="listen"),
            asyncio.create_task(controller.run(), name="controller"),
            asyncio.create_task(probe(scaler, settings, controller), name="probe"),
        ]
        log.info(
            "wake controller: %s -> %s/%s, metrics on %s:%d",
            settings.subject,
            settings.namespace,
            ",".join(settings.deployments),
            settings.metrics_host,
            health.port,
        )
        yield Running(controller, health, tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.close()
        await health.stop()
        scaler.close()


async def run_wake(settings: WakeSettings, stop: asyncio.Event) -> int:
    """``tripwire cluster wake``: run until ``stop`` is set; a crashed part ends the process."""
    async with running_wake(settings) as running:
        waiter = asyncio.create_task(stop.wait())
        watched = running.tasks[:2]  # listen and controller run for good; the probe ends
        await asyncio.wait([waiter, *watched], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in watched:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise ClusterError(f"wake controller: {task.get_name()} failed") from (
                    task.exception()
                )
    return 0
