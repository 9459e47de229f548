"""The supervisor's side of the prefork standby (``tripwire.app.zygote``).

:class:`Zygote` starts the standby, asks it for workers and follows their exits from its
``exited`` lines; :class:`ForkedWorker` is the handle of one such worker, with the same
surface as an ``asyncio.subprocess.Process`` (pid, returncode, send_signal, kill, wait), so
the pool treats both alike. Signals go straight to the worker, through a pidfd where Linux
has one (no pid-reuse race). If the standby dies its workers live on, now children of init:
their exits are then seen through the pidfd (or by polling the pid), without an exit code,
and the next :meth:`Zygote.ensure_running` starts a new standby. A standby that dies before
it is ready (a missing import, a bad setting) is retried with backoff; meanwhile
:meth:`Zygote.spawn` fails fast and the pool starts workers the ordinary way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tripwire import timeline
from tripwire.errors import TripwireError

log = logging.getLogger(__name__)

MODULE = "tripwire.app.zygote"
UNKNOWN_EXIT = 255  # a worker's exit status once its standby died: init reaped it, not us
SPAWN_TIMEOUT_S = 60.0  # covers the standby's own imports when a spawn arrives early
ORPHAN_POLL_S = 0.2  # without pidfds (not Linux): how often an orphan's pid is checked


class ZygoteError(TripwireError):
    """The standby cannot start a worker now; start it the ordinary way."""


class ForkedWorker:
    """A worker forked by the standby; ``returncode`` comes from the standby's reports."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            # Gone already (it exited and the standby reaped it): its exit line follows.
            with contextlib.suppress(ProcessLookupError):
                self._pidfd = os.pidfd_open(pid)

    def send_signal(self, sig: int, /) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, sig)
        else:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        await self._done.wait()
        assert self.returncode is not None
        return self.returncode

    def exited(self, code: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = code
        if self._pidfd is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._watch is not None:
            self._watch.cancel()
        self._done.set()

    def orphaned(self) -> None:
        """The standby died: watch the process itself from now on."""
        if self.returncode is not None:
            return
        if self._pidfd is not None:  # readable once the process has exited, reaped or not
            asyncio.get_running_loop().add_reader(self._pidfd, self.exited, UNKNOWN_EXIT)
        else:
            self._watch = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(ORPHAN_POLL_S)
        self.exited(UNKNOWN_EXIT)


class Zygote:
    """One standby process at a time: started, replaced when it dies, stopped on request."""

    def __init__(
        self,
        python: str,
        env: Mapping[str, str],
        log_path: Path,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self.python = python
        # Added to its timeline events: with named models, the models (and the family) it
        # forks workers for; empty for the one model of a stack without a models section.
        self.tags = dict(tags or {})
        self.env = dict(env)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] | None = None  # the standby's ready report: pid, rss_kib, ...
        self.starts = 0
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._children: dict[int, ForkedWorker] = {}
        self._pending: dict[int, asyncio.Future[ForkedWorker]] = {}
        self._next_id = 0
        self._failures = 0  # consecutive deaths before ready
        self._retry_at = 0.0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def ready(self) -> bool:
        return self.alive and self._ready.is_set()

    async def ensure_running(self) -> None:
        """Start the standby unless one is running or a failed start is backing off."""
        if self.alive or time.monotonic() < self._retry_at:
            return
        await asyncio.to_thread(self.log_path.parent.mkdir, parents=True, exist_ok=True)
        with self.log_path.open("ab") as err:
            self.process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                MODULE,
                env=self.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self.starts += 1
        self._ready.clear()
        self.info = None
        self._reader = asyncio.create_task(self._read(self.process), name="zygote-reader")
        log.info("prefork standby starting (pid %d)", self.process.pid)

    async def wait_ready(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.ready

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> ForkedWorker:
        """Fork one worker running ``tripwire <argv>``; raise :class:`ZygoteError` if not."""
        await self.ensure_running()
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise ZygoteError("the prefork standby is not running (backing off after failures)")
        self._next_id += 1
        ident = self._next_id
        reply: asyncio.Future[ForkedWorker] = asyncio.get_running_loop().create_future()
        self._pending[ident] = reply
        request = {
            "id": ident,
            "spawn": {"argv": list(argv), "env": dict(env), "log": str(log_path)},
        }
        try:
            process.stdin.write((json.dumps(request) + "\n").encode())
            await process.stdin.drain()
            return await asyncio.wait_for(reply, SPAWN_TIMEOUT_S)
        except (ConnectionError, OSError) as exc:
            raise ZygoteError(f"prefork standby unreachable: {exc}") from exc
        except TimeoutError:
            log.warning("prefork standby pid %d did not answer in time; killing it", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise ZygoteError("prefork standby did not answer in time") from None
        finally:
            self._pending.pop(ident, None)

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("prefork standby: unreadable line %r", line[:200])
                    continue
                try:
                    self._handle(message)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("prefork standby: unexpected message %r (%s)", message, exc)
        finally:
            await process.wait()
            self._died(process)

    def _handle(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            child = self._children.pop(message["exited"], None)
            if child is not None:
                child.exited(int(message["code"]))
        elif "spawned" in message or "error" in message:
            reply = self._pending.get(message.get("id", -1))
            if "spawned" in message:
                child = ForkedWorker(int(message["spawned"]))
                self._children[child.pid] = child  # before any exit line for it is read
                if reply is not None and not reply.done():
                    reply.set_result(child)
            elif reply is not None and not reply.done():
                reply.set_exception(ZygoteError(f"prefork standby: {message['error']}"))
        elif "ready" in message:
            self.info = message["ready"]
            self._failures = 0
            self._ready.set()
            rss = self.info.get("rss_kib", -1) / 1024
            log.info(
                "prefork standby ready (pid %s, imports %.1fs, RSS %.0f MiB)",
                self.info.get("pid"),
                self.info.get("import_s", -1),
                rss,
            )
            timeline.record(
                "zygote_ready", zygote_pid=self.info.get("pid"), rss_mib=round(rss), **self.tags
            )

    def _died(self, process: asyncio.subprocess.Process) -> None:
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(ZygoteError("the prefork standby exited"))
        # Its workers keep running; from now on their exits are watched directly.
        for child in self._children.values():
            child.orphaned()
        self._children.clear()
        if self.process is not process:  # stopped on purpose
            return
        self._ready.clear()
        if self.info is None:
            self._failures += 1
            backoff = min(60.0, 2.0**self._failures)
            self._retry_at = time.monotonic() + backoff
            log.warning(
                "prefork standby exited with %s before it was ready (see %s); retry in %.0fs",
                process.returncode,
                self.log_path,
                backoff,
            )
        else:
            log.warning(
                "prefork standby pid %d exited with %s; its workers keep running, a new one "
                "starts at the next scaler step",
                process.pid,
                process.returncode,
            )
            timeline.record(
                "zygote_died", zygote_pid=process.pid, code=process.returncode, **self.tags
            )

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Close the standby's stdin (it exits at EOF) and wait; kill it if it lingers."""
        process, self.process = self.process, None
        self._ready.clear()
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None
