"""Alembic environment: runs on the connection :func:`tripwire.eventstore.engine.migrate`
hands over (no alembic.ini, no URL of its own)."""

from __future__ import annotations

from alembic import context

from tripwire.eventstore.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
)
with context.begin_transaction():
    context.run_migrations()
