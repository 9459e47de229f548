"""Typed process settings, read from ``TRIPWIRE_*`` environment variables.

One ``BaseSettings`` class per process; nested blocks use ``__`` (for example
``TRIPWIRE_BROKER__NATS__STREAM``). Broker adapters own their own settings blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tripwire.archive.settings import ArchiveSettings
from tripwire.brokers.jetstream import NatsSettings
from tripwire.brokers.rabbitmq import RabbitSettings
from tripwire.eventstore.settings import StoreSettings

Profile = Literal["dev", "prod"]

# Credentials that ship as defaults somewhere; refused outside the dev profile.
PLACEHOLDER_PASSWORDS = frozenset(
    {"guest", "password", "changeme", "admin", "secret", "minioadmin"}
)


class BrokerSettings(BaseModel):
    """Which broker to use and how; no URL means the embedded NATS server."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="nats://host:4222 or amqp://user:pass@host:5672/vhost; unset = embedded"
    )
    connect_timeout_s: float = Field(30.0, gt=0, le=600, description="give up connecting after")
    publish_timeout_s: float = Field(5.0, gt=0, le=120, description="wait this long for a confirm")
    nats: NatsSettings = Field(default_factory=NatsSettings)
    rabbitmq: RabbitSettings = Field(default_factory=RabbitSettings)

    @model_validator(mode="after")
    def _scheme(self) -> BrokerSettings:
        if self.url is not None and urlsplit(self.url).scheme not in {
            "nats",
            "tls",
            "amqp",
            "amqps",
        }:
            raise ValueError("url must start with nats://, tls://, amqp:// or amqps://")
        return self


def refuse_placeholder(url: str | None, profile: Profile, what: str) -> None:
    """Raise ``ValueError`` for a well-known default password outside the dev profile."""
    if url is None or profile == "dev":
        return
    password = urlsplit(url).password
    if password is not None and password.lower() in PLACEHOLDER_PASSWORDS:
        raise ValueError(f"{what}: a placeholder password is refused in the {profile} profile")


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRIPWIRE_", env_nested_delimiter="__", extra="forbid"
    )

    profile: Profile = Field("dev", description="prod refuses placeholder credentials")
    home: Path = Field(Path(".tripwire"), description="state dir: embedded NATS store, archive")
    config: Path | None = Field(None, description="camera config YAML (--config)")
    log_level: str = Field("INFO", description="Python logging level")
    broker: BrokerSettings = Field(default_factory=BrokerSettings)

    def config_path(self) -> Path | None:
        """``config`` if set, else ``<home>/cameras.yaml`` when ``tripwire init`` wrote one."""
        if self.config is not None:
            return self.config
        default = self.home / "cameras.yaml"
        return default if default.is_file() else None

    @model_validator(mode="after")
    def _secrets(self) -> CommonSettings:
        refuse_placeholder(self.broker.url, self.profile, "broker url")
        return self


class GatewaySettings(CommonSettings):
    """The edge process: HTTP ingest + motion function + publish."""

    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8080, ge=0, le=65535, description="listen port (0 = any free port)")
    max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="413 above this body size"
    )
    motion_threads: int = Field(
        2, ge=1, le=64, description="threads running the motion function (OpenCV frees the GIL)"
    )
    retry_after_s: int = Field(2, ge=1, le=300, description="Retry-After on 503")
    status_interval_s: float = Field(
        5.0, gt=0, le=3600, description="each camera's status to the events function, seconds"
    )
    motion_gate: bool = Field(
        True,
        description="false publishes every frame (the always-on CCTV baseline of the "
        "energy benchmark)",
    )


class MotionSettings(CommonSettings):
    """The pull-mode processes: ``tripwire motion --source`` and ``tripwire cameras``."""

    camera: str | None = Field(None, description="camera id from the config file")
    source: str | None = Field(None, description="file, rtsp:// URL or /dev/videoN")
    node: str | None = Field(
        None, description="tripwire cameras: pull only the cameras whose source names this node"
    )
    metrics_host: str = Field("127.0.0.1", description="tripwire cameras: /metrics address")
    metrics_port: int = Field(9109, ge=0, le=65535, description="0 = any free port")


