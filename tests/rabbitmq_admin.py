"""The machine RabbitMQ's management API, for tests that inspect or break the broker."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

MANAGEMENT = "http://127.0.0.1:15672"


def admin(method: str, path: str) -> Any:
    """Call the management API as guest; None for 404."""
    request = urllib.request.Request(
        f"{MANAGEMENT}/api/{path}",
        method=method,
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return json.loads(body) if body else None
