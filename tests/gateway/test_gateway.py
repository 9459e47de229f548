"""The gateway against a real nats-server: every answer of the error table, and publishing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frames import background, jpeg, moving_box_frames, png, static_frames
from tests.gateway_server import drain_motion, running_gateway
from tripwire.camera_config import parse_config
from tripwire.contract import FrameMeta, Header
from tripwire.embedded_nats import EmbeddedNats
from tripwire.settings import BrokerSettings, GatewaySettings
from tripwire.tokens import hash_token, new_token

TOKEN = new_token()
CAMERAS = ["cam-a", "cam-b", "cam-c", "cam-fuzz"]
LIMIT = 4 * 1024 * 1024


def _settings(broker: BrokerSettings | None = None) -> GatewaySettings:
    return GatewaySettings(
        max_frame_bytes=LIMIT,
        broker=broker or BrokerSettings(publish_timeout_s=2.0),
        retry_after_s=3,
    )


def _cameras(ids: list[str]) -> object:
    # No calibration and quick debounce so that short test sequences are decisive.
    motion = {
        "calibration_frames": 2,
        "frames_to_open": 2,
        "analysis_fps": 0,
        "max_publish_fps": 100,
    }
    return parse_config(
        {
            "defaults": {"motion": motion},
            "cameras": [{"id": c, "token_hash": hash_token(TOKEN)} for c in ids],
        }
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    nats = EmbeddedNats.start(tmp_path_factory.mktemp("gw-nats"))
    yield nats
    nats.stop()


@pytest.fixture(scope="module", params=["fast-path", "fastapi-route"])
def gateway(server: EmbeddedNats, request: pytest.FixtureRequest) -> Iterator[str]:
    """The gateway as ``tripwire gateway`` serves it, then as the plain FastAPI app: the
    ingest fast path and the documented route must give the same answers."""
    fast = request.param == "fast-path"
    cameras = _cameras(CAMERAS)
    with running_gateway(_settings(), cameras, server.url, fast_path=fast) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=10) as c:
        yield c


def _post(
    client: httpx.Client,
    camera: str,
    body: bytes,
    *,
    token: str | None = TOKEN,
    content_type: str = "image/jpeg",
    **headers: str,
) -> httpx.Response:
    h = {"Content-Type": content_type, **headers}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return client.post(f"/v1/cameras/{camera}/frames", content=body, headers=h)


def test_health_ready_metrics(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["broker"] == "nats"
    text = client.get("/metrics").text
    assert "tripwire_frames_received_total" in text and "tripwire_broker_connected 1.0" in text
    assert client.get("/openapi.json").json()["paths"]["/v1/cameras/{camera_id}/frames"]


# Each case: (what it checks, request pieces, expected status, words the detail must contain)
ERROR_CASES = [
    ("no token", dict(token=None), 401, "token not accepted"),
    ("wrong token", dict(token="nope"), 401, "token not accepted"),
    # the same answer as a wrong token: camera ids cannot be listed
    # (tests/gateway/test_gateway_security.py)
    ("unknown camera", dict(camera="cam-zzz"), 401, "token not accepted"),
    ("wrong type", dict(content_type="text/plain"), 415, "image/jpeg"),
    ("truncated png", dict(body="png-truncated", content_type="image/png"), 422, "truncated PNG"),
    ("jpeg type, png body", dict(body="png"), 422, "not a JPEG"),
    ("random bytes", dict(body=b"hello world"), 422, "not a JPEG"),
    ("truncated jpeg", dict(body="truncated"), 422, "cam-a"),
    ("over the size limit", dict(body=b"\xff\xd8\xff" + bytes(LIMIT)), 413, "over"),
    ("sequence not a number", dict(headers={"X-Seq": "abc"}), 422, "header x-seq"),
    ("negative capture time", dict(headers={"X-Capture-Ns": "-5"}), 422, "header x-capture-ns"),
]


@pytest.mark.parametrize("name,req,status,words", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_table(
    client: httpx.Client, name: str, req: dict[str, object], status: int, words: str
) -> None:
    good = jpeg(background())
    body = req.get("body", good)
    if body == "png":
        body = png(background())
    elif body == "png-truncated":
        body = png(background())[:100]
    elif body == "truncated":
        body = good[: len(good) // 3]
    resp = _post(
        client,
        str(req.get("camera", "cam-a")),
        body,  # type: ignore[arg-type]
        token=req.get("token", TOKEN),  # type: ignore[arg-type]
        content_type=str(req.get("content_type", "image/jpeg")),
        **req.get("headers", {}),  # type: ignore[arg-type]
    )
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"]


def test_only_the_ingest_route_takes_the_fast_path(client: httpx.Client) -> None:
    """Other methods and neighbouring paths are FastAPI's: 405 and 404, never a frame."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    frame = jpeg(background())
    assert client.get("/v1/cameras/cam-a/frames").status_code == 405
    extra = client.post("/v1/cameras/cam-a/frames/x", content=frame, headers=headers)
    assert extra.status_code == 404
    nested = client.post("/v1/cameras/a/b/frames", content=frame, headers=headers)
    assert nested.status_code == 404