class DetectorSettings(CommonSettings):
    """The detector process: consume motion frames, infer, archive, publish, ack."""

    weights: str = Field(
        "yolo11n.pt", description=".pt/.onnx/.tflite weights, or a .yaml for an untrained model"
    )
    allow_download: bool = Field(False, description="let ultralytics fetch missing weights")
    task: Literal["detect", "classify"] | None = Field(
        None, description="model task; unset = from the weights (a .tflite export needs detect)"
    )
    imgsz: int | None = Field(
        None, ge=32, le=4096, description="inference size; unset = the model's training size"
    )
    conf: float = Field(0.25, ge=0.0, le=1.0, description="minimum box confidence")
    iou: float = Field(0.7, ge=0.0, le=1.0, description="NMS IoU threshold")
    max_det: int = Field(100, ge=1, le=3000, description="most boxes per frame")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda:0, ...")
    batch_size: int = Field(8, ge=1, le=256, description="frames per inference call at most")
    batch_wait_ms: float = Field(
        50.0, ge=0.0, le=10_000, description="wait at most this long to fill a batch"
    )
    fetch_wait_s: float = Field(1.0, gt=0, le=60, description="idle wait for the first frame")
    max_deliveries: int = Field(
        5, ge=1, le=1000, description="dead-letter a message delivered more often than this"
    )
    retry_backoff_s: float = Field(
        0.25, gt=0.0, le=60, description="first retry of a frame held through an outage; doubles"
    )
    stop_timeout_s: float = Field(
        20.0, gt=0, le=3600, description="on SIGTERM, exit within this bound"
    )
    metrics_host: str = Field("127.0.0.1", description="/metrics and /readyz listen address")
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 = any free port")
    keep: Literal["motion", "detections", "every_nth"] = Field(
        "motion",
        description="frames to archive: every motion frame, those with detections, every Nth",
    )
    keep_every_n: int = Field(10, ge=1, le=100_000, description="N for keep=every_nth")
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)

    @model_validator(mode="after")
    def _archive_secret(self) -> DetectorSettings:
        if self.profile != "dev" and self.archive.placeholder_secret(PLACEHOLDER_PASSWORDS):
            raise ValueError(f"archive s3 secret: a placeholder is refused in {self.profile}")
        return self


class MqttSettings(BaseModel):
    """MQTT notifications (Home Assistant style topics); no URL means none are sent."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="mqtt://user:pass@host:1883 (mqtts:// for TLS)")
    topic_prefix: str = Field(
        "tripwire",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="topics <prefix>/<camera>/events, <prefix>/<camera>/alerts, <prefix>/available",
    )
    qos: int = Field(1, ge=0, le=2, description="MQTT QoS of every message")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="messages held while down")

    @model_validator(mode="after")
    def _scheme(self) -> MqttSettings:
        if self.url is not None and urlsplit(self.url).scheme not in {"mqtt", "mqtts"}:
            raise ValueError("url must start with mqtt:// or mqtts://")
        return self


class EventsSettings(CommonSettings):
    """The events function: consumes results and event messages, writes the events db,
    decides alerts, notifies."""

    events_db: StoreSettings = Field(default_factory=StoreSettings)
    batch_size: int = Field(256, ge=1, le=10_000, description="messages written per transaction")
    fetch_wait_s: float = Field(1.0, gt=0, le=60, description="idle wait for the first message")
    max_deliveries: int = Field(
        5, ge=1, le=1000, description="dead-letter a message delivered more often than this"
    )
    retry_backoff_s: float = Field(
        0.25, gt=0, le=60, description="first retry while the database is down; doubles"
    )
    retry_max_s: float = Field(10.0, gt=0, le=600, description="longest wait between retries")
    event_timeout_s: float = Field(
        600.0, gt=0, le=7 * 86_400, description="end an open event by timeout after this silence"
    )
    sweep_interval_s: float = Field(
        10.0, gt=0, le=3600, description="how often timeouts and unsent alerts are checked"
    )
    console_url: AnyHttpUrl = Field(
        AnyHttpUrl("http://127.0.0.1:8090"),
        description="the console's address as operators reach it (links in notifications)",
    )
    webhook_url: AnyHttpUrl | None = Field(None, description="POST each alert as JSON here")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="per webhook attempt")
    webhook_attempts: int = Field(4, ge=1, le=20, description="tries per alert, backoff between")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    metrics_host: str = Field("127.0.0.1", description="/metrics listen address")
    metrics_port: int = Field(9111, ge=0, le=65535, description="0 = any free port")
    stop_timeout_s: float = Field(10.0, gt=0, le=600, description="on SIGTERM, exit within")

    @model_validator(mode="after")
    def _db_secret(self) -> EventsSettings:
        refuse_placeholder(self.events_db.url, self.profile, "events db url")
        refuse_placeholder(self.mqtt.url, self.profile, "mqtt url")
        return self


class ConsoleSettings(CommonSettings):
    """The console: the events API (and the operator's web page) over the events database."""

    host: str = Field("127.0.0.1", description="listen address")
    console_port: int = Field(8090, ge=0, le=65535, description="listen port (0 = any free)")
    events_db: StoreSettings = Field(default_factory=StoreSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    retry_after_s: int = Field(5, ge=1, le=300, description="Retry-After when the db is down")

    @model_validator(mode="after")
    def _db_secret(self) -> ConsoleSettings:
        refuse_placeholder(self.events_db.url, self.profile, "events db url")
        return self
