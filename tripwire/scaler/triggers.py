"""The two trigger types a detector ScaledObject may use, parsed as KEDA's scalers parse them.

Each class reads a trigger's ``metadata`` (a map of strings) with KEDA's names, types and
defaults (``pkg/scalers/nats_jetstream_scaler.go``, ``pkg/scalers/rabbitmq_scaler.go``) and
exposes what the rules need: the target per replica and the activation threshold.

A setting under which KEDA would read a different number than the broker adapter's ``depth()``
is refused, because then the two executors would disagree: a RabbitMQ trigger must count
unacknowledged messages (``protocol: http``, no ``excludeUnacknowledged``) of one queue in
``QueueLength`` mode.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

Broker = Literal["nats", "rabbitmq"]

# rabbitmq_scaler.go: defaultRabbitMQQueueLength, used when neither mode, value nor
# queueLength is given.
RABBITMQ_DEFAULT_QUEUE_LENGTH = 20.0


class _Metadata(BaseModel):
    # Metadata keys KEDA knows but the local scaler does not need are ignored (KEDA ignores
    # unknown ones too); tests/deploy/test_keda_manifests.py checks every key against KEDA's list.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    broker: ClassVar[Broker]
    keda_type: ClassVar[str]


class NatsJetStreamTrigger(_Metadata):
    """``type: nats-jetstream``: lag = num_pending + num_ack_pending of one durable consumer."""

    broker: ClassVar[Broker] = "nats"
    keda_type: ClassVar[str] = "nats-jetstream"

    monitoring_endpoint: str | None = Field(
        None,
        alias="natsServerMonitoringEndpoint",
        description="host:port of /jsz (may come from a TriggerAuthentication instead)",
    )
    account: str | None = Field(None, description="account name; $G without accounts")
    account_id: str | None = Field(None, alias="accountID", description="account id")
    stream: str = Field(min_length=1, description="the motion stream")
    consumer: str = Field(min_length=1, description="the detectors' durable consumer")
    lag_threshold: int = Field(
        10, alias="lagThreshold", gt=0, description="lag per replica (KEDA default 10)"
    )
    activation_lag_threshold: int = Field(
        0, alias="activationLagThreshold", description="active iff lag > this (default 0)"
    )
    use_https: bool = Field(False, alias="useHttps", description="https to the endpoint")

    @property
    def target(self) -> float:
        """Lag per replica the HPA aims at (AverageValue)."""
        return float(self.lag_threshold)

    @property
    def activation(self) -> float:
        """The trigger is active iff lag > this."""
        return float(self.activation_lag_threshold)

    def describe(self) -> str:
        return f"nats-jetstream stream {self.stream} consumer {self.consumer}"


class RabbitMQTrigger(_Metadata):
    """``type: rabbitmq`` in QueueLength mode: ready + unacknowledged messages of one queue."""

    broker: ClassVar[Broker] = "rabbitmq"
    keda_type: ClassVar[str] = "rabbitmq"

    queue_name: str = Field(alias="queueName", min_length=1, description="the motion queue")
    mode: str = Field("Unknown", description="QueueLength (the only mode modelled)")
    value: float = Field(0.0, ge=0.0, description="messages per replica")
    queue_length: float = Field(
        0.0, alias="queueLength", ge=0.0, description="deprecated spelling of value"
    )
    activation_value: float = Field(
        0.0, alias="activationValue", description="active iff messages > this (default 0)"
    )
    protocol: Literal["auto", "http", "amqp"] = Field("auto", description="must resolve to http")
    host: str | None = Field(None, description="usually from a TriggerAuthentication")
    vhost_name: str | None = Field(None, alias="vhostName", description="overrides the host's")
    use_regex: bool = Field(False, alias="useRegex", description="queueName is a regex")
    exclude_unacknowledged: bool = Field(
        False, alias="excludeUnacknowledged", description="count ready messages only"
    )

    @model_validator(mode="after")
    def _same_metric_as_the_adapter(self) -> RabbitMQTrigger:
        # KEDA's validateTrigger, then what keeps KEDA's number equal to the adapter's depth.
        if self.queue_length and (self.mode != "Unknown" or self.value):
            raise ValueError("queueLength is deprecated; use mode and value, not both")
        if not self.queue_length and (self.mode != "Unknown" or self.value):
            if self.mode == "Unknown":
                raise ValueError("mode must be given with value")
            if not self.value:
                raise ValueError("value must be given with mode")
        if self.mode not in {"Unknown", "QueueLength"}:
            raise ValueError(
                f"mode {self.mode} is a rate; the local scaler's metric is the queue depth "
                "(use mode QueueLength)"
            )
        protocol = self.protocol
        if protocol == "auto":
            scheme = urlsplit(self.host).scheme if self.host else ""
            if scheme not in {"http", "https", "amqp", "amqps"}:
                raise ValueError(
                    "protocol auto with a host this file does not show: write protocol: http"
                )
            protocol = "http" if scheme.startswith("http") else "amqp"
        if protocol != "http":
            raise ValueError(
                "protocol amqp counts ready messages only, so KEDA could scale to zero with "
                "work in flight; use protocol: http (ready + unacknowledged, as the adapter)"
            )
        if self.exclude_unacknowledged:
            raise ValueError("excludeUnacknowledged hides work in flight from the scaler")
        if self.use_regex:
            raise ValueError("useRegex sums several queues; the detector reads one")
        return self

    @property
    def target(self) -> float:
        """Messages per replica the HPA aims at (AverageValue); KEDA's default is 20."""
        if self.queue_length:
            return self.queue_length
        return self.value or RABBITMQ_DEFAULT_QUEUE_LENGTH

    @property
    def activation(self) -> float:
        """The trigger is active iff messages > this."""
        return self.activation_value

    def describe(self) -> str:
        vhost = f" vhost {self.vhost_name}" if self.vhost_name else ""
        return f"rabbitmq queue {self.queue_name}{vhost}"


Trigger = NatsJetStreamTrigger | RabbitMQTrigger
TRIGGERS: dict[str, type[NatsJetStreamTrigger] | type[RabbitMQTrigger]] = {
    NatsJetStreamTrigger.keda_type: NatsJetStreamTrigger,
    RabbitMQTrigger.keda_type: RabbitMQTrigger,
}
