"""The gateway tells the events function about motion events: open and close (with the
event's frame counts) and each camera's status, durably on ``tripwire.events.<camera>``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import pytest

from tests.frames import moving_box_frames, static_frames
from tests.gateway_server import running_gateway
from tripwire.camera_config import parse_config
from tripwire.contract import events_subject
from tripwire.embedded_nats import EmbeddedNats
from tripwire.event_messages import CameraStatus, EventClosed, EventOpened, parse_incoming
from tripwire.settings import BrokerSettings, GatewaySettings
from tripwire.tokens import hash_token, new_token

TOKEN = new_token()


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats.start(tmp_path_factory.mktemp("gw-events"))
    yield server
    server.stop()


async def _events(url: str, camera: str, count: int, within: float = 15) -> list[Any]:
    """The event messages of ``camera`` stored in the results stream (at least ``count``)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + within
        while True:
            info = await js.stream_info("TRIPWIRE_RESULTS", subjects_filter=events_subject(camera))
            stored = sum((info.state.subjects or {}).values())
            if stored >= count or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        sub = await js.subscribe(events_subject(camera), ordered_consumer=True)
        got = []
        for _ in range(stored):
            msg = await sub.next_msg(timeout=5)
            got.append(parse_incoming(msg.subject, msg.data))
        return got
    finally:
        await nc.close()


def test_open_close_and_status_with_the_events_counts(nats_server: EmbeddedNats) -> None:
    motion = {"calibration_frames": 2, "frames_to_open": 2, "frames_to_close": 3,
              "analysis_fps": 0, "max_publish_fps": 100}  # fmt: skip
    cameras = parse_config(
        {
            "defaults": {"motion": motion},
            "cameras": [{"id": "cam-e", "token_hash": hash_token(TOKEN)}],
        }
    )
    settings = GatewaySettings(broker=BrokerSettings(), status_interval_s=0.3)
    frames = static_frames(4) + moving_box_frames(10) + static_frames(6)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    with (
        running_gateway(settings, cameras, nats_server.url) as url,
        httpx.Client(base_url=url) as c,
    ):
        answers = []
        for i, frame in enumerate(frames):
            capture = {"X-Capture-Ns": str(1_000_000_000 * (i + 1))}
            reply = c.post(
                "/v1/cameras/cam-e/frames", content=frame, headers={**headers, **capture}
            )
            assert reply.status_code == 202, reply.text
            answers.append(reply.json())
        time.sleep(1.0)  # a few status reports
    messages = asyncio.run(_events(nats_server.url, "cam-e", 3))
    [opened] = [m for m in messages if isinstance(m, EventOpened)]
    [closed] = [m for m in messages if isinstance(m, EventClosed)]
    statuses = [m for m in messages if isinstance(m, CameraStatus)]
    event_ids = {a["event_id"] for a in answers if a["event_id"]}
    assert event_ids == {opened.event_id} == {closed.event_id}
    first = next(i for i, a in enumerate(answers) if a["event_id"])
    last = max(i for i, a in enumerate(answers) if a["event_id"])
    assert opened.capture_ns == 1_000_000_000 * (first + 1)
    assert closed.capture_ns == 1_000_000_000 * (last + 1)
    # Every frame from the opening one to the closing one, as the gateway answered them.
    assert closed.frames_seen == last - first + 1
    assert closed.frames_published == sum(a["published"] for a in answers)
    assert closed.frames_analysed == closed.frames_seen  # analysis_fps 0: every frame
    assert statuses and statuses[-1].frames == len(frames)
    assert any(s.fps > 0 for s in statuses) and statuses[-1].last_frame_ns == 20_000_000_000
    assert statuses[-1].event_id is None  # closed by then
