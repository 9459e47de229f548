"""The operator's pages: server-rendered Jinja2 templates over the same queries as ``/v1``.

Every page needs a browser session (:mod:`console.session`); without one it redirects to the
login form. The pages' script (static/console.js) adds live updates and in-place acknowledge
on top; without it every page still reads and every form still works.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from console.auth import browser_session, token_operator
from console.live import LiveFeed
from console.scaling import chart, lines_chart, read_scaling
from console.session import COOKIE, CSRF_FIELD, Session, Sessions
from tripwire import timeline
from tripwire.camera_config import CamerasFile
from tripwire.contract import CAMERA_ID_RE
from tripwire.errors import BrokerError
from tripwire.eventstore import Store
from tripwire.eventstore.queries import (
    BadCursor,
    EventFilter,
    acknowledge,
    camera_states,
    event_frames,
    get_event,
    list_alerts,
    list_events,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

SINCE = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
OFFLINE_S = 30  # no frame for this long: the camera shows as offline
PAGE = 50
TIMELINE = 600  # frames drawn on an event's page (a long event: the first ones)


class LoginNeeded(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


def when(ns: int | None) -> str:
    if ns is None:
        return "—"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(ns: int | None) -> str:
    if ns is None:
        return "—"
    s = ns / 1e9
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def by_label(boxes: list[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """(label, boxes, best confidence) of one frame's detections, most confident first."""
    found: dict[str, tuple[int, float]] = {}
    for b in boxes:
        n, best = found.get(b["class"], (0, 0.0))
        found[b["class"]] = (n + 1, max(best, b["confidence"]))
    return sorted(((k, n, c) for k, (n, c) in found.items()), key=lambda x: -x[2])


templates.env.filters["when"] = when
templates.env.filters["by_label"] = by_label
templates.env.filters["span"] = seconds
templates.env.globals["now_ns"] = time.time_ns


def _state(request: Request) -> tuple[Store, CamerasFile, Sessions, LiveFeed]:
    s = request.app.state
    return s.store, s.cameras, s.sessions, s.live


def _session(request: Request) -> Session:
    session = browser_session(request)
    if session is None:
        path = request.url.path
        raise LoginNeeded(path if path.startswith("/") and not path.startswith("//") else "/")
    return session


def _page(request: Request, name: str, session: Session, **context: Any) -> HTMLResponse:
    store, _, sessions, live = _state(request)
    if "unacknowledged" not in context:
        with store.read() as conn:
            context["unacknowledged"] = list_alerts(conn, acknowledged=False, camera=None, limit=1)[
                1
            ]
    return templates.TemplateResponse(
        request,
        name,
        {
            "operator": session.operator,
            "csrf": sessions.csrf(session),
            "live_configured": live.broker is not None,
            "live": live.connected,
            **context,
        },
        headers={"Cache-Control": "no-store"},
    )


def render_event_row(event: dict[str, Any]) -> str:
    """One row of the events list (the live feed sends it to the pages)."""
    return templates.env.get_template("_event_row.html").render(e=event)


# -- login ------------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": _local(next)})


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=400)],
    next: Annotated[str, Form(max_length=400)] = "/",
) -> Response:
    _, cameras, sessions, _ = _state(request)
    op = token_operator(cameras, token.strip())
    if op is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _local(next), "error": "That token is not an operator token."},
            status_code=401,
        )
    answer = RedirectResponse(_local(next), status_code=303)
    answer.set_cookie(
        COOKIE,
        sessions.issue(op.name, op.token_hash),
        max_age=sessions.lifetime_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(alias=CSRF_FIELD)] = "") -> Response:
    session = browser_session(request)
    _, _, sessions, _ = _state(request)
    if session is not None and not sessions.csrf_ok(session, csrf):
        raise HTTPException(403, "missing or wrong CSRF token")
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer


def _local(path: str) -> str:
    """``path`` if it is a path on this site, else ``/`` (no open redirect)."""
    ok = path.startswith("/") and not path.startswith("//") and "\\" not in path
    return path if ok else "/"


# -- pages ------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    _session(request)
    return RedirectResponse("/cameras", status_code=303)


def _cameras_context(request: Request) -> dict[str, Any]:
    store, cameras, _, _ = _state(request)
    with store.read() as conn:
        states = camera_states(conn, [c.id for c in cameras.cameras])
    now = time.time_ns()
    for s in states:
        last = s["last_frame_ns"]
        s["offline"] = last is None or now - last > OFFLINE_S * 1_000_000_000
    return {"cameras": states}


@router.get("/cameras")
def cameras_page(request: Request) -> HTMLResponse:
    session = _session(request)
    return _page(request, "cameras.html", session, nav="cameras", **_cameras_context(request))


@router.get("/cameras/grid")
def cameras_grid(request: Request) -> HTMLResponse:
    _session(request)
    context = _cameras_context(request)
    headers = {"Cache-Control": "no-store"}
    return templates.TemplateResponse(request, "_camera_grid.html", context, headers=headers)


