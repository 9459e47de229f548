"""Throwaway events databases: a SQLite file, or a fresh database on the machine's PostgreSQL."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DIALECTS = ["sqlite", "postgresql"]


def postgres_up() -> None:
    """A missing PostgreSQL is a failure, not a skip: .ci/run makes sure one runs."""
    try:
        socket.create_connection(("127.0.0.1", 5432), 2).close()
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc}); .ci/run starts it")


@contextlib.contextmanager
def fresh_database(dialect: str, tmp_path: Path, prefix: str = "tw_test") -> Iterator[str]:
    """The URL of an empty database (on PostgreSQL named ``prefix`` and a random suffix),
    dropped afterwards."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    postgres_up()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    """Every row gone, the schema kept (cheap between tests, unlike a new database)."""
    from tripwire.eventstore.tables import metadata

    names = ", ".join(t.name for t in metadata.sorted_tables)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {names}")
