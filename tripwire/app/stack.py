"""``tripwire up``: the whole pipeline on one machine.

One process supervises: the broker (embedded NATS unless a URL is configured), the events
function and the console (child processes, over the events database: SQLite under
``$TRIPWIRE_HOME`` unless ``TRIPWIRE_EVENTS_DB__URL`` names one), the gateway with the
motion function (a child process), and the local scaler, which starts and stops
``tripwire detector`` worker processes from the same ScaledObject KEDA uses on a cluster,
and starts the first one at once when the gateway publishes a wake signal. Every child runs
in its own session, so a Ctrl-C reaches this supervisor only, and it stops the children in
order: gateway first (no new frames), then the workers (each finishes its batch) and the
prefork standby they are forked from (``prefork``, on unless ``--no-prefork``), then the
events function (what it has not written stays on the broker for its next start), the
console, then the broker. Nothing is left running.

With a ``models:`` section in the config each model gets its own worker pool and its own
scaler (its generated ScaledObject, :func:`tripwire.model_manifests.model_policies`) reading
its own consumer's backlog; pools of one model family fork from one shared standby
(:mod:`tripwire.app.model_pools`). A model
is swapped by name (new weights in the config, same name: :meth:`Stack.swap`, or SIGHUP to
``tripwire up``): its workers drain (finish their batch, return the rest to its consumer)
while the scaler starts replacements that load the new weights; no frame is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tripwire import timeline
from tripwire.app.model_pools import ModelPools, changed_models
from tripwire.broker_endpoint import BrokerEndpoint, resolve_broker
from tripwire.brokers import Broker, open_broker, routes_of
from tripwire.camera_config import CamerasFile, load_config
from tripwire.contract import WAKE_SUBJECT
from tripwire.errors import BrokerError, TripwireError
from tripwire.scaler import Scaler, ScalingPolicy, load_policy, policy_file
from tripwire.scaler.executor import LocalScaler, WorkerPool
from tripwire.settings import DetectorSettings, GatewaySettings
from tripwire.urls import redact

log = logging.getLogger(__name__)


class StackError(TripwireError):
    """A part of the local stack did not start."""


@dataclass
class StackOptions:
    gateway: GatewaySettings
    detector: DetectorSettings
    policy: Path | None = None  # default: deploy/keda/<broker>/scaledobject.yaml
    timeline_path: Path | None = None
    push_activation: bool = True  # start the first worker on the gateway's wake signal
    prefork: bool = True  # fork workers from a standby that has done their imports
    console_port: int = 8090  # the events API (0 = any free port)


@dataclass
class Stack:
    """The running pipeline; use :func:`running_stack`."""

    options: StackOptions
    endpoint: BrokerEndpoint
    broker: Broker
    policy: ScalingPolicy
    scaler: LocalScaler
    gateway_url: str
    gateway: asyncio.subprocess.Process
    console_url: str
    started_ns: int = field(default_factory=time.time_ns)
    wakes: int = 0
    # Set when the scaler stopped on an error no restart can fix (a model that cannot load).
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    # Every model's scaler by name ({"default": scaler} without a models section).
    models: dict[str, LocalScaler] = field(default_factory=dict)
    config: CamerasFile = field(default_factory=CamerasFile)

    async def swap(self, name: str) -> int:
        """Roll model ``name`` onto what the config file now says (new weights, same name):
        its workers drain and the scaler starts replacements that load the new weights.
        Returns the number of workers asked to stop. Bad new weights are refused first."""
        from functions.detector.model import ModelOptions, check_weights

        local = self.models.get(name)
        if local is None:
            raise StackError(f"no model {name!r} runs here ({sorted(self.models)})")
        config = load_config(self.options.gateway.config_path())
        model = config.model(name)
        if model is None:
            raise StackError(f"model {name!r} is no longer in the config; nothing swapped")
        check_weights(ModelOptions(model.weights, allow_download=False))
        self.config = config
        timeline.record("model_swap", model=name, weights=model.weights)
        return local.pool.drain()

    @property
    def replicas(self) -> int:
        return self.scaler.scaler.replicas

    @property
    def running_workers(self) -> int:
        return self.scaler.pool.running


def _child_env(options: StackOptions, broker_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TRIPWIRE_BROKER__URL"] = broker_url
    env["TRIPWIRE_HOME"] = str(options.gateway.home)
    config = options.gateway.config_path()
    if config is not None:
        env["TRIPWIRE_CONFIG"] = str(config)
    if options.timeline_path is not None:
        env[timeline.ENV] = str(options.timeline_path)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def _start_child(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    ready_url: str | None = None,
    port: int | None = None,
) -> asyncio.subprocess.Process:
    """``tripwire <name>`` as a child in its own session, logging to ``<log_dir>/<name>.log``;
    waits for ``ready_url`` to answer 200 when given, from the child itself when it should
    listen on ``port``."""
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    log_file = log_dir / f"{name}.log"
    with log_file.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tripwire.app.cli",
            name,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    if ready_url is None:
        return process
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise StackError(f"{name} exited with {process.returncode}; see {log_file}")
            with contextlib.suppress(httpx.HTTPError):
                # Ready only when the answer comes from the child started here: another
                # program that took the port meanwhile must not be announced as ours.
                ready = (await client.get(ready_url)).status_code == 200
                if ready and (port is None or _listens_on(process.pid, port)):
                    return process
            await asyncio.sleep(0.1)
    await _terminate(process, 5)
    raise StackError(f"{name} not ready within 60 s; see {log_file}")


def _port(host: str, port: int, what: str) -> int:
    """``port``, or a free one for 0; a port another program holds is refused."""
    if port == 0:
        from tripwire.embedded_nats import free_port

        return free_port()
    if not _port_free(host, port):
        raise StackError(
            f"{what} port {host}:{port} is in use by another program "
            "(choose another, or 0 for any free port)"
        )
    return port


async def _start_gateway(
    options: StackOptions, env: dict[str, str], log_dir: Path
) -> tuple[asyncio.subprocess.Process, str]:
    settings = options.gateway
    port = _port(settings.host, settings.port, "gateway (--port)")
    env = {
        **env,
        "TRIPWIRE_HOST": settings.host,
        "TRIPWIRE_PORT": str(port),
        "TRIPWIRE_MOTION_GATE": str(settings.motion_gate).lower(),
    }
    url = f"http://{settings.host}:{port}"
    return await _start_child("gateway", env, log_dir, f"{url}/readyz", port), url


async def _start_events_and_console(
    options: StackOptions, env: dict[str, str], log_dir: Path
) -> tuple[asyncio.subprocess.Process, asyncio.subprocess.Process, str]:
    host = options.gateway.host
    port = _port(host, options.console_port, "console (--console-port)")
    url = f"http://{host}:{port}"
    events_env = {
        **env,
        "TRIPWIRE_METRICS_PORT": "0",
        "TRIPWIRE_CONSOLE_URL": env.get("TRIPWIRE_CONSOLE_URL", url),
    }
    events = await _start_child("events", events_env, log_dir)
    console_env = {**env, "TRIPWIRE_HOST": host, "TRIPWIRE_CONSOLE_PORT": str(port)}
    try:
        console = await _start_child("console", console_env, log_dir, f"{url}/readyz", port)
    except StackError:
        await _terminate(events, 10)
        raise
    return events, console, url


def _port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a listening socket on ``port``."""
    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


