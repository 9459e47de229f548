"""Tokens and credential redaction."""

from __future__ import annotations

import pytest

from tripwire.tokens import hash_token, new_token, verify
from tripwire.urls import redact, scrub


def test_token_hash_verify() -> None:
    token = new_token()
    stored = hash_token(token)
    assert stored.startswith("sha256:") and token not in stored
    assert verify(token, stored)
    assert not verify(token + "x", stored)
    assert not verify("", stored)
    assert new_token() != token


@pytest.mark.parametrize(
    "url,expected",
    [
        ("amqp://guest:s3cret@rabbit:5672/%2F", "amqp://guest:***@rabbit:5672/%2F"),
        ("nats://u:p@[::1]:4222", "nats://u:***@[::1]:4222"),
        ("nats://token@host:4222", "nats://token@host:4222"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_scrub_removes_password_from_foreign_text() -> None:
    url = "amqp://guest:s3cret@rabbit:5672/"
    assert "s3cret" not in scrub("connect failed: amqp://guest:s3cret@rabbit", url)
