"""Liveness and readiness of the console."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from console.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(store: StoreDep) -> dict[str, str]:
    """The events database answers (503 with Retry-After when it does not)."""
    with store.read() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"status": "ready"}
