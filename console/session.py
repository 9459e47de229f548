"""Browser sessions: a signed cookie naming the operator, and the CSRF token tied to it.

The operator types their token once into the login form; the answer sets ``tw_session``
(HttpOnly, SameSite=Strict, Secure over TLS) holding ``name~expiry~fingerprint~nonce`` and an
HMAC of them. Nothing is kept on the server, so any replica holding the same key accepts it:
``TRIPWIRE_SESSION_KEY``, else one derived from the events database URL when that carries a
password (replicas of a cluster share it, and whoever holds it can change the alerts
directly anyway), else a random key per process (a restart logs everyone out). The
fingerprint is a hash of the operator's ``token_hash``: rotating that token in the config ends
its sessions, and so does removing the operator.

State-changing requests made with the cookie (acknowledge, logout) must also carry the CSRF
token (form field ``csrf`` or header ``X-CSRF-Token``): an HMAC of the session's nonce that
only pages served to that session contain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tripwire.camera_config import CamerasFile

COOKIE = "tw_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Session:
    operator: str
    expires: int
    nonce: str


def key_from_db_url(url: str) -> bytes | None:
    """A session key shared by every console on the events database ``url``, if its URL has
    a password to derive it from; None otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if not parsed.password:
        return None
    whole = parsed.render_as_string(hide_password=False)
    return hmac.new(b"tripwire-console-session", whole.encode(), hashlib.sha256).digest()


def _fingerprint(token_hash: str) -> str:
    return hashlib.sha256(("tw-session:" + token_hash).encode()).hexdigest()[:16]


class Sessions:
    """Issues and checks session cookies and their CSRF tokens."""

    def __init__(self, key: bytes | None = None, lifetime_s: int = 12 * 3600) -> None:
        self._key = key or secrets.token_bytes(32)
        self.lifetime_s = lifetime_s

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, operator: str, token_hash: str) -> str:
        """The cookie value for ``operator`` (whose config entry has ``token_hash``)."""
        expires = int(time.time()) + self.lifetime_s
        payload = f"{operator}~{expires}~{_fingerprint(token_hash)}~{secrets.token_hex(8)}"
        return f"{payload}~{self._sign(payload)}"

    def check(self, cookie: str | None, cameras: CamerasFile) -> Session | None:
        """The session in ``cookie`` if it is ours, unexpired and its operator unchanged."""
        if not cookie or len(cookie) > 400:
            return None
        payload, _, mac = cookie.rpartition("~")
        if not hmac.compare_digest(self._sign(payload).encode(), mac.encode()):
            return None
        try:
            name, expires_text, fingerprint, nonce = payload.split("~")
            expires = int(expires_text)
        except ValueError:
            return None
        if expires < time.time():
            return None
        for op in cameras.operators:
            if op.name == name and hmac.compare_digest(
                _fingerprint(op.token_hash).encode(), fingerprint.encode()
            ):
                return Session(name, expires, nonce)
        return None

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.operator}:{session.nonce}")

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(
            self.csrf(session).encode(), (token or "").encode()
        )
