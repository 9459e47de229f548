"""Find, build and cache an event's clip (see :mod:`console.clips` for the formats)."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from console.clips import FORMATS, TYPES, Clip, clip_fps, clip_key, encode_clip
from tripwire.archive import Archive
from tripwire.errors import ArchiveError, ArchiveUnavailable, TripwireError
from tripwire.eventstore import Store
from tripwire.eventstore.queries import event_frame_keys
from tripwire.eventstore.tables import events

MAX_FRAMES = 900  # longer events: the first 900 archived frames


class ClipMissing(TripwireError):
    """No clip can be made: unknown event, or none of its frames archived."""


async def event_clip(store: Store, archive: Archive, event_id: str) -> Clip:
    def lookup() -> tuple[str, int, str, list[tuple[int, str, list[Any]]], int] | None:
        with store.read() as conn:
            row = conn.execute(
                sa.select(events.c.camera, events.c.start_ns, events.c.status).where(
                    events.c.id == event_id
                )
            ).first()
            if row is None:
                return None
            kept, missing = event_frame_keys(conn, event_id)
            return row[0], row[1], row[2], kept, missing

    found = await asyncio.to_thread(lookup)
    if found is None:
        raise ClipMissing(f"event {event_id[:96]!r} not found")
    camera, start_ns, status, kept, missing = found
    if not kept:
        raise ClipMissing(
            f"event {event_id}: none of its {missing} analysed frame(s) is archived "
            "(nothing analysed yet, or the keep policy did not archive them)"
        )
    kept = kept[:MAX_FRAMES]
    finished = status != "open"
    if finished:
        for ext, _, content_type in FORMATS:
            key = clip_key(camera, start_ns, event_id, ext)
            try:
                if await archive.exists(key):
                    data = await archive.get(key)
                    return Clip(data, content_type, len(kept), missing, clip_fps(
                        [c for c, _, _ in kept]), cached=True)  # fmt: skip
            except ArchiveUnavailable:
                raise
            except ArchiveError:
                continue
    limit = asyncio.Semaphore(8)

    async def get(key: str) -> bytes | None:
        async with limit:
            try:
                return await archive.get(key)
            except ArchiveUnavailable:
                raise
            except ArchiveError:  # swept by retention since it was recorded: say it, go on
                return None

    got = await asyncio.gather(*(get(key) for _, key, _ in kept))
    frames = [(c, data, boxes) for (c, _, boxes), data in zip(kept, got, strict=True)
              if data is not None]  # fmt: skip
    missing += len(kept) - len(frames)
    if not frames:
        raise ClipMissing(f"event {event_id}: its archived frames are gone from the archive")
    fps = clip_fps([c for c, _, _ in frames])
    data, content_type = await asyncio.to_thread(
        encode_clip, [(d, boxes) for _, d, boxes in frames], fps
    )
    if finished:
        ext = next(e for e, t in TYPES.items() if t == content_type)
        await archive.put(
            clip_key(camera, start_ns, event_id, ext),
            data,
            content_type,
            {"frames": str(len(frames)), "missing": str(missing)},
        )
    return Clip(data, content_type, len(frames), missing, fps)
