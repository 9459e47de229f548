"""``/v1/live``: server-sent events for the pages (see :mod:`console.live`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from console.auth import Operator
from console.live import END, LiveFeed, sse

router = APIRouter(tags=["live"])

KEEPALIVE_S = 15.0
MAX_STREAM_S = 600.0  # then the browser reconnects (EventSource does it by itself)


@router.get(
    "/v1/live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live(_: Operator, request: Request) -> StreamingResponse:
    """Server-sent events: ``event`` (an event's row changed or is new), ``alerts`` (the
    unacknowledged count), ``camera`` (a camera's state), ``status`` (broker link)."""
    feed: LiveFeed = request.app.state.live
    queue = feed.subscribe()

    async def stream() -> AsyncIterator[str]:
        ends = time.monotonic() + MAX_STREAM_S
        try:
            yield "retry: 3000\n\n"
            yield sse("status", {"live": feed.connected})
            while time.monotonic() < ends:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                if kind == END:  # the console is stopping
                    return
                yield sse(kind, data)
        finally:
            feed.unsubscribe(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
