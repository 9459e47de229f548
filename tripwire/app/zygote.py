"""A prefork standby ("zygote") for detector workers: the imports paid once, ahead of demand.

A detector's cold start is mostly interpreter start and imports (torch alone is ~3 s on two
cores, ultralytics ~2.5 s more); the model itself builds and warms up in under a second. The
local scaler keeps this process waiting beside it: it has imported torch, ultralytics, cv2,
numpy and the detector's own modules, and nothing else. A worker is one ``os.fork()`` away,
and starts at the model load.

What the standby holds, and why it keeps scale-to-zero honest:

* about 0.35 GiB resident (``ready`` reports it; measured 355-364 MiB RSS with the CPU
  wheel of torch 2.13 and ultralytics 8.4), nearly all of it imported code and data that
  forked workers share copy-on-write: a forked yolo11n worker's own memory (USS) measured
  96 MiB against 306 MiB for one started from scratch, so next to one running worker the
  standby costs ~50 MiB (PSS 178 + 234 MiB against 360 MiB) and each further worker saves
  ~200 MiB;
* no model weights: every worker loads its own model after the fork;
* no GPU context and no GPU memory: CUDA is never touched here (a CUDA context does not
  survive fork; ``torch.cuda.is_available()`` alone initialises the driver), so workers
  open their own context after the fork, as a fresh process would;
* no connection (broker, archive), no Python thread, no event loop, no tensor operation
  (torch creates its intra-op threads on first compute; a thread pool in the parent would
  hang the children's), so it sleeps in ``select`` with no CPU use until asked.

Protocol, one JSON object per line. The supervisor writes on stdin::

    {"id": 3, "spawn": {"argv": ["detector", ...], "env": {...}, "log": "/path/detector-3.log"}}

and reads on stdout ``{"ready": {...}}`` once the imports are done, ``{"id": 3, "spawned":
pid}`` (or ``{"id": 3, "error": "..."}``) per request, and ``{"exited": pid, "code": n}`` as
children end (``code`` as asyncio reports it: negative for a signal). Each child runs
``tripwire.app.cli.main(argv)`` in its own session with ``env`` applied, stdin on /dev/null and
stdout and stderr appended to ``log``. When stdin closes the standby exits; a child still
running then has lost its supervisor and is asked to stop (SIGTERM: it finishes its batch).
Its own death (a crash, SIGKILL) does not touch the children.

    python -m tripwire.app.zygote   # normally started by the local scaler
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import random
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _rss_kib() -> int:
    """Resident set size of this process in KiB (``VmRSS``)."""
    with Path("/proc/self/status").open() as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _native_threads() -> int:
    """OS threads of this process; OpenBLAS (numpy, cv2) starts its own, fork-safe ones."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def preload() -> None:
    """Import what a detector worker imports, in the order it does."""
    from functions.detector.model import _offline_environment
    from tripwire.settings import DetectorSettings

    # ultralytics reads its config dir and offline switch at import time: set them as the
    # worker's Model would, before the import (the workers get the same environment).
    _offline_environment(DetectorSettings().home / "ultralytics")
    import torch  # noqa: F401  (first, as in Model: the heaviest import)

    from functions.detector import torchvision_cpu

    # Unconditional, unlike Model: where torchvision's own ops load it does nothing, and
    # asking torch.cuda.is_available() here would initialise CUDA in the parent.
    torchvision_cpu.install()
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import ultralytics  # noqa: F401
    from ultralytics import YOLO  # noqa: F401
    from ultralytics.cfg import DEFAULT_CFG_DICT  # noqa: F401

    import functions.detector.run
    import functions.detector.worker  # noqa: F401
    import tripwire.app.cli  # noqa: F401


class Standby:
    """The command loop: fork on request, reap and report children, exit on EOF."""

    def __init__(self, commands: int, replies: int) -> None:
        self.commands = commands
        self.replies = replies
        self.children: set[int] = set()
        # SIGCHLD wakes the select below through this pipe: no polling while idle.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def reply(self, message: dict[str, Any]) -> None:
        os.write(self.replies, (json.dumps(message, separators=(",", ":")) + "\n").encode())

    def serve(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self.commands, self.wake_r], [], [])
            if self.wake_r in ready:
                while True:
                    try:
                        if not os.read(self.wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                self.reap()
            if self.commands not in ready:
                continue
            data = os.read(self.commands, 1 << 16)
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    self.handle(line)

    def handle(self, line: bytes) -> None:
        ident: Any = None
        try:
            request = json.loads(line)
            ident = request.get("id")
            spawn = request["spawn"]
            pid = self.fork(list(spawn["argv"]), dict(spawn.get("env") or {}), spawn["log"])
        except (ValueError, KeyError, TypeError, OSError, RuntimeError) as exc:
            self.reply({"id": ident, "error": f"{type(exc).__name__}: {exc}"})
            return
        self.reply({"id": ident, "spawned": pid})

    def fork(self, argv: list[str], env: dict[str, str], log: str) -> int:
        # The conditions that make fork safe here; refuse rather than fork a broken child.
        if threading.active_count() != 1:
            raise RuntimeError(f"{threading.active_count()} Python threads in the standby")
        import torch  # imported already: a lookup

        if torch.cuda.is_initialized():
            raise RuntimeError("CUDA was initialised in the standby")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.become_worker(argv, env, log)  # never returns
        self.children.add(pid)
        return pid

    def become_worker(self, argv: list[str], env: dict[str, str], log: str) -> None:
        code = 1
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for fd in (self.commands, self.replies, self.wake_r, self.wake_w):
                os.close(fd)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(null)
            os.close(out)
            if isinstance(sys.stdout, io.TextIOWrapper):
                sys.stdout.reconfigure(line_buffering=True)
            os.environ.update(env)
            random.seed()
            import numpy

            numpy.random.seed()
            sys.argv = ["tripwire", *argv]
            from tripwire.app.cli import main

            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            # What a normal interpreter exit would do, then leave without unwinding into
            # the standby's loop.
            try:
                atexit._run_exitfuncs()
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.reply({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def orphan_children(self) -> None:
        """The supervisor is gone: nobody else will stop these workers."""
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            print(f"zygote: supervisor gone; asked worker pid {pid} to stop", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    # The protocol gets private descriptors; fds 0 and 1 become /dev/null and stderr, so a
    # stray print from an import cannot corrupt a reply, and children inherit nothing of it.
    commands = os.dup(0)
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    started = time.perf_counter()
    preload()
    standby = Standby(commands, replies)
    try:
        standby.reply(
            {
                "ready": {
                    "pid": os.getpid(),
                    "import_s": round(time.perf_counter() - started, 3),
                    "rss_kib": _rss_kib(),
                    "native_threads": _native_threads(),
                }
            }
        )
        standby.serve()
    except BrokenPipeError:
        pass
    standby.orphan_children()
    return 0


if __name__ == "__main__":
    sys.exit(main())
