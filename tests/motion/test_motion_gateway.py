"""The motion gate through a running gateway (real nats-server): frames without capture
times sent in a burst, and re-learns counted in the gateway's metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_server import running_gateway
from tripwire.app.scenes import Scene, Walker, lights_on
from tripwire.camera_config import parse_config
from tripwire.embedded_nats import EmbeddedNats
from tripwire.settings import BrokerSettings, GatewaySettings
from tripwire.tokens import hash_token, new_token

TOKEN = new_token()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    nats = EmbeddedNats.start(tmp_path_factory.mktemp("gate-nats"))
    # The default motion config: analysis_fps 10, 5 calibration frames.
    cameras = parse_config(
        {"cameras": [{"id": c, "token_hash": hash_token(TOKEN)} for c in ("burst", "lights")]}
    )
    settings = GatewaySettings(broker=BrokerSettings(publish_timeout_s=5.0))
    try:
        with running_gateway(settings, cameras, nats.url) as url:
            yield url
    finally:
        nats.stop()


def _post(client: httpx.Client, camera: str, body: bytes, **headers: str) -> httpx.Response:
    h = {"Content-Type": "image/jpeg", "Authorization": f"Bearer {TOKEN}", **headers}
    return client.post(f"/v1/cameras/{camera}/frames", content=body, headers=h)


def test_burst_without_capture_times_opens_an_event(gateway: str) -> None:
    # 4 s of a 10 fps camera, someone walking in at 1 s, posted back to back without
    # X-Capture-Ns: the gateway stamps them on arrival, milliseconds apart. Paced on those
    # stamps at 10 analyses/s, a handful were analysed (5 of them calibrating) and no
    # event opened.
    scene = Scene(seed=2, walkers=[Walker(x=-120, y=300, w=120, h=260, vx=400, start_s=1.0)])
    bodies = [scene.jpeg(i) for i in range(40)]
    with httpx.Client(base_url=gateway, timeout=30) as client:
        answers = [_post(client, "burst", body) for body in bodies]
    assert all(a.status_code == 202 for a in answers)
    events = {a.json()["event_id"] for a in answers} - {None}
    assert len(events) == 1
    assert answers[-1].json()["motion"]


def test_relearn_is_counted_in_the_metrics(gateway: str) -> None:
    # Lights switched on at 2 s on a 10 fps camera that sends its capture times.
    scene = Scene(seed=4, light=lights_on(2.0))
    with httpx.Client(base_url=gateway, timeout=30) as client:
        for i in range(40):
            answer = _post(
                client, "lights", scene.jpeg(i), **{"X-Capture-Ns": str(scene.capture_ns(i))}
            )
            assert answer.status_code == 202 and not answer.json()["motion"]
        text = client.get("/metrics").text
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("tripwire_motion_relearns_total{") and 'camera="lights"' in line
    ]
    assert len(lines) == 1 and lines[0].endswith(" 1.0"), lines
