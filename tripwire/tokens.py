"""Camera bearer tokens: generated once, stored only as a hash, checked in constant time.

Tokens are 256 random bits, so a single SHA-256 is enough: there is nothing to brute-force
that a slow password hash would protect.
"""

import hashlib
import hmac
import secrets

PREFIX = "sha256:"


def new_token() -> str:
    """A fresh URL-safe token (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The value to store in the camera config (``sha256:<hex>``)."""
    return PREFIX + hashlib.sha256(token.encode()).hexdigest()


def verify(token: str, stored_hash: str) -> bool:
    """True when ``token`` hashes to ``stored_hash``; the comparison is constant-time."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())
