"""``tripwire motion``: pull mode end to end: read a source, run motion, publish motion frames.

Reading and analysing block (VideoCapture, OpenCV), so they run in a worker thread one frame
at a time; publishing awaits each broker confirm on the event loop, like the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time

from functions.motion.pull import Pulled, iter_pull
from tripwire.config import load_config
from tripwire.contract import FrameMeta
from tripwire.errors import ConfigError
from tripwire.runtime import connected_broker
from tripwire.settings import MotionSettings

log = logging.getLogger(__name__)


async def run_pull_mode(settings: MotionSettings, *, max_frames: int | None = None) -> int:
    if not settings.camera or not settings.source:
        raise ConfigError("pull mode needs --camera and --source")
    cameras = load_config(settings.config_path())
    camera = cameras.camera(settings.camera)
    if camera is None:
        raise ConfigError(f"camera {settings.camera!r} is not in the config file")
    frames = iter_pull(settings.source, camera, max_frames=max_frames, realtime=True)
    published = read = 0
    async with connected_broker(settings) as broker:
        while (pulled := await asyncio.to_thread(next, frames, None)) is not None:
            read += 1
            if pulled.jpeg is None:
                continue
            meta = _meta(camera.id, pulled)
            await broker.publish(meta.subject, pulled.jpeg, meta.to_headers())
            published += 1
    log.info("camera %s: %d frames read, %d motion frames published", camera.id, read, published)
    print(f"camera {camera.id}: {read} frames read, {published} motion frames published")
    return 0


def _meta(camera: str, pulled: Pulled) -> FrameMeta:
    r = pulled.result
    return FrameMeta(
        camera=camera,
        seq=pulled.seq,
        capture_ns=pulled.capture_ns,
        receive_ns=time.time_ns(),
        width=r.width,
        height=r.height,
        content_type="image/jpeg",
        motion_score=r.score,
        boxes=r.boxes,
        event_id=r.event_id,
    )
