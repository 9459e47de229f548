"""The events database: one record per motion event, its labels, frames and alerts.

The events function is its one writer (:mod:`tripwire.eventstore.writer`); the console reads
it (:mod:`tripwire.eventstore.queries`). SQLite on one machine, PostgreSQL on a cluster.
"""

from tripwire.eventstore.engine import Store, head_revision
from tripwire.eventstore.settings import StoreSettings

__all__ = ["Store", "StoreSettings", "head_revision"]
