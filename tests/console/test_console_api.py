"""The events API (the console process's /v1) over a real database and archive: auth, filters
and their errors, snapshots plain and annotated, alerts and acknowledgement, cameras, and a
503 with Retry-After while the database is down."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from functions.events.alerts import AlertRules
from tests.event_factory import T0, S, closed, opened, result, status
from tripwire.alert_rules import AlertRule
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CameraConfig, CamerasFile, OperatorConfig
from tripwire.eventstore import Store
from tripwire.eventstore.writer import record_close, record_open, record_result, record_status
from tripwire.tokens import hash_token

TOKEN = "operator-token-for-tests"
CAMERA_TOKEN_HASH = "sha256:" + "0" * 64
EV = f"cam-1-{T0}"
PERSON = ("person", 0.87, (100.0, 200.0, 300.0, 600.0))


def config() -> CamerasFile:
    return CamerasFile(
        cameras=[CameraConfig(id=f"cam-{i}", token_hash=CAMERA_TOKEN_HASH) for i in (1, 2)],
        operators=[OperatorConfig(name="ann", token_hash=hash_token(TOKEN))],
        alerts=[AlertRule(kind="intrusion", classes=["person"])],
    )


def frame_jpeg() -> bytes:
    image = np.full((720, 1280, 3), 90, np.uint8)
    cv2.rectangle(image, (100, 200), (300, 600), (200, 200, 200), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    best = result("cam-1", 2, T0 + S, [PERSON], event_id=EV, size=(1280, 720))
    key = best.archive.frame
    assert key is not None

    async def archived() -> None:  # what the detector archived
        writer = LocalArchive(tmp_path / "archive", fsync=False)
        await writer.ensure()
        await writer.put(key, frame_jpeg(), "image/jpeg", {})
        await writer.close()

    asyncio.run(archived())
    archive = LocalArchive(tmp_path / "archive", fsync=False)
    rules = AlertRules(config().alerts, {})
    with store.begin() as conn:
        record_open(conn, opened("cam-1", EV, T0), T0)
        for r in (result("cam-1", 1, T0, [], event_id=EV, size=(1280, 720)), best):
            record_result(conn, r, T0)
            rules.evaluate(conn, r, T0)
        record_close(conn, closed("cam-1", EV, T0 + 3 * S), T0)
        record_open(conn, opened("cam-2", "cam-2-1", T0 + 10 * S), T0)
        record_status(conn, status("cam-2", T0 + 11 * S, event_id="cam-2-1"), T0)
    app = create_app(config(), store, archive, retry_after_s=7)
    with TestClient(app) as made:
        made.headers["Authorization"] = f"Bearer {TOKEN}"
        yield made


def test_events_list_as_the_contract_says(client: TestClient) -> None:
    answer = client.get("/v1/events", params={"camera": "cam-1"})
    assert answer.status_code == 200
    [event] = answer.json()["events"]
    assert (event["id"], event["camera"], event["start_ns"], event["end_ns"]) == (
        EV, "cam-1", T0, T0 + 3 * S)  # fmt: skip
    assert event["labels"] == {"person": 0.87}
    assert [a["kind"] for a in event["alerts"]] == ["intrusion"]
    assert event["first_result_latency_s"] == 0.5
    everything = client.get("/v1/events").json()
    assert [e["id"] for e in everything["events"]] == ["cam-2-1", EV]
    assert everything["next_cursor"] is None
    page = client.get("/v1/events", params={"limit": 1}).json()
    following = client.get("/v1/events", params={"limit": 1, "cursor": page["next_cursor"]})
    assert [e["id"] for e in following.json()["events"]] == [EV]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"label": "person"}, [EV]),
        ({"label": "car"}, []),
        ({"has_alert": "true"}, [EV]),
        ({"has_alert": "false"}, ["cam-2-1"]),
        ({"min_confidence": "0.9"}, []),
        ({"after_ns": str(T0 + 5 * S)}, ["cam-2-1"]),
        ({"before_ns": str(T0 + 5 * S), "status": "closed"}, [EV]),
    ],
)
def test_event_filters(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    answer = client.get("/v1/events", params=params)
    assert answer.status_code == 200
    assert [e["id"] for e in answer.json()["events"]] == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"camera": "Cam 1"}, "camera"),
        ({"min_confidence": "2"}, "min_confidence"),
        ({"after_ns": "-1"}, "after_ns"),
        ({"has_alert": "maybe"}, "has_alert"),
        ({"limit": "0"}, "limit"),
        ({"status": "gone"}, "status"),
        ({"cursor": "%%%"}, "cursor"),
    ],
)
def test_bad_filters_are_422_naming_the_field(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    answer = client.get("/v1/events", params=params)
    assert answer.status_code == 422
    assert field in answer.text


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer "])
def test_no_or_wrong_operator_token_is_401(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    client.headers.pop("Authorization")
    for path in ("/v1/events", f"/v1/events/{EV}", f"/v1/events/{EV}/snapshot.jpg", "/v1/alerts",
                 "/v1/cameras"):  # fmt: skip
        answer = client.get(path, headers=headers)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"


def test_one_event_its_frames_and_unknown_ids(client: TestClient) -> None:
    event = client.get(f"/v1/events/{EV}").json()
    assert event["best"]["label"] == "person" and event["frames"]["detected"] == 2
    frames = client.get(f"/v1/events/{EV}/frames").json()["frames"]
    assert [f["seq"] for f in frames] == [1, 2]
    assert frames[1]["boxes"][0]["class"] == "person"
    for path in ("/v1/events/nope", "/v1/events/nope/frames", "/v1/events/nope/snapshot.jpg"):
        assert client.get(path).status_code == 404


def test_snapshot_plain_and_annotated(client: TestClient) -> None:
    plain = client.get(f"/v1/events/{EV}/snapshot.jpg")
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/jpeg"
    assert plain.content == frame_jpeg()  # the archived bytes, not re-encoded
    drawn = client.get(f"/v1/events/{EV}/snapshot.jpg", params={"annotated": 1})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(drawn.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (720, 1280, 3)
    # The box's left edge is drawn in green where the plain frame is uniform.
    b, g, r = (int(v) for v in image[400, 100])
    assert g > 150 and r < 120 and b < 120, (b, g, r)
    # An event without a detected, archived frame says so.
    missing = client.get("/v1/events/cam-2-1/snapshot.jpg")
    assert missing.status_code == 404 and "no archived frame" in missing.json()["detail"]


def test_alerts_and_acknowledge(client: TestClient) -> None:
    listed = client.get("/v1/alerts").json()
    assert listed["unacknowledged"] == 1
    [alert] = listed["alerts"]
    done = client.post(f"/v1/alerts/{alert['id']}/ack")
    assert done.status_code == 200 and done.json()["acknowledged_by"] == "ann"
    assert client.get("/v1/alerts").json()["unacknowledged"] == 0
    assert client.get("/v1/alerts", params={"acknowledged": "false"}).json()["alerts"] == []
    assert client.post("/v1/alerts/nope/ack").status_code == 404


def test_cameras_with_their_state(client: TestClient) -> None:
    cams = {c["id"]: c for c in client.get("/v1/cameras").json()["cameras"]}
    assert set(cams) == {"cam-1", "cam-2"}
    assert cams["cam-2"]["event_open"] is True and cams["cam-2"]["fps"] == 10.0
    assert cams["cam-1"]["event_open"] is False and cams["cam-1"]["last_event"]["id"] == EV


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/events/{event_id}", "/v1/events/{event_id}/snapshot.jpg",
                 "/v1/alerts", "/v1/alerts/{alert_id}/ack", "/v1/cameras"):  # fmt: skip
        assert path in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_database_down_is_503_with_retry_after(tmp_path: Path) -> None:
    down = Store(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", connect_timeout_s=1)
    archive = LocalArchive(tmp_path / "archive", fsync=False)
    with TestClient(create_app(config(), down, archive, retry_after_s=7)) as client:
        auth: dict[str, Any] = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/v1/events", "/readyz", f"/v1/events/{EV}/snapshot.jpg"):
            answer = client.get(path, headers=auth)
            assert answer.status_code == 503, path
            assert answer.headers["retry-after"] == "7"
            assert "unavailable" in answer.json()["detail"]
