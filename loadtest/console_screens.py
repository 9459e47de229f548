"""Screenshots of every console page from a real run, for the README and the issue.

    python -m loadtest.console_screens --out /tmp/console-screens

Starts ``tripwire up`` with the COCO TFLite model (../shared/data) and the metrics sampler
beside it (for the scaling page's power chart), logs in through the form in headless
Chromium, pushes the people1 street-crossing clip as a camera at 12 frames/s while the
events page is open, and saves login, events (live), event (clip and frames), alerts,
cameras, scaling and API docs as PNGs in ``--out`` (keep them out of git).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from loadtest import chromium as browser
from loadtest.console_run import TFLITE, push_clip, running_pipeline


def shoot(driver: WebDriver, url: str, path: Path) -> None:
    driver.get(url)
    browser.wait_until(lambda: driver.execute_script(browser.LOADED_IN_VIEW), f"{url} loaded", 60)
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    print(f"  {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.console_screens", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--work", type=Path, help="run folder (default <out>/run)")
    args = parser.parse_args(argv)
    if why := browser.missing():
        raise SystemExit(why)
    if not TFLITE.is_file():
        raise SystemExit(f"{TFLITE} is absent (../shared/data, see its README)")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with running_pipeline(args.work or out / "run") as run, browser.chromium() as driver:
        sampler = subprocess.Popen(
            [sys.executable, "-m", "tripwire.meters", "--seconds", "3600", "--interval", "1",
             "--jsonl", str(run.home / "metrics.jsonl"), "--pid", f"stack={run.process.pid}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            url = run.console_url
            driver.get(f"{url}/login?next=/events")
            driver.save_screenshot(str(out / "login.png"))
            driver.find_element(By.ID, "token").send_keys(run.operator_token)
            driver.find_element(By.ID, "login-button").click()
            browser.wait_until(lambda: driver.current_url.endswith("/events"), "events", 60)
            camera = threading.Thread(target=push_clip, args=(run,), kwargs={"fps": 12})
            camera.start()
            event_id = browser.wait_until(
                lambda: driver.execute_script(
                    "const r = document.querySelector('#events tr.alerting'); return r && r.id"
                ),
                "an event with an alert",
                300,
            ).removeprefix("ev-")
            camera.join()
            time.sleep(6)  # the gateway's next status, the detector's last results
            print(f"screenshots of a real run in {out}:")
            shoot(driver, f"{url}/events", out / "events.png")
            driver.get(f"{url}/events/{event_id}")
            browser.wait_until(
                lambda: driver.execute_script(
                    "const v = document.getElementById('clip');"
                    "if (v && v.duration > 0 && v.paused) v.play().catch(() => {});"
                    "if (v && v.currentTime > 1) v.pause();"
                    "return v && v.duration > 0 && v.currentTime > 1"
                ),
                "the clip",
                120,
            )
            browser.wait_until(lambda: driver.execute_script(browser.LOADED_IN_VIEW), "page", 60)
            driver.save_screenshot(str(out / "event.png"))
            print(f"  {out / 'event.png'}")
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            driver.save_screenshot(str(out / "event-frames.png"))
            print(f"  {out / 'event-frames.png'}")
            shoot(driver, f"{url}/alerts", out / "alerts.png")
            driver.find_element(By.CSS_SELECTOR, ".alert-item.unack .ack-button").click()
            browser.wait_until(
                lambda: driver.find_elements(By.CSS_SELECTOR, ".alert-item.acked"), "ack", 30
            )
            shoot(driver, f"{url}/alerts", out / "alerts-acknowledged.png")
            shoot(driver, f"{url}/cameras", out / "cameras.png")
            shoot(driver, f"{url}/scaling", out / "scaling.png")
            driver.get(f"{url}/docs")
            browser.wait_until(
                lambda: driver.find_elements(By.CSS_SELECTOR, ".opblock"), "swagger ui", 60
            )
            driver.save_screenshot(str(out / "docs.png"))
            print(f"  {out / 'docs.png'}")
        finally:
            os.killpg(sampler.pid, signal.SIGTERM)
            sampler.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
