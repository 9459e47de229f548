"""Typed process settings, read from ``TRIPWIRE_*`` environment variables.

One ``BaseSettings`` class per process; nested blocks use ``__`` (for example
``TRIPWIRE_BROKER__NATS__STREAM``). The broker blocks live in ``tripwire.brokers.settings``,
apart from the adapters, so that a process loads only the client library it uses.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tripwire.archive.settings import ArchiveSettings
from tripwire.brokers.settings import NatsSettings, RabbitSettings
from tripwire.eventstore.settings import StoreSettings
from tripwire.logs import add_secret

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
        if self.url is None:
            return self
        parts = urlsplit(self.url)
        if parts.scheme not in {"nats", "tls", "amqp", "amqps"}:
            raise ValueError("url must start with nats://, tls://, amqp:// or amqps://")
        if parts.scheme.startswith("amqp") and parts.username and parts.password is None:
            # pika would fail with a TypeError deep in its URL parsing.
            raise ValueError("url: an amqp:// user name needs its password too")
        return self


def refuse_placeholder(url: str | None, profile: Profile, what: str) -> None:
    """Raise ``ValueError`` for a well-known default password outside the dev profile, and
    for an amqp:// URL without credentials (pika would then log in as guest/guest)."""
    if url is None or profile == "dev":
        return
    parts = urlsplit(url)
    if parts.scheme.startswith("amqp") and not (parts.username and parts.password):
        raise ValueError(f"{what}: amqp:// needs user:password@ in the {profile} profile")
    password = parts.password
    if password is not None and password.lower() in PLACEHOLDER_PASSWORDS:
        raise ValueError(f"{what}: a placeholder password is refused in the {profile} profile")


ENV_PREFIX = "TRIPWIRE_"
# Variables under the prefix that are read outside the settings classes.
OTHER_VARIABLES = frozenset({"TRIPWIRE_TIMELINE"})
# Settings classes defined beside their process rather than here: imported (only when a
# variable is unknown to the classes above) so that their variables are known too.
SETTINGS_MODULES = ("tripwire.wake.service",)


def _settings_classes(cls: type[CommonSettings]) -> list[type[CommonSettings]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _settings_classes(sub)
    return out


def unknown_variables(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """``TRIPWIRE_*`` variables that no process's settings know (``TRIPWIRE_PROFLE``).

    Judged against every process's settings, not only the running one's: one environment
    (a shell, ``tripwire up``) often serves the gateway and the detector alike. Nested
    keys (``TRIPWIRE_BROKER__URLL``) are left to the nested models' ``extra="forbid"``.
    """

    def unknown() -> list[str]:
        known = {name for cls in _settings_classes(CommonSettings) for name in cls.model_fields}
        out = []
        for key in environ:
            upper = key.upper()
            if not upper.startswith(ENV_PREFIX) or upper in OTHER_VARIABLES:
                continue
            if upper.removeprefix(ENV_PREFIX).split("__")[0].lower() not in known:
                out.append(key)
        return sorted(out)

    if not (found := unknown()):
        return found
    for module in SETTINGS_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    return unknown()


class CommonSettings(BaseSettings):
    # hide_input_in_errors: a validation error must not echo a URL with its password or
    # an S3 secret (pydantic prints input_value by default).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", hide_input_in_errors=True
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

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: Any) -> Any:
        # pydantic-settings ignores environment variables it has no field for, whatever
        # extra="forbid" says: a typo like TRIPWIRE_PROFLE=prod would pass silently.
        if unknown := unknown_variables(os.environ):
            raise ValueError(f"unknown environment variable(s): {', '.join(unknown)}")
        return data

    @model_validator(mode="after")
    def _secrets(self) -> CommonSettings:
        refuse_placeholder(self.broker.url, self.profile, "broker url")
        if self.broker.url:
            add_secret(urlsplit(self.broker.url).password)
        return self


class GatewaySettings(CommonSettings):
    """The edge process: HTTP ingest + motion function + publish."""

    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8080, ge=0, le=65535, description="listen port (0 = any free port)")
    max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="413 above this body size"
    )
    max_frame_pixels: int = Field(
        16_777_216,
        ge=64 * 64,
        le=16384 * 16384,
        description="413 above this width x height, read from the header before decoding",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="close a connection whose request headers take longer"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=600, description="408 when a frame's body takes longer to arrive"
    )
    internal_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve /metrics and /docs only on this port, cameras on `port`; "
        "unset = everything on `port`",
    )
    tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain): serve HTTPS on every port; unset = HTTP"
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile")
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

    @model_validator(mode="after")
    def _ports(self) -> GatewaySettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        if self.internal_port is not None and self.internal_port == self.port != 0:
            raise ValueError("internal_port must differ from port")
        return self


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
    models_dir: Path | None = Field(
        None,
        description="with --model: load <models_dir>/<file name of the model's weights> "
        "(a pod's fetched weights) instead of the path the config gives",
    )
    model: str | None = Field(
        None,
        description="serve this model of the config's models: section (its weights, task, "
        "device, batch, imgsz replace these settings); unset = the one model of these settings",
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
        if self.archive.s3 is not None:
            add_secret(self.archive.s3.secret_key.get_secret_value())
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
    session_key: SecretStr | None = Field(
        None, description="signs login sessions; set the same on every replica (default: random)"
    )

    @model_validator(mode="after")
    def _db_secret(self) -> ConsoleSettings:
        refuse_placeholder(self.events_db.url, self.profile, "events db url")
        return self
