"""The console's pages without a browser (the browser checks are in test_console_browser):
login sets a strict session cookie and a wrong token gets none, pages need the session,
acknowledge needs the session's CSRF token, the bearer API still works, clips are real
video that says which frames the keep policy left out, and nothing served points off-site."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from console.app import STATIC, create_app
from console.session import key_from_db_url
from functions.events.alerts import AlertRules
from tests.console.test_console_api import PERSON, TOKEN, config
from tests.event_factory import T0, S, closed, opened, result
from tripwire.archive.local import LocalArchive
from tripwire.eventstore import Store
from tripwire.eventstore.writer import record_close, record_open, record_result

EV = f"cam-1-{T0}"
TEMPLATES = Path(STATIC).parent / "templates"
EXTERNAL = re.compile(rb"""(?:src|href|action|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.I)


def frame(i: int) -> bytes:
    image = np.full((360, 640, 3), 40, np.uint8)
    cv2.rectangle(image, (50 + 20 * i, 100), (150 + 20 * i, 300), (200, 200, 200), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


@pytest.fixture
def app_parts(tmp_path: Path) -> Iterator[tuple[Store, LocalArchive]]:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = Store(url)
    store.migrate()
    # Six analysed frames; the keep policy archived four of them (seq 3 and 5 not).
    found = [
        result("cam-1", i, T0 + i * S // 4, [PERSON], event_id=EV, size=(640, 360),
               frame_key=None if i in (3, 5) else "auto")
        for i in range(6)
    ]  # fmt: skip

    async def archived() -> None:
        writer = LocalArchive(tmp_path / "archive", fsync=False)
        await writer.ensure()
        for i, r in enumerate(found):
            if r.archive.frame is not None:
                await writer.put(r.archive.frame, frame(i), "image/jpeg", {})
        await writer.close()

    asyncio.run(archived())
    rules = AlertRules(config().alerts, {})
    with store.begin() as conn:
        record_open(conn, opened("cam-1", EV, T0), T0)
        for r in found:
            record_result(conn, r, T0)
            rules.evaluate(conn, r, T0)
        record_close(conn, closed("cam-1", EV, T0 + 2 * S), T0)
    yield store, LocalArchive(tmp_path / "archive", fsync=False)


@pytest.fixture
def browser(app_parts: tuple[Store, LocalArchive]) -> Iterator[TestClient]:
    store, archive = app_parts
    with TestClient(create_app(config(), store, archive), follow_redirects=False) as made:
        yield made


def log_in(client: TestClient, token: str = TOKEN) -> str:
    """Log in; the CSRF token of the session (from the page it lands on)."""
    answer = client.post("/login", data={"token": token, "next": "/events"})
    assert answer.status_code == 303, answer.text
    page = client.get("/events")
    assert page.status_code == 200
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_login_sets_a_strict_session_cookie_and_a_wrong_token_gets_none(
    browser: TestClient,
) -> None:
    assert browser.get("/events").headers["location"] == "/login?next=/events"
    form = browser.get("/login?next=/events")
    assert 'method="post" action="/login"' in form.text and 'type="password"' in form.text
    wrong = browser.post("/login", data={"token": "not-a-token"})
    assert wrong.status_code == 401 and "not an operator token" in wrong.text
    assert "set-cookie" not in wrong.headers
    good = browser.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert good.headers["location"] == "/"  # no open redirect
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert TOKEN not in cookie and TOKEN not in good.headers["location"]
    assert browser.get("/events").status_code == 200
    # Over TLS the cookie is Secure.
    tls = TestClient(browser.app, base_url="https://testserver", follow_redirects=False)
    assert "Secure" in tls.post("/login", data={"token": TOKEN}).headers["set-cookie"]
    # A forged or edited cookie is no session.
    browser.cookies.set("tw_session", "ann~9999999999~0000~00~AAAA")
    assert browser.get("/events").status_code == 303


def test_every_page_renders_for_a_session(browser: TestClient) -> None:
    log_in(browser)
    for path in ("/cameras", "/cameras/grid", "/events", f"/events/{EV}", "/alerts",
                 "/scaling", "/events?camera=cam-1&label=person&since=7d&alerts=only"):  # fmt: skip
        answer = browser.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    events = browser.get("/events").text
    assert f'id="ev-{EV}"' in events and "person 87%" in events and "1 alert" in events
    assert browser.get("/events?camera=cam-2").text.count('id="ev-') == 0
    one = browser.get(f"/events/{EV}").text
    assert "2 analysed frames not archived" in one and "4 archived frames in the clip" in one
    assert browser.get("/events/nope").status_code == 404
    assert browser.get("/events?cursor=%%%").status_code == 422


def test_acknowledge_needs_the_sessions_csrf_token(browser: TestClient) -> None:
    csrf = log_in(browser)
    [alert] = browser.get("/v1/alerts").json()["alerts"]  # the session reads the API
    ack = f"/alerts/{alert['id']}/ack"
    assert browser.post(ack).status_code == 403
    assert browser.post(ack, data={"csrf": "x" + csrf}).status_code == 403
    assert browser.post(f"/v1/alerts/{alert['id']}/ack").status_code == 403
    assert browser.get("/v1/alerts").json()["unacknowledged"] == 1
    done = browser.post(f"/v1/alerts/{alert['id']}/ack", headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200 and done.json()["acknowledged_by"] == "ann"
    assert browser.get("/v1/alerts").json()["unacknowledged"] == 0
    assert "all acknowledged" in browser.get("/alerts").text
    # Bearer tokens still work without any session or CSRF token.
    api = TestClient(browser.app, headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.post(f"/v1/alerts/{alert['id']}/ack").status_code == 200
    # Logging out needs the token too, then the session is gone.
    assert browser.post("/logout").status_code == 403
    out = browser.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303 and 'tw_session=""' in out.headers["set-cookie"]
    browser.cookies.clear()
    assert browser.get("/alerts").status_code == 303


def test_the_clip_is_video_of_the_archived_frames_and_says_what_is_missing(
    browser: TestClient, app_parts: tuple[Store, LocalArchive], tmp_path: Path
) -> None:
    log_in(browser)
    first = browser.get(f"/v1/events/{EV}/clip")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] in {"video/webm", "video/x-msvideo"}
    assert first.headers["x-tripwire-clip-frames"] == "4"
    assert first.headers["x-tripwire-frames-not-archived"] == "2"
    assert first.headers["x-tripwire-clip-cached"] == "0"
    (tmp_path / "clip.video").write_bytes(first.content)
    video = cv2.VideoCapture(str(tmp_path / "clip.video"))
    decoded = 0
    while video.read()[0]:
        decoded += 1
    assert decoded == 4
    again = browser.get(f"/v1/events/{EV}/clip")  # a closed event's clip is kept
    assert again.headers["x-tripwire-clip-cached"] == "1" and again.content == first.content
    stored = list((tmp_path / "archive" / "clips" / "cam-1").rglob("*.webm"))
    assert len(stored) == 1 and stored[0].read_bytes() == first.content
    frame0 = browser.get(f"/v1/events/{EV}/frames/{T0}-0.jpg", params={"width": 320})
    assert frame0.status_code == 200 and frame0.content[:3] == b"\xff\xd8\xff"
    gone = browser.get(f"/v1/events/{EV}/frames/{T0 + 3 * S // 4}-3.jpg")
    assert gone.status_code == 404 and "not archived" in gone.json()["detail"]
    assert browser.get("/v1/events/nope/clip").status_code == 404


def test_nothing_served_points_off_site(browser: TestClient) -> None:
    """Pages and our assets name no external URL at all; /docs loads only local files."""
    log_in(browser)
    served = [browser.get(p).content for p in ("/login", "/cameras", "/events", f"/events/{EV}",
                                                "/alerts", "/scaling")]  # fmt: skip
    for path in STATIC.iterdir():
        if path.is_file():
            served.append(browser.get(f"/static/{path.name}").content)
    for body in served:
        assert b"http://" not in body and b"https://" not in body, body[:200]
    docs = browser.get("/docs")
    assert docs.status_code == 200
    # Swagger UI's own script mentions URLs in strings and licences; what it loads is local.
    assert not EXTERNAL.search(docs.content), docs.text
    for ref in re.findall(r'(?:src|href)="([^"]+)"', docs.text):
        if ref == "data:,":  # no favicon
            continue
        assert ref.startswith("/"), ref
        assert browser.get(ref).status_code == 200, ref
    assert "validatorUrl" in docs.text


def test_replicas_on_one_database_share_sessions_and_strangers_do_not(
    app_parts: tuple[Store, LocalArchive],
) -> None:
    """Two consoles on one PostgreSQL URL (with its password) accept each other's sessions;
    a console on a password-less URL keeps its own random key."""
    store, archive = app_parts
    url = "postgresql://tripwire:s3cret@db:5432/events"
    assert key_from_db_url(url) == key_from_db_url(url) is not None
    assert key_from_db_url(url) != key_from_db_url(url.replace("s3cret", "other"))
    assert key_from_db_url("sqlite:////var/lib/tripwire/events.db") is None
    one, two, stranger = (
        create_app(config(), store, archive, session_key=k)
        for k in (key_from_db_url(url), key_from_db_url(url), None)
    )
    with TestClient(one, follow_redirects=False) as first:
        log_in(first)
        cookie = first.cookies["tw_session"]
    for app, works in ((two, True), (stranger, False)):
        with TestClient(app, follow_redirects=False) as other:
            other.cookies.set("tw_session", cookie)
            assert (other.get("/alerts").status_code == 200) is works
