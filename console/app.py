"""The console's FastAPI application: the events API under ``/v1/``, the operator's pages
(:mod:`console.pages`), live updates (``/v1/live``) and ``/docs``, all served from files in
the package."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from console import pages
from console.docs import add_docs
from console.live import LiveFeed
from console.routers import alerts, cameras, events, health, live
from console.session import Sessions
from tripwire import __version__
from tripwire.archive import Archive
from tripwire.brokers import Broker
from tripwire.camera_config import CamerasFile
from tripwire.errors import StoreError, StoreUnavailable
from tripwire.eventstore import Store

STATIC = Path(__file__).parent / "static"


def create_app(
    cameras_file: CamerasFile,
    store: Store,
    archive: Archive,
    *,
    retry_after_s: int = 5,
    broker: Broker | None = None,
    session_key: bytes | None = None,
    home: Path = Path(".tripwire"),
) -> FastAPI:
    """Build the app; it closes ``store``, ``archive`` and ``broker`` (the live updates'
    source, unconnected; None: no live updates) at shutdown."""
    feed = LiveFeed(store, broker, pages.render_event_row)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()
            await archive.close()
            store.close()

    app = FastAPI(
        title="tripwire console",
        version=__version__,
        description="Motion events, their detections, snapshots, clips and alerts; cameras. "
        "Every /v1 route takes `Authorization: Bearer <operator token>` (or the session "
        "cookie of the console's login form, with `X-CSRF-Token` on POST).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.cameras = cameras_file
    app.state.store = store
    app.state.archive = archive
    app.state.sessions = Sessions(session_key)
    app.state.live = feed
    app.state.home = home

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"events database unavailable: {exc}"},
            status_code=503,
            headers={"Retry-After": str(retry_after_s)},
        )

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"events database error: {exc}"}, status_code=500)

    @app.exception_handler(pages.LoginNeeded)
    async def login_needed(_: Request, exc: pages.LoginNeeded) -> Response:
        return RedirectResponse(f"/login?next={exc.path}", status_code=303)

    for router in (events.router, alerts.router, cameras.router, health.router, live.router):
        app.include_router(router)
    app.include_router(pages.router)
    add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
