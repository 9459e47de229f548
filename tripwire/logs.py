"""Logging that never writes a secret: every line is scrubbed after it is formatted.

Scrubbing the formatted line (message, arguments and traceback alike) catches what a
third-party library logs too: a URL with ``user:password@`` anywhere in it, and the values
registered with :func:`add_secret` (the settings register the broker password and the S3
secret key when they are loaded).
"""

from __future__ import annotations

import logging
import re

from pydantic import ValidationError

# scheme://user:password@ -> scheme://user:***@ (the password up to the last @ of the netloc).
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s/]*@")
# Shorter values would turn ordinary words into *** (and are no secret worth the name).
_MIN_SECRET = 4
_secrets: set[str] = set()

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_secret(value: str | None) -> None:
    """Scrub ``value`` from every log line from now on."""
    if value and len(value) >= _MIN_SECRET:
        _secrets.add(value)


def redact_text(text: str) -> str:
    """``text`` without URL passwords or registered secrets."""
    text = _URL_CREDENTIALS.sub(r"\1:***@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose output went through :func:`redact_text`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure(level: str) -> None:
    """Root logging to stderr at ``level``, every line redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def settings_error(exc: ValidationError) -> str:
    """A settings validation error as ``path: message`` lines, without the input values
    pydantic would print (a URL with its password, an S3 secret) and redacted."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in err["loc"])
        lines.append(f"{exc.title}: {where + ': ' if where else ''}{err['msg']}")
    return redact_text("\n".join(lines))
