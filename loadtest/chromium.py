"""Headless Chromium from Debian's packages, driven by Selenium through chromium-driver.

Playwright's own browser download needs the network; the system ``chromium`` and
``chromedriver`` (``apt-get install chromium chromium-driver``, scripts/ensure-chromium)
work offline. The flags keep Chromium from reaching out (no sync, component updates or
background networking) and give each run a fresh profile.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
)  # fmt: skip
T = TypeVar("T")


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is absent (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1440, height: int = 900) -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="tw-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(check: Callable[[], T | None], what: str, within: float, every: float = 0.25) -> T:
    """``check()``'s first truthy answer; AssertionError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = check()
        except Exception as exc:  # a page mid-navigation: try again
            last = exc
            got = None
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"no {what} within {within:g}s (last error: {last})")


def off_site_requests(driver: WebDriver) -> list[str]:
    """Resources the current page loaded from anywhere but its own origin."""
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'))"
    )
    return names


def first_contentful_paint_ms(driver: WebDriver) -> float | None:
    value = driver.execute_script(
        "const e = performance.getEntriesByName('first-contentful-paint')[0];"
        "return e ? e.startTime : null"
    )
    return float(value) if value is not None else None


# The page is loaded and every image in view has arrived (lazy ones below stay unloaded).
LOADED_IN_VIEW = (
    "return document.readyState === 'complete' && [...document.images]"
    ".filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete)"
)
