"""``/v1/events``: motion events with their labels, alerts, frames and snapshot."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel

from console.auth import Operator
from console.clip_store import ClipMissing, event_clip
from console.deps import ArchiveDep, StoreDep
from console.snapshot import snapshot_jpeg
from tripwire.archive import Archive
from tripwire.contract import CAMERA_ID_RE
from tripwire.errors import ArchiveError, ArchiveUnavailable, FrameError
from tripwire.eventstore.queries import (
    BadCursor,
    EventFilter,
    best_frame,
    event_frame,
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


Width = Annotated[int | None, Query(ge=32, le=4096, description="scale down to this width")]


async def _archived_jpeg(
    archive: Archive, key: str, boxes: list[Any] | None, width: int | None, what: str
) -> Response:
    try:
        data = await archive.get(key)
    except ArchiveUnavailable as exc:
        raise HTTPException(
            503, f"archive unavailable: {exc}", headers={"Retry-After": "5"}
        ) from None
    except ArchiveError as exc:
        raise HTTPException(404, f"{what}: not in the archive ({exc})") from None
    try:
        jpeg = await asyncio.to_thread(snapshot_jpeg, data, boxes, width)
    except FrameError as exc:
        raise HTTPException(500, f"{what}: {exc}") from None
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


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
    width: Width = None,
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
    return await _archived_jpeg(
        archive, key, boxes if annotated else None, width, f"event {event_id}"
    )


@router.get(
    "/{event_id}/frames/{capture_ns}-{seq}.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def frame_image(
    _: Operator,
    store: StoreDep,
    archive: ArchiveDep,
    event_id: str,
    capture_ns: Annotated[int, Path(ge=0, le=2**63 - 1)],
    seq: Annotated[int, Path(ge=0, le=2**63 - 1)],
    model: Annotated[str | None, Query(max_length=128)] = None,
    annotated: bool = False,
    width: Width = None,
) -> Response:
    """One analysed frame of the event as JPEG; ``annotated=1`` draws that model's boxes."""

    def lookup() -> tuple[str | None, list[Any]] | None:
        with store.read() as conn:
            return event_frame(conn, event_id, capture_ns, seq, model)

    found = await asyncio.to_thread(lookup)
    what = f"event {event_id[:96]!r} frame {capture_ns}-{seq}"
    if found is None:
        raise HTTPException(404, f"{what} not found")
    key, boxes = found
    if key is None:
        raise HTTPException(404, f"{what}: not archived (keep policy)")
    return await _archived_jpeg(archive, key, boxes if annotated else None, width, what)


@router.get(
    "/{event_id}/clip",
    response_class=Response,
    responses={200: {"content": {"video/webm": {}, "video/x-msvideo": {}}}},
)
async def clip(_: Operator, store: StoreDep, archive: ArchiveDep, event_id: str) -> Response:
    """The event's archived frames as a video: VP8 WebM when this machine can write it, else
    MJPEG in AVI (the Content-Type says which). ``X-Tripwire-Clip-Frames`` counts the frames
    in it, ``X-Tripwire-Frames-Not-Archived`` the analysed frames the keep policy dropped."""
    try:
        made = await event_clip(store, archive, event_id)
    except ClipMissing as exc:
        raise HTTPException(404, str(exc)) from None
    except ArchiveUnavailable as exc:
        raise HTTPException(
            503, f"archive unavailable: {exc}", headers={"Retry-After": "5"}
        ) from None
    except FrameError as exc:
        raise HTTPException(500, f"event {event_id}: {exc}") from None
    return Response(
        made.data,
        media_type=made.content_type,
        headers={
            "X-Tripwire-Clip-Frames": str(made.frames),
            "X-Tripwire-Frames-Not-Archived": str(made.missing),
            "X-Tripwire-Clip-Cached": "1" if made.cached else "0",
            "Cache-Control": "private, max-age=30",
        },
    )
