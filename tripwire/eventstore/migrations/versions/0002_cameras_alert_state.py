"""Camera status, and the per-rule alert state that serializes replicas of the events function.

The alert state is back-filled from the alerts already raised, so an upgrade keeps every
rule's cooldown where it was.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("last_frame_ns", sa.BigInteger, nullable=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("frames", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(96)),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alert_state",
        sa.Column("camera", sa.String(63), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("last_alert_ns", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO alert_state (camera, kind, last_alert_ns) "
        "SELECT camera, kind, MAX(capture_ns) FROM alerts GROUP BY camera, kind"
    )


def downgrade() -> None:
    op.drop_table("alert_state")
    op.drop_table("cameras")
