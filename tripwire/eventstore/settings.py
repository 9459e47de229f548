"""Where the events database lives: one URL, SQLite by default."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StoreSettings(BaseModel):
    """``TRIPWIRE_EVENTS_DB__*``: the events database."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        description="postgresql://user:pass@host/db or sqlite:///path; "
        "unset = sqlite under $TRIPWIRE_HOME/events.db",
    )
    pool_size: int = Field(5, ge=1, le=100, description="connections kept (PostgreSQL)")
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="per connection attempt")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("url must start with sqlite:// or postgresql://")
        return value

    def resolved_url(self, home: Path) -> str:
        return self.url or f"sqlite:///{(home / 'events.db').resolve()}"
