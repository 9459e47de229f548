"""The console's events page with 10,000 events in the database: page weight and time to
first render in headless Chromium.

    python -m loadtest.console_bench --events 10000 --loads 5

Builds an SQLite events database of ``--events`` events over 8 cameras (each with two
results, labels, and an alert on every 7th) through the events function's own writer, and
archives a frame for the newest page of events (what the page's thumbnails show), then
serves the console in this process and loads ``/events`` ``--loads`` times in Chromium
(fresh cache each time: the first visit of the day). Figures: bytes of the HTML, of the
script and style, and of the thumbnails the first screen loads (decoded body sizes; the rest
are lazy and load on scrolling), server time to first byte, and first-contentful-paint
from Chromium's paint timing (a 1440x900 window). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import uvicorn
from selenium.webdriver.common.by import By

from console.app import create_app
from functions.events.alerts import AlertRules
from loadtest import chromium as browser
from tripwire.alert_rules import AlertRule
from tripwire.archive.local import LocalArchive
from tripwire.camera_config import CameraConfig, CamerasFile, OperatorConfig
from tripwire.embedded_nats import free_port
from tripwire.event_messages import (
    DetectedBox,
    EventClosed,
    EventOpened,
    FrameResult,
    ModelInfo,
)
from tripwire.eventstore import Store
from tripwire.eventstore.writer import record_close, record_open, record_results
from tripwire.tokens import hash_token, new_token

S = 1_000_000_000
CAMERAS = 8
LABELS = ["person", "car", "bicycle", "dog", "truck"]


def _result(camera: str, event_id: str, seq: int, capture_ns: int, label: str) -> FrameResult:
    return FrameResult.model_validate({
        "camera": camera, "seq": seq, "capture_ns": capture_ns, "receive_ns": capture_ns,
        "stored_ns": capture_ns + S // 5, "event_id": event_id, "width": 1280, "height": 720,
        "model": ModelInfo(name="coco"),
        "boxes": [DetectedBox.model_validate({"class": label, "confidence": 0.5 + seq % 5 / 10,
                                              "xyxy": (200.0, 150.0, 520.0, 650.0)})],
        "archive": {"frame": f"frames/{camera}/{capture_ns:019d}-{seq}.jpg",
                    "detections": f"detections/{camera}/{capture_ns:019d}-{seq}.json"},
    })  # fmt: skip


def build(folder: Path, events: int, page: int) -> tuple[CamerasFile, Store, str]:
    token = new_token()
    config = CamerasFile(
        cameras=[CameraConfig(id=f"cam-{i}", token_hash=hash_token(new_token()))
                 for i in range(CAMERAS)],
        operators=[OperatorConfig(name="bench", token_hash=hash_token(token))],
        alerts=[AlertRule(kind="intrusion", classes=["person"], min_frames=2)],
    )  # fmt: skip
    store = Store(f"sqlite:///{folder / 'events.db'}")
    store.migrate()
    rules = AlertRules(config.alerts, {c.id: c for c in config.cameras})
    now = time.time_ns()
    t0 = now - events * 60 * S  # one event a minute, the newest just now
    newest: list[FrameResult] = []
    started = time.perf_counter()
    for first in range(0, events, 500):
        with store.begin() as conn:
            for i in range(first, min(first + 500, events)):
                camera = f"cam-{i % CAMERAS}"
                start = t0 + i * 60 * S
                event_id = f"{camera}-{start}"
                label = "person" if i % 7 == 0 else LABELS[i % len(LABELS)]
                record_open(conn, EventOpened(type="open", camera=camera, event_id=event_id,
                                              capture_ns=start, sent_ns=start), now)  # fmt: skip
                results = [_result(camera, event_id, s, start + s * S // 5, label) for s in (1, 2)]
                record_results(conn, results, now)
                for r in results:
                    rules.evaluate(conn, r, now)
                record_close(conn, EventClosed(type="close", camera=camera, event_id=event_id,
                             capture_ns=start + 3 * S, frames_seen=30, frames_analysed=10,
                             frames_published=2, sent_ns=start + 3 * S), now)  # fmt: skip
                if i >= events - page:
                    newest.extend(results)
    print(f"built {events} events in {time.perf_counter() - started:.1f} s")

    async def archive_frames() -> None:
        archive = LocalArchive(folder / "archive", fsync=False)
        await archive.ensure()
        image = np.full((720, 1280, 3), 70, np.uint8)
        cv2.rectangle(image, (200, 150), (520, 650), (180, 180, 200), -1)
        _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        for r in newest:
            assert r.archive.frame is not None
            await archive.put(r.archive.frame, bytes(jpeg.tobytes()), "image/jpeg", {})
        await archive.close()

    asyncio.run(archive_frames())
    return config, store, token


class Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread
        pass


def measure(url: str, token: str, loads: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(loads):
        with browser.chromium() as driver:  # a fresh profile: nothing cached
            driver.get(f"{url}/login?next=/events")
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "login-button").click()
            browser.wait_until(lambda: driver.current_url.endswith("/events"), "events", 60)
            driver.get(f"{url}/cameras")  # somewhere else, then the measured navigation
            driver.get(f"{url}/events")
            browser.wait_until(
                lambda: driver.execute_script(browser.LOADED_IN_VIEW),
                "loaded page",
                60,
            )
            time.sleep(0.3)
            figures = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const r = performance.getEntriesByType('resource');"
                "const sum = (k) => r.filter(k).reduce((a, e) => a + e.decodedBodySize, 0);"
                "const fcp = performance.getEntriesByName('first-contentful-paint')[0];"
                "return {html: n.decodedBodySize, html_wire: n.encodedBodySize,"
                " ttfb_ms: n.responseStart - n.requestStart,"
                " assets: sum(e => /\\.(css|js)$/.test(new URL(e.name).pathname)),"
                " images: sum(e => e.initiatorType === 'img'),"
                " image_count: r.filter(e => e.initiatorType === 'img').length,"
                " rows: document.querySelectorAll('#events tbody tr').length,"
                " fcp_ms: fcp ? fcp.startTime : null,"
                " offsite: r.filter(e => !e.name.startsWith(location.origin)).length}"
            )
            out.append(figures)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.console_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=5, help="page loads measured")
    args = parser.parse_args(argv)
    if why := browser.missing():
        raise SystemExit(why)
    with tempfile.TemporaryDirectory(prefix="tw-console-bench-") as tmp:
        folder = Path(tmp)
        config, store, token = build(folder, args.events, 50)
        app = create_app(config, store, LocalArchive(folder / "archive", fsync=False))
        port = free_port()
        server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            runs = measure(f"http://127.0.0.1:{port}", token, args.loads)
        finally:
            server.should_exit = True
            thread.join(10)
    fcp = [r["fcp_ms"] for r in runs if r["fcp_ms"] is not None]
    first = runs[0]
    summary = {
        "events_in_db": args.events,
        "rows_on_page": first["rows"],
        "html_bytes": first["html"],
        "script_and_style_bytes": first["assets"],
        "thumbnail_bytes": first["images"],
        "thumbnails": first["image_count"],
        "page_weight_bytes": first["html"] + first["assets"] + first["images"],
        "ttfb_ms_median": round(statistics.median(r["ttfb_ms"] for r in runs), 1),
        "fcp_ms_median": round(statistics.median(fcp), 1) if fcp else None,
        "fcp_ms_min": round(min(fcp), 1) if fcp else None,
        "fcp_ms_max": round(max(fcp), 1) if fcp else None,
        "loads": len(runs),
        "offsite_requests": sum(r["offsite"] for r in runs),
    }
    print(f"events page, {args.events} events in the database ({first['rows']} rows shown):")
    print(f"  HTML {first['html']:,} B; script+style {first['assets']:,} B; "
          f"{first['image_count']} thumbnails {first['images']:,} B; "
          f"total {summary['page_weight_bytes']:,} B")  # fmt: skip
    print(f"  time to first byte median {summary['ttfb_ms_median']} ms; first-contentful-paint "
          f"median {summary['fcp_ms_median']} ms (min {summary['fcp_ms_min']}, max "
          f"{summary['fcp_ms_max']}) over {len(runs)} cold loads")  # fmt: skip
    print(json.dumps({"console_bench": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
