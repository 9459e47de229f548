"""Dependency aliases of the console's routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tripwire.archive import Archive
from tripwire.camera_config import CamerasFile
from tripwire.eventstore import Store


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _archive(request: Request) -> Archive:
    archive: Archive = request.app.state.archive
    return archive


def _cameras(request: Request) -> CamerasFile:
    cameras: CamerasFile = request.app.state.cameras
    return cameras


StoreDep = Annotated[Store, Depends(_store)]
ArchiveDep = Annotated[Archive, Depends(_archive)]
CamerasDep = Annotated[CamerasFile, Depends(_cameras)]
