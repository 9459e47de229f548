"""Simulated cameras: push JPEG frames to a gateway, paced per camera. The one simulator of
the demo, the energy benchmark and the camera load test (``loadtest.cameras``).

A camera plays a synthetic :class:`~tripwire.app.scenes.Scene` (frames rendered on demand, in a
worker thread), a clip, or frames rendered ahead. It keeps its own schedule: frame k is due
at start + k/fps; a frame that cannot be sent on time is skipped, not queued, like a real
camera whose uploads fall behind (unless the caller needs every frame sent). How a frame
travels is the caller's ``post``: :func:`http_post` (httpx, keep-alive), or the load test's
own lighter client.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx

from tripwire.app.scenes import Scene
from tripwire.errors import Unavailable
from tripwire.retry import retry

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


# What a camera learns from one POST: the HTTP status ("202", "503", or the transport error's
# name), whether the gateway saw motion in the frame and whether it published it.
Answer = tuple[str, bool, bool]
# Send frame ``index`` (its bytes, its capture time in ns) and return the gateway's answer.
Post = Callable[[int, bytes, int], Awaitable[Answer]]


@dataclass
class CameraStats:
    sent: int = 0
    skipped: int = 0
    motion: int = 0
    published: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    late_s_max: float = 0.0  # with skip_late off: the latest a frame left after its due time

    @property
    def accepted(self) -> int:
        return self.statuses["202"]

    @property
    def errors(self) -> int:
        """Frames the gateway did not take (any answer but 202, transport errors)."""
        return self.sent - self.accepted


@dataclass
class SimulatedCamera:
    """One camera: frame k is due at start + k/fps."""

    camera_id: str
    token: str
    source: FrameSource | Sequence[bytes]  # rendered on demand (in a thread), or ready, looped
    fps: float
    stats: CameraStats = field(default_factory=CameraStats)

    async def run(
        self,
        post: Post,
        duration_s: float,
        stop: asyncio.Event | None = None,
        *,
        start_ns: int | None = None,
        skip_late: bool = True,
        stamp_due: bool = False,
    ) -> CameraStats:
        """Send ``duration_s * fps`` frames from ``start_ns`` (default now) unless ``stop`` is
        set first. ``skip_late``: a frame more than a period late is dropped, as a camera
        whose uploads fall behind drops it; off, every frame goes (the energy benchmark's
        equal work) and ``late_s_max`` says how late they went. A frame's capture time
        (``X-Capture-Ns``) is when it is sent, or with ``stamp_due`` its place on the
        schedule, so that the gate paces every run alike (the energy benchmark)."""
        period_ns = round(1e9 / self.fps)
        start_ns = time.time_ns() if start_ns is None else start_ns
        for index in range(round(duration_s * self.fps)):
            if stop is not None and stop.is_set():
                break
            due_ns = start_ns + index * period_ns
            late_s = (time.time_ns() - due_ns) / 1e9
            if late_s < 0:
                await asyncio.sleep(-late_s)
            elif skip_late and late_s > period_ns / 1e9:
                self.stats.skipped += 1
                continue
            else:
                self.stats.late_s_max = max(self.stats.late_s_max, late_s)
            if callable(self.source):
                body = await asyncio.to_thread(self.source, index)
            else:
                body = self.source[index % len(self.source)]
            sent = time.perf_counter()
            capture_ns = due_ns if stamp_due else time.time_ns()
            status, motion, published = await post(index, body, capture_ns)
            self.stats.latencies_s.append(time.perf_counter() - sent)
            self.stats.sent += 1
            self.stats.statuses[status] += 1
            self.stats.motion += motion
            self.stats.published += published
        return self.stats


class _Busy(Unavailable):
    """The gateway answered 503 (its broker is busy) or could not be reached."""


def http_post(
    client: httpx.AsyncClient,
    base_url: str,
    camera_id: str,
    token: str,
    *,
    busy_attempts: int = 1,
) -> Post:
    """POST frames with ``client``; a 503 or a transport error is tried up to
    ``busy_attempts`` times (the energy benchmark's equal work), then counted."""
    url = f"{base_url}/v1/cameras/{camera_id}/frames"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}

    async def attempt(index: int, body: bytes, capture_ns: int) -> Answer:
        extra = {"X-Capture-Ns": str(capture_ns), "X-Seq": str(index)}
        try:
            response = await client.post(url, content=body, headers={**headers, **extra})
        except httpx.HTTPError as exc:
            raise _Busy(type(exc).__name__) from None
        if response.status_code == 503:
            raise _Busy("503")
        if response.status_code != 202:
            return str(response.status_code), False, False
        answer = response.json()
        return "202", bool(answer["motion"]), bool(answer["published"])

    async def post(index: int, body: bytes, capture_ns: int) -> Answer:
        try:
            return await retry(
                lambda: attempt(index, body, capture_ns),
                first_s=0.5,
                max_s=2.0,
                attempts=busy_attempts,
            )
        except _Busy as exc:
            return str(exc), False, False

    return post
