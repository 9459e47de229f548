"""``/v1/alerts``: alerts, unacknowledged first, and their acknowledgement."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from console.auth import Operator
from console.deps import StoreDep
from tripwire.contract import CAMERA_ID_RE
from tripwire.eventstore.queries import acknowledge, list_alerts

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("")
def alerts(
    _: Operator,
    store: StoreDep,
    acknowledged: bool | None = None,
    camera: Annotated[str | None, Query(pattern=CAMERA_ID_RE.pattern)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Alerts, unacknowledged first then newest first, and the unacknowledged count."""
    with store.read() as conn:
        found, unacknowledged = list_alerts(
            conn, acknowledged=acknowledged, camera=camera, limit=limit
        )
    return {"alerts": found, "unacknowledged": unacknowledged}


@router.post("/{alert_id}/ack")
def ack(name: Operator, store: StoreDep, alert_id: str, request: Request) -> dict[str, Any]:
    """Acknowledge an alert (the first acknowledgement is kept)."""
    with store.begin() as conn:
        found = acknowledge(conn, alert_id, name, time.time_ns())
    if found is None:
        raise HTTPException(404, f"alert {alert_id[:200]!r} not found")
    request.app.state.live.alerts_changed()  # every open page's count drops
    return found
