"""The console's FastAPI application: the events API under ``/v1/``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from console.routers import alerts, cameras, events, health
from tripwire import __version__
from tripwire.archive import Archive
from tripwire.camera_config import CamerasFile
from tripwire.errors import StoreError, StoreUnavailable
from tripwire.eventstore import Store


def create_app(
    cameras_file: CamerasFile, store: Store, archive: Archive, *, retry_after_s: int = 5
) -> FastAPI:
    """Build the app; it closes ``store`` and ``archive`` at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await archive.close()
            store.close()

    app = FastAPI(
        title="tripwire console",
        version=__version__,
        description="Motion events, their detections, snapshots and alerts; cameras. "
        "Every /v1 route takes `Authorization: Bearer <operator token>`.",
        lifespan=lifespan,
    )
    app.state.cameras = cameras_file
    app.state.store = store
    app.state.archive = archive

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

    for router in (events.router, alerts.router, cameras.router, health.router):
        app.include_router(router)
    return app
