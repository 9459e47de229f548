"""Equal work for ``tripwire bench energy``: frames rendered once, sent whole, on one clock.

A mode must not do less work because the machine was busy. So the frames of every camera are
rendered once (seeded scene or clip) and reused by every mode and repeat; a camera sends every
frame even when it falls behind (late, never skipped); and each frame's ``X-Capture-Ns`` is
its place on the camera's clock (start + k / fps), not the moment it left. The gate paces and
decides on capture time, so it opens on the same frames in every mode.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from tripwire.app.camera_sim import scene_source, video_source
from tripwire.app.energy.workload import CROSSING_S, EnergyOptions
from tripwire.app.scenes import demo_scene


@dataclass
class Clip:
    """One camera's frames, JPEG-encoded, in order."""

    camera_id: str
    fps: float
    frames: list[bytes]


def render(options: EnergyOptions, duty_cycle: float) -> list[Clip]:
    """Every camera's frames for ``duration_s`` (CPU-heavy: do it once, outside the window)."""
    clips = []
    for i in range(options.cameras):
        if options.video is not None:
            source, fps = video_source(options.video)
        else:
            fps = options.fps
            period = CROSSING_S / max(duty_cycle, 1e-3)
            scene = demo_scene(seed=i, fps=fps, period_s=period)
            source = scene_source(scene)
        count = round(options.duration_s * fps)
        clips.append(Clip(f"cam-{i + 1}", fps, [source(k) for k in range(count)]))
    return clips


@dataclass
class SendStats:
    sent: int = 0
    motion: int = 0
    published: int = 0
    errors: int = 0  # answers other than 202, transport errors: frames the gateway did not take
    late_s_max: float = 0.0


@dataclass
class Sender:
    clip: Clip
    token: str
    stats: SendStats = field(default_factory=SendStats)

    async def run(self, client: httpx.AsyncClient, base_url: str, t0_ns: int) -> SendStats:
        url = f"{base_url}/v1/cameras/{self.clip.camera_id}/frames"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "image/jpeg"}
        period_ns = round(1e9 / self.clip.fps)
        for k, body in enumerate(self.clip.frames):
            capture_ns = t0_ns + k * period_ns
            wait = (capture_ns - time.time_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                self.stats.late_s_max = max(self.stats.late_s_max, -wait)
            answer = await self._post(client, url, body, headers, capture_ns, k)
            self.stats.sent += 1
            if answer is None:
                self.stats.errors += 1
                continue
            self.stats.motion += bool(answer["motion"])
            self.stats.published += bool(answer["published"])
        return self.stats

    async def _post(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: bytes,
        headers: dict[str, str],
        capture_ns: int,
        seq: int,
    ) -> dict[str, object] | None:
        # A 503 (broker busy) is retried: dropping it would make this mode's work smaller.
        for attempt in range(5):
            try:
                response = await client.post(
                    url,
                    content=body,
                    headers={**headers, "X-Capture-Ns": str(capture_ns), "X-Seq": str(seq)},
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if response.status_code == 202:
                answer: dict[str, object] = response.json()
                return answer
            if response.status_code != 503:
                return None
            await asyncio.sleep(0.5 * (attempt + 1))
        return None
