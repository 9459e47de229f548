"""A shared JSONL timeline of pipeline events, for cold-start and energy measurements.

Every process of a local run (gateway, scaler, detector workers) appends one JSON line per
event to the file named by ``TRIPWIRE_TIMELINE``: wall time in ns, the event name, the pid
and a few fields. Lines are written with O_APPEND in one write, so lines from several
processes never interleave. Unset, recording costs one dict lookup.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ENV = "TRIPWIRE_TIMELINE"


def record(event: str, **fields: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    append(path, {"t_ns": time.time_ns(), "event": event, "pid": os.getpid(), **fields})


def append(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` to the JSONL file ``path`` as one line, in one O_APPEND write (so
    lines of several processes or threads never interleave). The one JSONL writer: the
    timeline, the power sampler and the cluster watch write through it."""
    line = json.dumps(record, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
