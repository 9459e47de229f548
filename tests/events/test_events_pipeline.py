"""The whole pipeline as a user runs it: ``tripwire up`` with the COCO TFLite model, the
street-crossing clip pushed as a camera, and the events it produced read back through the
events API (labels, annotated snapshot, an intrusion alert), the webhook and MQTT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.detector_harness import TFLITE, need_ultralytics
from tests.events.test_events_function import mqtt_listener, webhook_server  # noqa: F401
from tests.frames import clip_jpegs
from tripwire.embedded_nats import free_port
from tripwire.tokens import hash_token, new_token

CLIP = "video_street_crossing_people1/people1.mp4"
T0 = 1_765_000_000_000_000_000


def clip_frames(path: Path, every: int) -> list[tuple[int, bytes]]:
    """(capture_ns, JPEG) of every ``every``-th frame, capture times as the clip plays."""
    return [(T0 + int(at_s * 1e9), data) for at_s, data in clip_jpegs(path, every)]


def wait_for(check: Any, what: str, within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {within:g}s")


@pytest.mark.timeout(600)
def test_tripwire_up_turns_a_real_clip_into_events_and_an_alert(
    tmp_path: Path,
    shared_data: Path,
    webhook_server: tuple[str, list[dict[str, Any]]],  # noqa: F811
) -> None:
    need_ultralytics()
    camera_token, operator_token = new_token(), new_token()
    config = {
        "cameras": [
            {
                "id": "crossing",
                "token_hash": hash_token(camera_token),
                # The road and the crossing, where the walkers' feet are.
                "zones": {"street": [[0.0, 0.35], [1.0, 0.35], [1.0, 1.0], [0.0, 1.0]]},
            }
        ],
        "operators": [{"name": "ann", "token_hash": hash_token(operator_token)}],
        "alerts": [
            {"kind": "intrusion", "classes": ["person"], "zones": ["street"], "min_frames": 2,
             "min_confidence": 0.4, "cooldown_s": 600},
        ],
    }  # fmt: skip
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    hook_url, hooked = webhook_server
    port, console_port = free_port(), free_port()
    env = {
        **os.environ,
        "TRIPWIRE_HOME": str(tmp_path / "home"),
        "TRIPWIRE_WEBHOOK_URL": hook_url,
        "TRIPWIRE_MQTT__URL": "mqtt://127.0.0.1:1883",
        "TRIPWIRE_MQTT__TOPIC_PREFIX": f"tw{port}",
        "TRIPWIRE_CONSOLE_URL": f"http://127.0.0.1:{console_port}",
    }
    command = [sys.executable, "-m", "tripwire.app.cli", "up",
               "--config", str(tmp_path / "cameras.yaml"), "--weights", str(TFLITE),
               "--task", "detect", "--port", str(port),
               "--console-port", str(console_port)]  # fmt: skip
    frames = clip_frames(shared_data / CLIP, every=2)  # 12 frames/s of the 24 fps clip
    with mqtt_listener(f"tw{port}/#") as heard:
        up = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
        try:
            gateway = f"http://127.0.0.1:{port}"
            console_url = f"http://127.0.0.1:{console_port}"
            console = httpx.Client(
                base_url=console_url,
                headers={"Authorization": f"Bearer {operator_token}"},
                timeout=10,
            )
            wait_for(lambda: _ok(f"{gateway}/readyz") and _ok(f"{console_url}/readyz"),
                     "ready stack", 120)  # fmt: skip
            with httpx.Client(base_url=gateway, timeout=10) as cam:
                for capture_ns, jpeg in frames:
                    answer = cam.post(
                        "/v1/cameras/crossing/frames",
                        content=jpeg,
                        headers={"Authorization": f"Bearer {camera_token}",
                                 "Content-Type": "image/jpeg", "X-Capture-Ns": str(capture_ns)},
                    )  # fmt: skip
                    assert answer.status_code == 202, answer.text

            def alerted() -> Any:
                events = console.get("/v1/events", params={"camera": "crossing"}).json()["events"]
                # seen/analysed/published come with the gateway's status (every 5 s) or close.
                done = [e for e in events if e["alerts"] and e["frames"]["detected"]
                        and e["frames"]["seen"]]  # fmt: skip
                return events if done and len(hooked) >= 1 else None

            events = wait_for(alerted, "events with an alert", 300)
            [event] = [e for e in events if e["alerts"]]
            detail = console.get(f"/v1/events/{event['id']}").json()
            snapshot = console.get(f"/v1/events/{event['id']}/snapshot.jpg",
                                   params={"annotated": 1})  # fmt: skip
            alerts = console.get("/v1/alerts").json()
            wrong = httpx.get(f"{console_url}/v1/events", headers={"Authorization": "Bearer x"})
            wait_for(
                lambda: any(t.endswith("/crossing/alerts") for t, _ in heard), "MQTT alert", 30
            )
        finally:
            os.killpg(up.pid, signal.SIGINT)
            output, _ = up.communicate(timeout=120)
    assert up.returncode == 0, output.decode()[-3000:]
    (tmp_path / "snapshot.jpg").write_bytes(snapshot.content)
    labels = {e["id"]: e["labels"] for e in events}
    print(f"\n[tripwire up, people1 at 12 fps] {len(events)} event(s): {labels}; "
          f"alert {event['alerts'][0]['kind']} {event['alerts'][0]['confidence']}; "
          f"snapshot {tmp_path / 'snapshot.jpg'}")  # fmt: skip
    assert all(set(e["labels"]) <= set(_coco()) for e in events)
    assert event["labels"]["person"] >= 0.5
    assert detail["best"]["label"] == "person" and detail["best"]["archived"]
    assert detail["frames"]["seen"] > 0 and detail["first_result_latency_s"] is not None
    assert snapshot.status_code == 200 and snapshot.content[:3] == b"\xff\xd8\xff"
    [alert] = [a for a in alerts["alerts"] if a["event_id"] == event["id"]]
    assert (alert["kind"], alert["label"]) == ("intrusion", "person")
    assert wrong.status_code == 401
    [hook] = hooked
    assert hook["id"] == alert["id"] and hook["urls"]["event"].endswith(f"/v1/events/{event['id']}")
    mqtt_alert = next(p for t, p in heard if t.endswith("/crossing/alerts"))
    assert mqtt_alert == hook


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _coco() -> list[str]:
    return (TFLITE.parent / "coco_labels.txt").read_text().split("\n")
