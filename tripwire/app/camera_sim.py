"""Simulated cameras: push JPEG frames over HTTP (keep-alive) to a gateway, paced per camera.

A camera plays a synthetic :class:`~tripwire.app.scenes.Scene` (frames rendered on demand, in a
worker thread) or loops a video file. It keeps its own schedule: frame k is due at
start + k/fps; a frame that cannot be sent on time is skipped, not queued, like a real
camera whose uploads fall behind.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx

from tripwire.app.scenes import Scene

FrameSource = Callable[[int], bytes]


def scene_source(scene: Scene, quality: int = 80) -> FrameSource:
    return lambda index: scene.jpeg(index, quality)


def video_source(
    path: Path, width: int = 1280, quality: int = 80, max_frames: int = 600
) -> tuple[FrameSource, float]:
    """Decode up to ``max_frames`` of a clip once (resized to ``width``) and loop them."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[bytes] = []
    while len(frames) < max_frames:
        ok, image = cap.read()
        if not ok:
            break
        h, w = image.shape[:2]
        if w != width:
            image = cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(buf.tobytes())
    cap.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be read")
    return (lambda index: frames[index % len(frames)]), float(fps)


@dataclass
class CameraStats:
    sent: int = 0
    skipped: int = 0
    motion: int = 0
    published: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class SimulatedCamera:
    camera_id: str
    token: str
    source: FrameSource
    fps: float
    stats: CameraStats = field(default_factory=CameraStats)

    async def run(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        duration_s: float,
        stop: asyncio.Event | None = None,
    ) -> CameraStats:
        url = f"{base_url}/v1/cameras/{self.camera_id}/frames"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "image/jpeg"}
        period = 1.0 / self.fps
        start = time.monotonic()
        index = 0
        while (now := time.monotonic()) - start < duration_s and not (stop and stop.is_set()):
            due = start + index * period
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > period:  # behind by a whole frame: drop it, as a camera would
                self.stats.skipped += 1
                index += 1
                continue
            body = await asyncio.to_thread(self.source, index)
            capture_ns = time.time_ns()
            sent = time.perf_counter()
            try:
                response = await client.post(
                    url,
                    content=body,
                    headers={**headers, "X-Capture-Ns": str(capture_ns), "X-Seq": str(index)},
                )
                self.stats.latencies_s.append(time.perf_counter() - sent)
                self.stats.statuses[str(response.status_code)] += 1
                if response.status_code == 202:
                    answer = response.json()
                    self.stats.motion += bool(answer["motion"])
                    self.stats.published += bool(answer["published"])
            except httpx.HTTPError as exc:
                self.stats.statuses[type(exc).__name__] += 1
            self.stats.sent += 1
            index += 1
        return self.stats
