"""The settings block of each broker adapter (``TRIPWIRE_BROKER__NATS__*``,
``TRIPWIRE_BROKER__RABBITMQ__*``).

Plain pydantic, apart from the adapters: the process settings read both blocks, and a
process loads only the client library of the broker its URL names (``open_broker``).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tripwire import contract
from tripwire.embedded_nats import MAX_PAYLOAD

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
DAY_S = 86_400.0

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Dot-separated non-empty tokens; '*' only as a whole token, '>' only as the whole last one.
_SUBJECT_RE = re.compile(r"^(?:(?:[^.\s*>]+|\*)\.)*(?:[^.\s*>]+|\*|>)$")


class NatsSettings(BaseModel):
    """Streams, consumer and reconnect policy of the NATS JetStream adapter."""

    model_config = ConfigDict(extra="forbid")

    stream: str = Field("TRIPWIRE_MOTION", description="interest stream of motion frames")
    subjects: list[str] = Field(
        default_factory=lambda: [f"{contract.MOTION_PREFIX}.>"],
        min_length=1,
        description="subjects the motion stream captures",
    )
    storage: Literal["file", "memory"] = Field("file", description="memory loses all on restart")
    replicas: int = Field(1, ge=1, le=5, description="stream replicas (NATS cluster only)")
    stream_max_bytes: int = Field(2 * GiB, ge=MiB, le=TiB, description="full: publish is 503")
    stream_max_age_s: float = Field(3600, gt=0, le=30 * DAY_S, description="drop older frames")
    stream_max_msgs: int = Field(
        -1, ge=-1, le=10**9, description="most frames held (-1 = no count limit)"
    )
    max_msg_bytes: int = Field(MAX_PAYLOAD, ge=KiB, le=64 * MiB, description="largest frame")
    duplicate_window_s: float = Field(120, gt=0, le=DAY_S, description="Tripwire-Id dedup window")
    durable: str = Field(
        "detector", description="durable pull consumer of the detectors (detector-<model>)"
    )
    events_durable: str = Field(
        "events", description="durable consumer of the events function on the results stream"
    )
    ack_wait_s: float = Field(30, ge=1, le=3600, description="redeliver if unacked this long")
    max_ack_pending: int = Field(1000, ge=1, le=1_000_000, description="frames in flight, max")
    results_stream: str = Field(
        "TRIPWIRE_RESULTS", description="detections, alerts, event open/close, wake"
    )
    results_subjects: list[str] = Field(
        default_factory=lambda: [
            f"{contract.DETECTIONS_PREFIX}.>",
            f"{contract.ALERTS_PREFIX}.>",
            f"{contract.EVENTS_PREFIX}.>",
            contract.WAKE_SUBJECT,
        ],
        min_length=1,
        description="subjects the results stream captures",
    )
    results_max_bytes: int = Field(GiB, ge=MiB, le=TiB, description="results stream size")
    results_max_age_s: float = Field(DAY_S, gt=0, le=365 * DAY_S, description="keep results")
    dead_stream: str = Field("TRIPWIRE_DEAD", description="stream of dead-lettered messages")
    dead_prefix: str = Field(contract.DEAD_PREFIX, description="subject S dies to <prefix>.S")
    dead_max_bytes: int = Field(GiB, ge=MiB, le=TiB, description="dead-letter stream size")
    dead_max_age_s: float = Field(7 * DAY_S, gt=0, le=365 * DAY_S, description="keep dead")
    reconnect_wait_s: float = Field(0.5, gt=0, le=60, description="first retry delay, doubling")
    reconnect_max_wait_s: float = Field(10, gt=0, le=600, description="retry delay cap")

    @model_validator(mode="after")
    def _check(self) -> NatsSettings:
        names = (
            self.stream, self.results_stream, self.dead_stream, self.durable, self.events_durable
        )  # fmt: skip
        for name in names:
            if not _NAME_RE.match(name):
                raise ValueError(f"name {name!r}: use 1-64 of A-Z, a-z, 0-9, '_' or '-'")
        if len(set(names[:3])) != 3:
            raise ValueError("stream, results_stream and dead_stream must differ")
        for subject in [*self.subjects, *self.results_subjects, f"{self.dead_prefix}.>"]:
            if not _SUBJECT_RE.match(subject):
                raise ValueError(f"subject {subject!r} is not a valid NATS subject")
        if "*" in self.dead_prefix or ">" in self.dead_prefix:
            raise ValueError("dead_prefix must not contain wildcards")
        # nats-server refuses a dedup window longer than the stream's max age.
        ages = (self.stream_max_age_s, self.results_max_age_s, self.dead_max_age_s)
        if self.duplicate_window_s > min(ages):
            raise ValueError("duplicate_window_s must not exceed any stream's max age")
        if self.reconnect_wait_s > self.reconnect_max_wait_s:
            raise ValueError("reconnect_wait_s must not exceed reconnect_max_wait_s")
        return self


class RabbitSettings(BaseModel):
    """Exchange, queues and limits on RabbitMQ (``TRIPWIRE_BROKER__RABBITMQ__*``)."""

    model_config = ConfigDict(extra="forbid")

    exchange: str = Field(
        "tripwire", min_length=1, max_length=255, description="durable topic exchange for all"
    )
    queue: str = Field(
        "tripwire.motion", min_length=1, max_length=255, description="queue the detector reads"
    )
    binding_key: str = Field(
        "tripwire.motion.#", min_length=1, max_length=255, description="motion queue binding"
    )
    events_queue: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="queue the events function reads (detections, event messages); "
        "unset = <exchange>.events",
    )
    events_max_length: int = Field(
        100_000, ge=1, le=100_000_000, description="x-max-length of the events queue"
    )
    queue_type: Literal["quorum", "classic"] = Field(
        "quorum", description="quorum: replicated, counts deliveries (x-delivery-count)"
    )
    dead_letter_exchange: str = Field(
        "tripwire.dlx", min_length=1, max_length=255, description="topic exchange for dead letters"
    )
    dead_letter_queue: str = Field(
        "tripwire.dead", min_length=1, max_length=255, description="bound to the DLX with #"
    )
    max_length: int = Field(
        10_000, ge=1, le=100_000_000, description="x-max-length (a quorum queue may take one more)"
    )
    overflow: Literal["reject-publish", "drop-head", "reject-publish-dlx"] = Field(
        "reject-publish", description="when full: reject-publish fails the publish (edge 503s)"
    )
    delivery_limit: int | None = Field(
        None, ge=1, le=10_000, description="quorum x-delivery-limit, then dead-letter; unset = none"
    )
    prefetch: int = Field(32, ge=1, le=65_535, description="unacked deliveries a consumer holds")
    heartbeat_s: int = Field(30, ge=0, le=600, description="AMQP heartbeat seconds; 0 = off")
    max_backoff_s: float = Field(5.0, gt=0, le=300, description="longest wait between reconnects")
    management_url: str | None = Field(
        None, description="management API; unset = http://<amqp host>:15672, AMQP credentials"
    )
    management_timeout_s: float = Field(5.0, gt=0, le=60, description="depth query HTTP timeout")

    @model_validator(mode="after")
    def _combinations(self) -> RabbitSettings:
        if self.queue_type == "quorum" and self.overflow == "reject-publish-dlx":
            raise ValueError("quorum queues do not support overflow reject-publish-dlx")
        if self.delivery_limit is not None and self.queue_type != "quorum":
            raise ValueError("delivery_limit (x-delivery-limit) needs queue_type quorum")
        if self.queue == self.dead_letter_queue or self.exchange == self.dead_letter_exchange:
            raise ValueError("the dead-letter exchange and queue must differ from the main ones")
        if self.events_queue_name in {self.queue, self.dead_letter_queue}:
            raise ValueError("events_queue must differ from the motion and dead-letter queues")
        scheme = urlsplit(self.management_url).scheme if self.management_url else "http"
        if scheme not in {"http", "https"}:
            raise ValueError("management_url must start with http:// or https://")
        return self

    @property
    def events_queue_name(self) -> str:
        return self.events_queue or f"{self.exchange}.events"