async def _terminate(process: asyncio.subprocess.Process, grace_s: float) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def detector_command(settings: DetectorSettings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tripwire.app.cli",
        "detector",
        "--weights",
        settings.weights,
        "--metrics-port",
        "0",
    ] + (["--task", settings.task] if settings.task else [])


async def _listen_for_wakes(stack_broker: Broker, on_wake: Callable[[], None]) -> None:
    while True:
        try:
            async for _ in stack_broker.subscribe(WAKE_SUBJECT):
                on_wake()
            return  # the broker was closed
        except BrokerError as exc:  # polling still scales; retry the subscription
            log.warning("wake subscription lost (%s); retrying", exc)
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def running_stack(options: StackOptions) -> AsyncIterator[Stack]:
    """Start every part, yield the running stack, stop everything in order on exit."""
    # A model that cannot load at all fails here, before anything starts, instead of in
    # every worker the scaler would start (only a weights check: no import of the model stack).
    from functions.detector.model import ModelOptions, check_weights

    detector = options.detector
    config = load_config(options.gateway.config_path())
    for weights in [m.weights for m in config.models] or [detector.weights]:
        check_weights(ModelOptions(weights, allow_download=detector.allow_download))
    home = options.gateway.home
    log_dir = home / "logs"
    if options.timeline_path is not None:  # the scaler records here too, not only children
        os.environ[timeline.ENV] = str(options.timeline_path)
    endpoint = resolve_broker(options.gateway)
    policy_path = options.policy or policy_file(
        "rabbitmq" if endpoint.url.startswith("amqp") else "nats"
    )
    policy = load_policy(policy_path)
    routes = routes_of(config)  # every model's consumer exists before the gateway starts
    broker = open_broker(options.gateway.broker, endpoint.url, routes=routes)
    gateway: asyncio.subprocess.Process | None = None
    events: asyncio.subprocess.Process | None = None
    console: asyncio.subprocess.Process | None = None
    pools = ModelPools()
    locals_ = pools.scalers
    tasks: list[asyncio.Task[None]] = []
    try:
        await broker.connect()
        env = _child_env(options, endpoint.url)
        if not config.models:
            pool = WorkerPool(
                detector_command(options.detector),
                env,
                options.detector.stop_timeout_s,
                log_dir,
                prefork=options.prefork,
            )
            await pool.start()  # the standby's imports overlap the gateway's start
            locals_["default"] = LocalScaler(Scaler(policy), broker.depth, pool)
        else:
            policy = await pools.start(
                config,
                (options.gateway.broker, endpoint.url, routes),
                detector_command(options.detector),
                env,
                options.detector.stop_timeout_s,
                log_dir,
                options.prefork,
            )
        local = next(iter(locals_.values()))
        events, console, console_url = await _start_events_and_console(options, env, log_dir)
        gateway, url = await _start_gateway(options, env, log_dir)
        stack = Stack(options, endpoint, broker, policy, local, url, gateway, console_url)
        stack.models, stack.config = locals_, config

        def on_wake() -> None:
            stack.wakes += 1
            for each in locals_.values():
                each.wake()

        def on_scaler_done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and (exc := task.exception()) is not None:
                stack.error = str(exc)  # WorkerFatal: the worker's own words
                stack.failed.set()

        for name, each in locals_.items():
            tasks.append(asyncio.create_task(each.run(), name=f"scaler-{name}"))
            tasks[-1].add_done_callback(on_scaler_done)
        scalers = list(tasks)
        if options.push_activation:
            tasks.append(asyncio.create_task(_listen_for_wakes(broker, on_wake), name="wakes"))
        log.info(
            "tripwire up: gateway %s, broker %s, policy %s (polling %ss, cooldown %ss)",
            url,
            redact(endpoint.url),
            policy_path,
            policy.polling_interval_s,
            policy.cooldown_period_s,
        )
        yield stack
    finally:
        if gateway is not None:
            await _terminate(gateway, 10)
        if tasks:
            for each in locals_.values():
                each.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*scalers, return_exceptions=True),
                    options.detector.stop_timeout_s + 15,
                )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for each in locals_.values():  # done by the scaler's run already, unless never started
            await each.pool.stop_all()
        await pools.close()
        for child in (events, console):
            if child is not None:
                await _terminate(child, 15)
        await broker.close()
        endpoint.stop()


