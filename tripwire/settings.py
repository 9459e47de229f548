"""Typed process settings, read from ``TRIPWIRE_*`` environment variables.

One ``BaseSettings`` class per process; nested blocks use ``__`` (for example
``TRIPWIRE_BROKER__NATS__STREAM``). Broker adapters own their own settings blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tripwire.brokers.jetstream import NatsSettings
from tripwire.brokers.rabbitmq import RabbitSettings

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


class MotionSettings(CommonSettings):
    """The pull-mode motion process (``tripwire motion --source``)."""

    camera: str | None = Field(None, description="camera id from the config file")
    source: str | None = Field(None, description="file, rtsp:// URL or /dev/videoN")
