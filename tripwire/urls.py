"""Credential-free rendering of broker and storage URLs for logs and error messages."""

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (the user name is kept).

    >>> redact("amqp://guest:secret@rabbit:5672/%2F")
    'amqp://guest:***@rabbit:5672/%2F'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    auth = f"{user}:***@" if parts.password is not None else f"{user}@"
    return urlunsplit((parts.scheme, f"{auth}{host}{port}", parts.path, parts.query, ""))


def scrub(text: str, *urls: str) -> str:
    """Replace every occurrence of each URL's password in ``text`` (for third-party errors)."""
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            text = text.replace(password, "***")
    return text
