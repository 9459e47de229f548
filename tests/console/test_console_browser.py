"""The console in a real browser (Debian's headless Chromium through Selenium) over a real
pipeline: ``tripwire up`` with the COCO TFLite model, the people1 clip pushed as a camera.
An operator logs in, sees the event appear live (no reload) with its annotated snapshot,
opens it, plays its clip, acknowledges its alert and sees the count drop; a wrong token
cannot log in; no page loads anything from off-site.

Screenshots go to ``$CONSOLE_SCREENSHOTS`` (else a temporary folder, printed)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.detector_harness import need_ultralytics

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from loadtest import chromium as browser
from loadtest.console_run import Run, push_clip, running_pipeline

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def pipeline(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    need_ultralytics()
    if why := browser.missing():
        pytest.skip(why)
    with running_pipeline(tmp_path_factory.mktemp("console-run")) as run:
        yield run


@pytest.fixture(scope="module")
def driver(pipeline: Run) -> Iterator[WebDriver]:
    with browser.chromium() as made:
        yield made


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\n[console screenshots] {folder}")
    return folder


def log_in(driver: WebDriver, run: Run, token: str) -> None:
    driver.get(f"{run.console_url}/login?next=/events")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login-button").click()


def unacknowledged(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "alert-count").text)


@pytest.mark.timeout(600)
def test_a_wrong_token_cannot_log_in(driver: WebDriver, pipeline: Run, shots: Path) -> None:
    log_in(driver, pipeline, "not-" + pipeline.operator_token)
    error = browser.wait_until(lambda: driver.find_element(By.ID, "login-error"), "error", 30)
    assert "not an operator token" in error.text
    assert driver.get_cookies() == []
    driver.save_screenshot(str(shots / "login-refused.png"))
    driver.get(f"{pipeline.console_url}/events")  # still no way in
    assert driver.current_url.startswith(f"{pipeline.console_url}/login")


@pytest.mark.timeout(600)
def test_an_operator_sees_the_event_live_plays_its_clip_and_acknowledges_it(
    driver: WebDriver, pipeline: Run, shots: Path
) -> None:
    log_in(driver, pipeline, pipeline.operator_token)
    browser.wait_until(lambda: driver.current_url.endswith("/events"), "events page", 30)
    [cookie] = driver.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert pipeline.operator_token not in driver.current_url
    browser.wait_until(
        lambda: "on" in driver.find_element(By.ID, "live").get_attribute("class"), "live", 30
    )
    driver.execute_script("window.notReloaded = true")
    before = unacknowledged(driver)
    pushed: list[int] = []
    camera = threading.Thread(target=lambda: pushed.append(push_clip(pipeline, every=2, fps=12)))
    camera.start()
    try:
        # The event's row arrives over the live feed, with its alert and annotated snapshot.
        # (Rows are replaced as updates come: read them in one script, not as elements.)
        row = browser.wait_until(
            lambda: driver.execute_script(
                "const r = document.querySelector('#events tr.alerting');"
                "const i = r && r.querySelector('img');"
                "return i && i.complete && i.naturalWidth > 0 ?"
                " {id: r.id, text: r.innerText, src: i.getAttribute('src')} : null"
            ),
            "event with an alert and its snapshot on the page", 300,
        )  # fmt: skip
    finally:
        camera.join(timeout=300)
    assert pushed and pushed[0] > 100
    assert driver.execute_script("return window.notReloaded === true")
    assert "annotated=1" in row["src"]
    assert "person" in row["text"]
    count = browser.wait_until(lambda: unacknowledged(driver) or None, "alert count", 30)
    assert count >= before + 1
    driver.save_screenshot(str(shots / "events-live.png"))

    # Open it: frames with their detections, the clip plays, the alert is there.
    browser.wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, f"#{row['id']} a.evlink").click() or True,
        "a click on the event", 30,
    )  # fmt: skip
    browser.wait_until(lambda: driver.find_elements(By.ID, "timeline"), "event page", 30)
    duration = browser.wait_until(
        lambda: driver.execute_script(
            "const v = document.getElementById('clip'); v.play().catch(() => {});"
            "return v.duration > 0 && isFinite(v.duration) ? v.duration : null"
        ),
        "clip with a duration", 120,
    )  # fmt: skip
    assert duration > 0
    assert driver.execute_script("return document.getElementById('clip').error") is None
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline li.hit")
    note = driver.find_element(By.ID, "clip-note").text
    assert "archived frame" in note
    driver.save_screenshot(str(shots / "event.png"))

    # Acknowledge: the item turns acknowledged, the count in the header drops by one.
    on_page = unacknowledged(driver)
    driver.find_element(By.CSS_SELECTOR, ".alert-item.unack .ack-button").click()
    browser.wait_until(lambda: unacknowledged(driver) == on_page - 1, "count to drop", 30)
    assert driver.find_elements(By.CSS_SELECTOR, ".alert-item.acked")
    driver.save_screenshot(str(shots / "event-acknowledged.png"))
    driver.get(f"{pipeline.console_url}/alerts")
    assert unacknowledged(driver) == on_page - 1
    assert "acknowledged by ann" in driver.find_element(By.CSS_SELECTOR, ".alerts-list").text


@pytest.mark.timeout(600)
def test_every_page_renders_with_nothing_from_off_site(
    driver: WebDriver, pipeline: Run, shots: Path
) -> None:
    if not driver.get_cookies():
        log_in(driver, pipeline, pipeline.operator_token)
        browser.wait_until(lambda: driver.current_url.endswith("/events"), "events page", 30)
    for name in ("cameras", "events", "alerts", "scaling", "docs"):
        driver.get(f"{pipeline.console_url}/{name}")
        if name == "docs":  # Swagger UI rendered from the package's own copy
            browser.wait_until(
                lambda: driver.find_elements(By.CSS_SELECTOR, ".opblock"), "swagger ui", 60
            )
        else:
            assert driver.find_element(By.CSS_SELECTOR, "header.top")
        assert browser.off_site_requests(driver) == [], name
        driver.save_screenshot(str(shots / f"{name}.png"))