async def _swap_changed(stack: Stack) -> None:
    """SIGHUP: swap every model whose entry in the config file changed (same name)."""
    try:
        config = load_config(stack.options.gateway.config_path())
    except TripwireError as exc:
        log.error("config not reloaded: %s", exc)
        return
    for name in changed_models(stack.config, config):
        try:
            drained = await stack.swap(name)
        except TripwireError as exc:
            log.error("model %s not swapped: %s", name, exc)
            continue
        log.info("model %s swapped (%d worker(s) draining)", name, drained)


async def run_up(options: StackOptions) -> int:
    """``tripwire up``: run until Ctrl-C / SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_stack(options) as stack:
        reloads: set[asyncio.Task[None]] = set()

        def on_hangup() -> None:
            task = asyncio.create_task(_swap_changed(stack))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        print(
            f"tripwire up: gateway {stack.gateway_url} (POST /v1/cameras/<id>/frames); "
            f"console {stack.console_url}/ (events API /v1/events; operator token: "
            f"{options.gateway.home / 'operator-token'}); "
            f"detectors scale 0..{stack.policy.max_replicas} on queue depth; Ctrl-C stops"
        )
        failure = asyncio.create_task(stack.failed.wait())
        failure.add_done_callback(lambda _: stop.set())
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10)
            depth = stack.scaler.last_metric
            log.info(
                "replicas %d (running %d), queue depth %s, wakes %d",
                stack.replicas,
                stack.running_workers,
                "?" if depth is None else depth,
                stack.wakes,
            )
        failure.cancel()
        if stack.error is None:
            print("tripwire up: stopping (gateway, then detectors finish their batches)")
    if stack.error is not None:
        raise StackError(stack.error)
    return 0
