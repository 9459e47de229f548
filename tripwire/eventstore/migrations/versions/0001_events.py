"""Events, their labels, per-frame results and alerts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("camera", sa.String(63), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("opened", sa.Boolean, nullable=False),
        sa.Column("end_ns", sa.BigInteger),
        sa.Column("last_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
        sa.Column("frames_seen", sa.Integer, nullable=False),
        sa.Column("frames_analysed", sa.Integer, nullable=False),
        sa.Column("frames_published", sa.Integer, nullable=False),
        sa.Column("frames_detected", sa.Integer, nullable=False),
        sa.Column("first_result_ns", sa.BigInteger),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("best_label", sa.String(128)),
        sa.Column("best_confidence", sa.Float),
        sa.Column("best_seq", sa.BigInteger),
        sa.Column("best_capture_ns", sa.BigInteger),
        sa.Column("best_model", sa.String(128)),
        sa.Column("best_frame_key", sa.String(512)),
        sa.Column("alert_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_events_start", "events", ["start_ns", "id"])
    op.create_index("ix_events_camera_start", "events", ["camera", "start_ns"])
    op.create_index("ix_events_status", "events", ["status"])
    op.create_table(
        "event_labels",
        sa.Column("event_id", sa.String(96), sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("label", sa.String(128), primary_key=True),
        sa.Column("best_confidence", sa.Float, nullable=False),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("best_seq", sa.BigInteger, nullable=False),
        sa.Column("best_capture_ns", sa.BigInteger, nullable=False),
        sa.Column("best_model", sa.String(128), nullable=False),
        sa.Column("best_frame_key", sa.String(512)),
    )
    op.create_index("ix_event_labels_label", "event_labels", ["label", "best_confidence"])
    op.create_table(
        "results",
        sa.Column("camera", sa.String(63), primary_key=True),
        sa.Column("capture_ns", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(96)),
        sa.Column("stored_ns", sa.BigInteger),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("boxes", sa.JSON, nullable=False),
        sa.Column("top_label", sa.String(128)),
        sa.Column("top_confidence", sa.Float),
        sa.Column("frame_key", sa.String(512)),
        sa.Column("detections_key", sa.String(512)),
        sa.Column("inference_ms", sa.Float),
    )
    op.create_index("ix_results_event", "results", ["event_id", "capture_ns"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("camera", sa.String(63), nullable=False),
        sa.Column("event_id", sa.String(96)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rule", sa.Integer, nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("capture_ns", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("box", sa.JSON),
        sa.Column("frame_key", sa.String(512)),
        sa.Column("raised_ns", sa.BigInteger, nullable=False),
        sa.Column("published_ns", sa.BigInteger),
        sa.Column("acknowledged_by", sa.String(64)),
        sa.Column("acknowledged_ns", sa.BigInteger),
    )
    op.create_index("ix_alerts_rule_time", "alerts", ["camera", "kind", "capture_ns"])
    op.create_index("ix_alerts_event", "alerts", ["event_id"])
    op.create_index("ix_alerts_raised", "alerts", ["raised_ns"])


def downgrade() -> None:
    for table in ("alerts", "results", "event_labels", "events"):
        op.drop_table(table)
