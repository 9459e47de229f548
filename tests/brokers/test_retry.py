"""The one retry policy: only the Unavailable family is retried, within the caller's bounds."""

from __future__ import annotations

import asyncio
import time

import pytest

from tripwire.errors import (
    ArchiveError,
    BrokerError,
    BrokerRejected,
    BrokerUnavailable,
    StoreUnavailable,
)
from tripwire.retry import retry


def test_a_transient_error_is_retried_until_the_call_succeeds() -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailable("db down")
        return "done"

    assert asyncio.run(retry(op, first_s=0.001, max_s=0.01)) == "done"
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error",
    [
        ArchiveError("access denied"),  # permanent: retrying cannot fix it
        ValueError("a bug"),  # a programming error surfaces as itself, at once
    ],
)
def test_anything_else_fails_at_once(error: Exception) -> None:
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        asyncio.run(retry(op, first_s=0.001, max_s=0.01))
    assert len(calls) == 1


def test_attempts_and_deadline_bound_the_retries() -> None:
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)
        raise BrokerUnavailable("down")

    with pytest.raises(BrokerUnavailable):
        asyncio.run(retry(op, first_s=0.001, max_s=0.001, attempts=4))
    assert len(calls) == 4

    calls.clear()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        asyncio.run(retry(op, first_s=0.05, max_s=0.05, deadline_s=0.3))
    # Waits of ~0.05 s within 0.3 s: a handful of attempts, and never a wait past the deadline.
    assert 2 <= len(calls) <= 8
    assert time.monotonic() - started < 0.3 + 5  # the bound is the deadline, not a timing


def test_a_permanent_subclass_is_not_retried_within_a_retried_family() -> None:
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)
        raise BrokerRejected("too large")

    with pytest.raises(BrokerRejected):
        asyncio.run(
            retry(
                op,
                first_s=0.001,
                max_s=0.01,
                transient=BrokerError,
                permanent=BrokerRejected,
            )
        )
    assert len(calls) == 1
