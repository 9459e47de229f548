"""A nats-server of a fixture's own, for tests whose processes declare streams that would
overlap others' on the session's server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tripwire.embedded_nats import EmbeddedNats


@contextlib.contextmanager
def nats_server_in(folder: Path) -> Iterator[EmbeddedNats]:
    """A nats-server storing under ``folder``, stopped on leaving."""
    server = EmbeddedNats.start(folder)
    try:
        yield server
    finally:
        server.stop()