def test_a_wrong_token_is_refused_after_the_right_one_was_accepted(client: httpx.Client) -> None:
    """The gateway remembers a camera's verified token; that must not let others in."""
    frame = jpeg(background())
    assert _post(client, "cam-b", frame).status_code == 202
    assert _post(client, "cam-b", frame, token=TOKEN[:-1]).status_code == 401
    assert _post(client, "cam-b", frame, token=TOKEN + "x").status_code == 401
    assert _post(client, "cam-c", frame, token="nope").status_code == 401
    assert _post(client, "cam-b", frame).status_code == 202


def test_size_checked_before_body_is_read(gateway: str) -> None:
    """A declared 1 GB body is refused from the headers alone, without sending any of it."""
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), 5) as sock:
        sock.sendall(
            f"POST /v1/cameras/cam-a/frames HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
            f"\r\nContent-Type: image/jpeg\r\nContent-Length: {10**9}\r\n\r\n".encode()
        )
        sock.settimeout(5)
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply


def test_static_scene_publishes_nothing_and_motion_publishes_with_headers(
    client: httpx.Client, server: EmbeddedNats
) -> None:
    asyncio.run(drain_motion(server.url, "cam-b", 0.2))
    for i, frame in enumerate(static_frames(12)):
        r = _post(client, "cam-b", frame, **{"X-Capture-Ns": str(1_000 + i), "X-Seq": str(i)})
        assert r.status_code == 202 and r.json()["motion"] is False, r.text
    assert asyncio.run(drain_motion(server.url, "cam-b", 0.5)) == []

    frames = moving_box_frames(12)
    answers = [
        _post(client, "cam-b", f, **{"X-Seq": str(100 + i)}).json() for i, f in enumerate(frames)
    ]
    published = [a for a in answers if a["published"]]
    assert published and all(a["motion"] and a["event_id"] for a in published)
    got = asyncio.run(drain_motion(server.url, "cam-b"))
    assert len(got) == len(published)
    for body, headers in got:
        meta = FrameMeta.from_headers(headers)
        assert body == frames[meta.seq - 100]  # the JPEG bytes exactly as the camera sent them
        assert (meta.width, meta.height, meta.content_type) == (1280, 720, "image/jpeg")
        assert meta.boxes and meta.motion_score > 0 and meta.event_id
        assert headers[Header.ID] == meta.message_id


def test_png_frames_are_accepted(client: httpx.Client) -> None:
    r = _post(client, "cam-c", png(background()), content_type="image/png")
    assert r.status_code == 202 and r.json()["motion"] is False


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: b"\xff\xd8\xff" + b),
        st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    ),
    content_type=st.sampled_from(["image/jpeg", "image/png", "image/gif", "", "image/jpeg; q=1"]),
    camera=st.sampled_from(["cam-fuzz", "CAM", "x" * 70, "cam-fuzz%2e"]),
    auth=st.sampled_from([f"Bearer {TOKEN}", "Bearer", "Basic abc", "", f"bearer {TOKEN}"]),
    seq=st.sampled_from(["", "1", "-1", "abc", "9" * 30]),
)
def test_fuzz_never_5xx(
    client: httpx.Client, body: bytes, content_type: str, camera: str, auth: str, seq: str
) -> None:
    headers = {"Content-Type": content_type, "Authorization": auth}
    if seq:
        headers["X-Seq"] = seq
    r = client.post(f"/v1/cameras/{camera}/frames", content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)


def test_broker_down_is_503_with_retry_after(tmp_path: Path) -> None:
    nats = EmbeddedNats.start(tmp_path / "nats")
    try:
        with (
            running_gateway(_settings(), _cameras(["cam-a"]), nats.url) as url,
            httpx.Client(base_url=url, timeout=15) as c,
        ):
            assert c.get("/readyz").status_code == 200
            nats.stop()
            deadline = time.monotonic() + 10
            while c.get("/readyz").status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert c.get("/readyz").status_code == 503
            r = _post(c, "cam-a", moving_box_frames(1)[0])
            assert r.status_code == 503 and r.headers["Retry-After"] == "3"
            assert "broker" in r.json()["detail"]
    finally:
        nats.stop()


def test_motion_gate_off_publishes_every_frame(server: EmbeddedNats) -> None:
    """``motion_gate`` false (mode (a) of ``tripwire bench energy``): a still scene is
    published frame by frame, with no motion claimed and no event."""
    settings = _settings().model_copy(update={"motion_gate": False})
    asyncio.run(drain_motion(server.url, "cam-c", 0.2))
    frames = static_frames(5)
    with (
        running_gateway(settings, _cameras(["cam-c"]), server.url) as url,  # type: ignore[arg-type]
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        answers = [_post(client, "cam-c", f, **{"X-Seq": str(i)}) for i, f in enumerate(frames)]
        # only the header is read, but a frame without one is still refused
        assert _post(client, "cam-c", b"\xff\xd8\xff\x00junk").status_code == 422
    assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
    assert all(r.json()["published"] and not r.json()["motion"] for r in answers)
    got = asyncio.run(drain_motion(server.url, "cam-c"))
    assert sorted(FrameMeta.from_headers(h).seq for _, h in got) == list(range(5))
    for body, headers in got:
        meta = FrameMeta.from_headers(headers)
        assert body == frames[meta.seq]
        assert (meta.width, meta.height, meta.event_id) == (1280, 720, None)
