"""``/v1/cameras``: the configured cameras and their state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from console.auth import Operator
from console.deps import CamerasDep, StoreDep
from tripwire.eventstore.queries import camera_states

router = APIRouter(prefix="/v1/cameras", tags=["cameras"])


@router.get("")
def cameras(_: Operator, store: StoreDep, config: CamerasDep) -> dict[str, Any]:
    """Each camera: last frame time, frames/s, whether an event is open, its last event."""
    with store.read() as conn:
        return {"cameras": camera_states(conn, [c.id for c in config.cameras])}
