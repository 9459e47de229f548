"""The local scaler's executor: detector worker processes that follow the Scaler's decisions.

The same ScaledObject that KEDA runs on a cluster drives this loop on one machine: poll the
broker depth every pollingInterval, let :class:`~tripwire.scaler.rules.Scaler` decide, and
converge the number of ``tripwire detector`` processes to the decision. Scale-in sends
SIGTERM and waits for the detector's graceful stop (batch in hand finished and acked, the
rest released). A crashed worker is replaced, after an exponential backoff while workers keep
crashing (like Kubernetes' CrashLoopBackOff), and the cause (the last line of its log) is
logged; a worker that exits with ``MODEL_UNAVAILABLE_EXIT`` (its model cannot load at all)
stops the pool with :class:`WorkerFatal` instead, since no restart can fix it. A wake (push
activation) starts the first worker without waiting for the next poll.

With ``prefork`` the pool keeps a standby process beside it (:mod:`tripwire.scaler.prefork`,
``tripwire.app.zygote``) that has done a worker's imports, and forks workers from it:
a cold start then begins at the model load instead of at ``import torch``. The standby is
started with the pool (:meth:`WorkerPool.start`, the scaler's first step), replaced at the
next step when it dies (its workers live on), and stopped by :meth:`WorkerPool.stop_all`
after the workers. When it cannot serve a start, the worker is started the ordinary way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tripwire import timeline
from tripwire.errors import MODEL_UNAVAILABLE_EXIT, BrokerError, TripwireError
from tripwire.scaler.prefork import Zygote, ZygoteError
from tripwire.scaler.rules import Scaler

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class WorkerFatal(TripwireError):
    """A worker cannot start at all (its model cannot load); the message is its cause."""


def crash_cause(path: Path | None, limit: int = 500) -> str:
    """The cause of a crash as the worker wrote it, from the end of its log: the command's
    own error (``tripwire detector: ...``, with the lines it spans), else the last line (a
    traceback's exception)."""
    if path is None:
        return "no log"
    try:
        with path.open("rb") as log_file:
            log_file.seek(max(0, path.stat().st_size - 8192))
            lines = [x.strip() for x in log_file.read().decode(errors="replace").splitlines()]
    except OSError:
        return f"no log at {path}"
    lines = [x for x in lines if x]
    if not lines:
        return "its log is empty"
    start = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("tripwire ")),
        len(lines) - 1,
    )
    return " ".join(lines[start:])[:limit]


