"""The one retry policy: exponential backoff with jitter, retrying only what is transient.

Transient means an :class:`~tripwire.errors.Unavailable` (broker, archive, events database,
webhook receiver out of reach); anything else is permanent and propagates at once. Every
caller states its own backoff and deadline, because they differ for good reasons: a publish
that holds an HTTP request gives up in seconds, a detector holding a frame retries until it
is told to stop. Built on tenacity; callers see only :func:`retry`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
)
from tenacity.stop import stop_base

from tripwire.errors import Unavailable

T = TypeVar("T")

Errors = type[BaseException] | tuple[type[BaseException], ...]
Sleep = Callable[[float], Awaitable[None]]
# Called before each wait: the error of the attempt that failed, the attempt's number (1 =
# the first) and the seconds until the next one.
OnRetry = Callable[[BaseException, int, float], None]


def backoff(first_s: float, max_s: float, attempt: int) -> float:
    """The wait after failed attempt ``attempt`` (1-based): doubling from ``first_s`` up to
    ``max_s``, +-20 % jitter so that many clients that lost the same server do not return
    in step."""
    doubled: float = first_s * 2.0 ** min(attempt - 1, 60)
    return min(doubled, max_s) * random.uniform(0.8, 1.2)


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    first_s: float,
    max_s: float,
    deadline_s: float | None = None,
    attempts: int | None = None,
    on_retry: OnRetry | None = None,
    sleep: Sleep = asyncio.sleep,
    transient: Errors = Unavailable,
    permanent: Errors = (),
) -> T:
    """``await op()`` until it returns; retry a ``transient`` error (the Unavailable family
    unless the caller says otherwise; never a ``permanent`` one) after :func:`backoff`;
    re-raise the last one when ``attempts`` are used up or the next wait would pass
    ``deadline_s`` (seconds from now).
    None for both: retry until the caller is cancelled or ``sleep`` raises (a stop signal).
    """
    # The first attempt runs bare: a call that succeeds (nearly every one, on the detector's
    # per-frame path) pays nothing for the retry machinery (~45 us a call with it).
    started = time.monotonic()
    try:
        return await op()
    except BaseException as exc:
        if not isinstance(exc, transient) or isinstance(exc, permanent):
            raise
        first: BaseException = exc

    stop: stop_base = stop_never
    if deadline_s is not None:
        stop = stop | stop_before_delay(max(deadline_s - (time.monotonic() - started), 0.0))
    if attempts is not None:
        stop = stop | stop_after_attempt(attempts)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            assert error is not None
            on_retry(error, state.attempt_number, state.next_action.sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(transient) & retry_if_not_exception_type(permanent),
        wait=lambda state: backoff(first_s, max_s, state.attempt_number),
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    replayed = False

    async def attempt() -> T:  # tenacity awaits only a coroutine function, not a lambda's result
        nonlocal replayed
        if not replayed:  # tenacity's attempt 1 is the one made above: its error, at once
            replayed = True
            raise first
        return await op()

    return await retrying(attempt)


def log_retry(log: logging.Logger, what: str, level: int = logging.WARNING) -> OnRetry:
    """An ``on_retry`` that logs ``what``, the error and the wait."""

    def on_retry(error: BaseException, attempt: int, wait_s: float) -> None:
        log.log(level, "%s: %s; attempt %d failed, next in %.1fs", what, error, attempt, wait_s)

    return on_retry
