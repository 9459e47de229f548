"""The events database at the head revision (SQLAlchemy Core; Alembic's migrations build it).

Times are integer nanoseconds since the epoch, as everywhere in tripwire. Every write is an
upsert keyed on ids that the messages carry, so a redelivered message changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One row per motion event (the gateway's open -> close).
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(96), primary_key=True),
    sa.Column("camera", sa.String(63), nullable=False),
    # open | closed | timeout (a close never came)
    sa.Column("status", sa.String(8), nullable=False),
    # capture time of the opening frame; until the open message is in, the first result's
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("opened", sa.Boolean, nullable=False, default=False),  # open message seen
    sa.Column("end_ns", sa.BigInteger),
    sa.Column("last_ns", sa.BigInteger, nullable=False),  # latest capture time seen
    sa.Column("updated_ns", sa.BigInteger, nullable=False),  # wall clock of the last write
    sa.Column("frames_seen", sa.Integer, nullable=False, default=0),
    sa.Column("frames_analysed", sa.Integer, nullable=False, default=0),
    sa.Column("frames_published", sa.Integer, nullable=False, default=0),
    sa.Column("frames_detected", sa.Integer, nullable=False, default=0),  # results stored
    sa.Column("first_result_ns", sa.BigInteger),  # earliest result publish time
    sa.Column("models", sa.JSON, nullable=False, default=list),
    sa.Column("best_label", sa.String(128)),
    sa.Column("best_confidence", sa.Float),
    sa.Column("best_seq", sa.BigInteger),
    sa.Column("best_capture_ns", sa.BigInteger),
    sa.Column("best_model", sa.String(128)),
    sa.Column("best_frame_key", sa.String(512)),
    sa.Column("alert_count", sa.Integer, nullable=False, default=0),
    sa.Index("ix_events_start", "start_ns", "id"),
    sa.Index("ix_events_camera_start", "camera", "start_ns"),
    sa.Index("ix_events_status", "status"),
)

# Every label seen in an event: best confidence, frames, and the frame that shows it best.
event_labels = sa.Table(
    "event_labels",
    metadata,
    sa.Column("event_id", sa.String(96), sa.ForeignKey("events.id"), primary_key=True),
    sa.Column("label", sa.String(128), primary_key=True),
    sa.Column("best_confidence", sa.Float, nullable=False),
    sa.Column("frames", sa.Integer, nullable=False),
    sa.Column("best_seq", sa.BigInteger, nullable=False),
    sa.Column("best_capture_ns", sa.BigInteger, nullable=False),
    sa.Column("best_model", sa.String(128), nullable=False),
    sa.Column("best_frame_key", sa.String(512)),
    sa.Index("ix_event_labels_label", "label", "best_confidence"),
)

# One row per (frame, model) result: the idempotency key and the alert rules' history.
results = sa.Table(
    "results",
    metadata,
    sa.Column("camera", sa.String(63), primary_key=True),
    sa.Column("capture_ns", sa.BigInteger, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("event_id", sa.String(96)),
    sa.Column("stored_ns", sa.BigInteger),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    # [[label, confidence, x1, y1, x2, y2], ...] in frame pixels
    sa.Column("boxes", sa.JSON, nullable=False),
    sa.Column("top_label", sa.String(128)),
    sa.Column("top_confidence", sa.Float),
    sa.Column("frame_key", sa.String(512)),
    sa.Column("detections_key", sa.String(512)),
    sa.Column("inference_ms", sa.Float),
    sa.Index("ix_results_event", "event_id", "capture_ns"),
)

# One row per alert (one incident); the id is deterministic, so it is raised once.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("camera", sa.String(63), nullable=False),
    sa.Column("event_id", sa.String(96)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("rule", sa.Integer, nullable=False),  # index in the config's alerts list
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("capture_ns", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("frames", sa.Integer, nullable=False),
    sa.Column("box", sa.JSON),
    sa.Column("frame_key", sa.String(512)),
    sa.Column("raised_ns", sa.BigInteger, nullable=False),
    sa.Column("published_ns", sa.BigInteger),  # broker publish + notifications handed over
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("acknowledged_ns", sa.BigInteger),
    sa.Index("ix_alerts_rule_time", "camera", "kind", "capture_ns"),
    sa.Index("ix_alerts_event", "event_id"),
    sa.Index("ix_alerts_raised", "raised_ns"),
)

# Revision 2 -------------------------------------------------------------------------------

# The latest status of each camera, as its gateway reports it.
cameras = sa.Table(
    "cameras",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("last_frame_ns", sa.BigInteger, nullable=False),
    sa.Column("fps", sa.Float, nullable=False),
    sa.Column("frames", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.String(96)),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
)

# One row per (camera, alert kind): taken FOR UPDATE while a rule is evaluated, so replicas
# of the events function decide one camera's alerts one at a time.
alert_state = sa.Table(
    "alert_state",
    metadata,
    sa.Column("camera", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("last_alert_ns", sa.BigInteger),
)