@router.get("/events")
def events_page(
    request: Request,
    camera: Annotated[str | None, Query(max_length=63)] = None,
    label: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query(max_length=8)] = None,
    alerts: Annotated[str | None, Query(max_length=8)] = None,
    status: Annotated[str | None, Query(max_length=8)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> HTMLResponse:
    session = _session(request)
    store, cameras, _, _ = _state(request)
    camera = camera or None
    if camera is not None and not CAMERA_ID_RE.match(camera):
        raise HTTPException(422, f"camera {camera[:63]!r} is not a camera id")
    label = (label or "").strip() or None
    after = time.time_ns() - SINCE[since] * 1_000_000_000 if since in SINCE else None
    has_alert = {"only": True, "none": False}.get(alerts or "")
    status = status if status in {"open", "closed", "timeout"} else None
    where = EventFilter(camera, label, after, None, has_alert, None, status)
    try:
        with store.read() as conn:
            page, following = list_events(conn, where, PAGE, cursor or None)
    except BadCursor as exc:
        raise HTTPException(422, f"cursor: {exc}") from None
    filters = {"camera": camera, "label": label, "since": since if after else None,
               "alerts": alerts if has_alert is not None else None, "status": status}  # fmt: skip
    query = {k: v for k, v in filters.items() if v}
    return _page(
        request,
        "events.html",
        session,
        nav="events",
        events=page,
        filters=filters,
        camera_ids=[c.id for c in cameras.cameras],
        first_page=cursor is None,
        next_url=f"/events?{urlencode({**query, 'cursor': following})}" if following else None,
        newest_url=f"/events?{urlencode(query)}" if query else "/events",
    )


@router.get("/events/{event_id}")
def event_page(request: Request, event_id: str) -> HTMLResponse:
    session = _session(request)
    store, _, _, _ = _state(request)
    with store.read() as conn:
        event = get_event(conn, event_id)
        frames = event_frames(conn, event_id) if event is not None else []
    if event is None:
        raise HTTPException(404, f"event {event_id[:96]!r} not found")
    archived = len({(f["capture_ns"], f["seq"]) for f in frames if f["archived"]})
    analysed = len({(f["capture_ns"], f["seq"]) for f in frames})
    return _page(
        request,
        "event.html",
        session,
        nav="events",
        e=event,
        frames=frames[:TIMELINE],
        frames_total=len(frames),
        archived=archived,
        not_archived=analysed - archived,
    )


@router.get("/alerts")
def alerts_page(request: Request, show: str = "all") -> HTMLResponse:
    session = _session(request)
    store, _, _, _ = _state(request)
    with store.read() as conn:
        found, unacknowledged = list_alerts(
            conn, acknowledged=False if show == "open" else None, camera=None, limit=500
        )
    return _page(
        request,
        "alerts.html",
        session,
        nav="alerts",
        alerts=found,
        unacknowledged=unacknowledged,
        show=show,
    )


@router.post("/alerts/{alert_id}/ack")
def ack_form(
    request: Request, alert_id: str, csrf: Annotated[str, Form(alias=CSRF_FIELD)] = ""
) -> Response:
    """Acknowledge from the alerts or event page's form (without the page's script)."""
    session = _session(request)
    store, _, sessions, live = _state(request)
    if not sessions.csrf_ok(session, csrf):
        raise HTTPException(403, "missing or wrong CSRF token")
    with store.begin() as conn:
        found = acknowledge(conn, alert_id, session.operator, time.time_ns())
    if found is None:
        raise HTTPException(404, f"alert {alert_id[:200]!r} not found")
    live.alerts_changed()
    back = request.headers.get("referer", "")
    path = "/" + back.split("/", 3)[3] if back.count("/") >= 3 else "/alerts"
    return RedirectResponse(_local(path), status_code=303)


@router.get("/scaling")
async def scaling_page(
    request: Request, window: Annotated[int | None, Query(ge=60, le=7 * 86_400)] = None
) -> HTMLResponse:
    """``window`` seconds back from now; by default from the first record of the last hour
    (at least 2 minutes), so a short run fills the charts."""
    session = _session(request)
    live: LiveFeed = request.app.state.live
    home: Path = request.app.state.home
    env = os.environ.get(timeline.ENV)
    timeline_path = Path(env) if env else home / "timeline.jsonl"
    metrics_path = home / "metrics.jsonl"
    now = time.time_ns()
    since = now - (window or 3600) * 1_000_000_000
    data = await asyncio.to_thread(read_scaling, timeline_path, metrics_path, since)
    # The console's own samples of the queue, between the scaler's decisions.
    data.depth.points = sorted(data.depth.points + [p for p in live.depths if p[0] >= since])
    if window is None:
        firsts = [s.points[0][0] for s in (data.replicas, data.depth, data.power) if s.points]
        span_s = (now - min(firsts)) / 1e9 * 1.05 if firsts else 3600
        window = int(min(3600, max(120, span_s)))
        since = now - window * 1_000_000_000
    depth_now: int | None = None
    if live.broker is not None and live.connected:
        try:
            depth_now = await asyncio.wait_for(live.broker.depth(), 3)
        except (BrokerError, TimeoutError):  # the page stands without the figure
            depth_now = None
    named = {"replicas": data.replicas, "depth": data.depth, "power": data.power}
    charts = {key: chart(series, since, now) for key, series in named.items()}
    if data.models:  # several models: one replicas line each
        charts["replicas"] = lines_chart(list(data.models.values()), since, now)
    return _page(
        request,
        "scaling.html",
        session,
        nav="scaling",
        s=data,
        charts=charts,
        window=window,
        depth_now=depth_now,
    )
