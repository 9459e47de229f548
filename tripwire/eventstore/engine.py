"""Open the events database behind one small interface: SQLite (WAL) or PostgreSQL.

The same SQLAlchemy Core statements run on both. Schema changes go through Alembic
revisions (``migrations/versions``); :meth:`Store.migrate` upgrades a database to the head
revision, keeping what it holds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from tripwire.errors import StoreError, StoreUnavailable
from tripwire.eventstore.settings import StoreSettings
from tripwire.urls import redact

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

# SQLAlchemy's errors for "the server is not there / the connection broke": retry later.
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def _url(raw: str, connect_timeout_s: float) -> tuple[URL, dict[str, Any]]:
    url = make_url(raw)
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "postgresql":
        return url, {"connect_args": {"connect_timeout": max(1, int(connect_timeout_s))}}
    return url, {"connect_args": {"timeout": connect_timeout_s}}


class Store:
    """A connection pool to the events database and the errors it can raise."""

    def __init__(self, raw_url: str, *, pool_size: int = 5, connect_timeout_s: float = 5.0):
        self.display_url = redact(raw_url)
        url, kwargs = _url(raw_url, connect_timeout_s)
        self.dialect = url.get_backend_name()
        if self.dialect == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(url, **kwargs)
            _sqlite_pragmas(self.engine)
        else:
            self.engine = sa.create_engine(
                url, pool_size=pool_size, pool_pre_ping=True, pool_recycle=1800, **kwargs
            )

    @classmethod
    def from_settings(cls, settings: StoreSettings, home: Path) -> Store:
        return cls(
            settings.resolved_url(home),
            pool_size=settings.pool_size,
            connect_timeout_s=settings.connect_timeout_s,
        )

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; connection problems raise :class:`StoreUnavailable`."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"events db {self.display_url}: {_why(exc)}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"events db {self.display_url}: {_why(exc)}") from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries (no write lock taken on SQLite)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(tripwire_read=True)
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"events db {self.display_url}: {_why(exc)}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"events db {self.display_url}: {_why(exc)}") from exc

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (a fresh database gets every table)."""
        with self.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def revision(self) -> str | None:
        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _why(exc: sa.exc.SQLAlchemyError) -> str:
    # The first line of the driver's message: no SQL, no parameters (they may hold data).
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {text[0] if text else ''}"


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE.

    pysqlite's own transaction handling starts a deferred transaction that upgrades to a
    write lock mid-way, which fails at once when another writer holds it; BEGIN IMMEDIATE
    takes the lock up front and waits ``busy_timeout`` for it instead.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        read = conn.get_execution_options().get("tripwire_read", False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")
