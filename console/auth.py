"""Operator authentication: bearer tokens from the config's ``operators`` (hashed at rest), or
the browser session that the login form gives for one (:mod:`console.session`).

Camera tokens never open the console and operator tokens never push frames: they live in
different lists and are checked by different processes. A request that changes state with
the session cookie (not a bearer token) must carry the session's CSRF token too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from console.session import COOKIE, CSRF_HEADER, Session, Sessions
from tripwire.camera_config import CamerasFile, OperatorConfig
from tripwire.tokens import verify

_bearer = HTTPBearer(auto_error=False, description="an operator token (tripwire token new "
                     "--operator NAME)")  # fmt: skip
_SAFE = {"GET", "HEAD", "OPTIONS"}


def token_operator(cameras: CamerasFile, token: str) -> OperatorConfig | None:
    """The configured operator whose token this is."""
    for op in cameras.operators:
        if verify(token, op.token_hash):
            return op
    return None


def browser_session(request: Request) -> Session | None:
    """The request's valid session cookie, if any."""
    sessions: Sessions = request.app.state.sessions
    return sessions.check(request.cookies.get(COOKIE), request.app.state.cameras)


def operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the operator whose token (or session) this request carries; 401 otherwise."""
    cameras: CamerasFile = request.app.state.cameras
    if credentials is not None and credentials.scheme.lower() == "bearer":
        op = token_operator(cameras, credentials.credentials)
        if op is not None:
            return op.name
    elif (session := browser_session(request)) is not None:
        if request.method not in _SAFE:
            sessions: Sessions = request.app.state.sessions
            if not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                raise HTTPException(403, f"missing or wrong {CSRF_HEADER} for this session")
        return session.operator
    raise HTTPException(
        401, "missing or wrong operator token", headers={"WWW-Authenticate": "Bearer"}
    )


Operator = Annotated[str, Depends(operator)]
