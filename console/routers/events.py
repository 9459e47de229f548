"""``/v1/events``: motion events with their labels, alerts, frames and snapshot."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from console.auth import Operator
from console.deps import ArchiveDep, StoreDep
from console.snapshot import snapshot_jpeg
from tripwire.contract import CAMERA_ID_RE
from tripwire.errors import ArchiveUnavailable, FrameError
from tripwire.eventstore.queries import (
    BadCursor,
    EventFilter,
    best_frame,
    event_frames,
    get_event,
    list_events,
)

router = APIRouter(prefix="/v1/events", tags=["events"])

Ns = Annotated[int | None, Query(ge=0, le=2**63 - 1, description="ns since the epoch")]


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str | None


@router.get("", response_model=EventPage)
def events(
    _: Operator,
    store: StoreDep,
    camera: Annotated[str | None, Query(pattern=CAMERA_ID_RE.pattern)] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    after_ns: Ns = None,
    before_ns: Ns = None,
    has_alert: bool | None = None,
    min_confidence: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    status: Literal["open", "closed", "timeout"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    """Events, newest first; filter by camera, label, start time, alert, confidence."""
    where = EventFilter(camera, label, after_ns, before_ns, has_alert, min_confidence, status)
    try:
        with store.read() as conn:
            page, following = list_events(conn, where, limit, cursor)
    except BadCursor as exc:
        raise HTTPException(422, f"query cursor: {exc}") from None
    return {"events": page, "next_cursor": following}


@router.get("/{event_id}")
def event(_: Operator, store: StoreDep, event_id: str) -> dict[str, Any]:
    """One event: labels, best frame, models, alerts, counts and latency."""
    with store.read() as conn:
        found = get_event(conn, event_id)
    if found is None:
        raise HTTPException(404, f"event {event_id[:96]!r} not found")
    return found


@router.get("/{event_id}/frames")
def frames(_: Operator, store: StoreDep, event_id: str) -> dict[str, Any]:
    """The event's frames in capture order, with each model's detections."""
    with store.read() as conn:
        if get_event(conn, event_id) is None:
            raise HTTPException(404, f"event {event_id[:96]!r} not found")
        return {"frames": event_frames(conn, event_id)}


@router.get(
    "/{event_id}/snapshot.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def snapshot(
    _: Operator,
    store: StoreDep,
    archive: ArchiveDep,
    event_id: str,
    annotated: bool = False,
) -> Response:
    """The event's best frame as JPEG; ``annotated=1`` draws its detections."""

    def lookup() -> tuple[str | None, list[Any]] | None:
        with store.read() as conn:
            return best_frame(conn, event_id)

    found = await asyncio.to_thread(lookup)
    if found is None:
        raise HTTPException(404, f"event {event_id[:96]!r} not found")
    key, boxes = found
    if key is None:
        raise HTTPException(
            404, f"event {event_id}: no archived frame (nothing detected, or the keep policy "
            "did not archive it)",
        )  # fmt: skip
    try:
        data = await archive.get(key)
    except ArchiveUnavailable as exc:
        raise HTTPException(
            503, f"archive unavailable: {exc}", headers={"Retry-After": "5"}
        ) from None
    try:
        jpeg = await asyncio.to_thread(snapshot_jpeg, data, boxes if annotated else None)
    except FrameError as exc:
        raise HTTPException(500, f"event {event_id}: {exc}") from None
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})