class WorkerProcess(Protocol):
    """A running worker: an ``asyncio.subprocess.Process`` or a forked ``ForkedWorker``."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def send_signal(self, sig: int, /) -> None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


@dataclass
class Worker:
    process: WorkerProcess
    started_at: float
    stopping: bool = False
    log_path: Path | None = None


@dataclass
class WorkerPool:
    """Start and stop worker processes; ``command`` runs one worker.

    With ``prefork``, ``command`` must be ``<python> -m tripwire.app.cli ARGS...``: workers are
    forked from a standby that runs ``tripwire ARGS...`` in the child.
    """

    command: Sequence[str]
    env: dict[str, str]
    stop_timeout_s: float
    log_dir: Path
    prefork: bool = False
    # Crash loop: the first crash is replaced at once, the second after crash_backoff_s, then
    # the wait doubles up to crash_backoff_max_s; a worker alive healthy_after_s ends the streak.
    crash_backoff_s: float = 1.0
    crash_backoff_max_s: float = 60.0
    healthy_after_s: float = 30.0
    clock: Clock = time.monotonic
    workers: list[Worker] = field(default_factory=list)
    started: int = 0
    crashed: int = 0
    crash_streak: int = 0
    last_crash: str | None = None  # the cause of the last crash, from the worker's log
    start_after: float = 0.0  # clock time before which no worker is started (backoff)
    # A standby shared with other pools whose workers need the same imports (one model
    # family): this pool forks from it but leaves starting and stopping it to its owner.
    shared_standby: Zygote | None = None
    # The model this pool serves (a ``models:`` section): its timeline events carry it, so a
    # replica timeline per model reads from the timeline; None (one model) leaves them as-is.
    model: str | None = None
    _stopping: set[asyncio.Task[None]] = field(default_factory=set)
    standby: Zygote | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.prefork:
            return
        if list(self.command[1:3]) != ["-m", "tripwire.app.cli"]:
            raise ValueError(
                f"prefork runs tripwire commands only, not {' '.join(self.command[:3])!r}"
            )
        self.standby = self.shared_standby or Zygote(
            self.command[0],
            self.env,
            self.log_dir / "zygote.log",
            tags={} if self.model is None else {"models": [self.model]},
        )

    def record(self, event: str, **fields: object) -> None:
        """A timeline event of this pool: with the model's name when it serves a named one."""
        if self.model is not None:
            fields["model"] = self.model
        timeline.record(event, **fields)

    async def start(self) -> None:
        """Start the prefork standby now, so that it is ready before the first cold start."""
        if self.standby is not None:
            await self.standby.ensure_running()

    @property
    def running(self) -> int:
        """Workers alive and not asked to stop."""
        return sum(1 for w in self.workers if not w.stopping and w.process.returncode is None)

    def reap(self) -> None:
        """Forget workers that exited; count those that exited unasked as crashed.

        Raises WorkerFatal when one exited because its model cannot load.
        """
        now = self.clock()
        for worker in list(self.workers):
            code = worker.process.returncode
            if code is None:
                if now - worker.started_at >= self.healthy_after_s:
                    self.crash_streak = 0
                continue
            self.workers.remove(worker)
            if worker.stopping:
                continue
            self.crashed += 1
            cause = crash_cause(worker.log_path)
            self.last_crash = cause
            pid = worker.process.pid
            self.record("worker_crashed", worker_pid=pid, code=code, cause=cause)
            if code == MODEL_UNAVAILABLE_EXIT:
                raise WorkerFatal(f"detector worker cannot load its model: {cause}")
            self.crash_streak += 1
            # As the kubelet does: the first crash is replaced at once, then the wait doubles.
            delay = (
                0.0
                if self.crash_streak == 1
                else min(
                    self.crash_backoff_max_s, self.crash_backoff_s * 2 ** (self.crash_streak - 2)
                )
            )
            self.start_after = now + delay
            log.warning(
                "detector worker pid %d exited with %d: %s (see %s); restarting in %.0fs"
                " (crash %d in a row)",
                pid,
                code,
                cause,
                worker.log_path,
                delay,
                self.crash_streak,
            )

    async def converge(self, desired: int) -> None:
        self.reap()
        if self.standby is not None:
            await self.standby.ensure_running()
        # In a crash loop, the replacement waits out its backoff (later steps start it).
        while self.running < desired and self.clock() >= self.start_after:
            await self._start()
        extra = self.running - desired
        # Newest first: the oldest workers are warm and most likely mid-batch elsewhere.
        for worker in sorted(self.workers, key=lambda w: -w.started_at):
            if extra <= 0:
                break
            if not worker.stopping and worker.process.returncode is None:
                self._stop(worker)
                extra -= 1

    async def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"detector-{self.started}.log"
        process: WorkerProcess | None = None
        if self.standby is not None:
            try:
                process = await self.standby.spawn(self.command[3:], self.env, log_path)
            except ZygoteError as exc:
                log.warning("%s; starting the worker from scratch", exc)
        forked = process is not None
        if process is None:
            with log_path.open("ab") as out:
                process = await asyncio.create_subprocess_exec(
                    *self.command,
                    env=self.env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
        self.started += 1
        self.workers.append(Worker(process, self.clock(), log_path=log_path))
        log.info("started detector worker pid %d%s", process.pid, " (forked)" if forked else "")
        self.record("worker_started", worker_pid=process.pid, forked=forked)

    def _stop(self, worker: Worker) -> None:
        worker.stopping = True
        task = asyncio.create_task(self._terminate(worker))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _terminate(self, worker: Worker) -> None:
        process = worker.process
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        self.record("worker_stopping", worker_pid=process.pid)
        try:
            # The detector bounds its own graceful stop; the margin covers interpreter exit.
            await asyncio.wait_for(process.wait(), self.stop_timeout_s + 10)
        except TimeoutError:
            log.warning("worker pid %d ignored SIGTERM; killing it", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("detector worker pid %d stopped (exit %s)", process.pid, process.returncode)
        self.record("worker_stopped", worker_pid=process.pid, code=process.returncode)

    def drain(self) -> int:
        """Ask every worker to stop gracefully (a rolling swap): the next :meth:`converge`
        starts their replacements while they finish. Returns how many were asked."""
        live = [w for w in self.workers if not w.stopping and w.process.returncode is None]
        for worker in live:
            self._stop(worker)
        return len(live)

    async def stop_all(self) -> None:
        """Stop every worker (gracefully), then the prefork standby."""
        for worker in self.workers:
            if not worker.stopping and worker.process.returncode is None:
                self._stop(worker)
        if self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)
        with contextlib.suppress(WorkerFatal):  # reported by the step that saw it
            self.reap()
        if self.standby is not None and self.shared_standby is None:
            await self.standby.stop()


@dataclass
class LocalScaler:
    """Poll depth, decide, converge; wake on demand. ``depth`` reads the broker's metric."""

    scaler: Scaler
    depth: Callable[[], Awaitable[int]]
    pool: WorkerPool
    clock: Clock = time.monotonic
    last_metric: int | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """Push activation: start the first worker now (safe to call from any coroutine)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()

    async def step(self) -> None:
        now = self.clock()
        if self._wake.is_set():
            self._wake.clear()
            before = self.scaler.replicas
            self.scaler.wake(now)
            if before == 0:
                self.pool.record("scale_decision", reason="wake", replicas=self.scaler.replicas)
        prewarm_at = self.scaler.prewarm_at
        if prewarm_at is not None and now >= prewarm_at:  # the keep-alive policy's pre-warm
            self.scaler.prewarm(now)
            described = self.scaler.keep_alive.describe()
            log.info("scale 0 -> %d (prewarm: %s)", self.scaler.replicas, described)
            self.pool.record("scale_decision", reason="prewarm", replicas=self.scaler.replicas)
        if self.scaler.poll_due(now):
            try:
                self.last_metric = await self.depth()
            except BrokerError as exc:  # as KEDA without fallback: hold the count
                log.warning("queue depth unavailable (%s); replicas held", exc)
                self.scaler.skip_poll(now)
            else:
                before = self.scaler.replicas
                self.scaler.decide(now, self.last_metric, running=self.pool.running)
                if self.scaler.replicas != before:
                    reason = self.scaler.last.reason if self.scaler.last else "?"
                    log.info(
                        "scale %d -> %d (%s, depth %d)",
                        before,
                        self.scaler.replicas,
                        reason,
                        self.last_metric,
                    )
                    self.pool.record(
                        "scale_decision",
                        reason=reason,
                        depth=self.last_metric,
                        replicas=self.scaler.replicas,
                        previous=before,
                    )
        await self.pool.converge(self.scaler.replicas)

    async def run(self) -> None:
        try:
            await self.pool.start()
            while not self._stop.is_set():
                await self.step()
                next_poll = self.scaler.next_poll_at
                wait = 0.5 if next_poll is None else max(0.0, next_poll - self.clock())
                # Wake early for a push activation, and at least every 0.5 s to reap crashes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_or_stop(), min(wait, 0.5))
        finally:
            await self.pool.stop_all()

    async def _wake_or_stop(self) -> None:
        wake = asyncio.create_task(self._wake.wait())
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({wake, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            stop.cancel()
