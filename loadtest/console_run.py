"""A real pipeline for the console's browser checks and screenshots: ``tripwire up`` with the
COCO TFLite model (../shared/data), one camera over a street crossing with an intrusion
rule, and the people1 clip pushed into it as that camera."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from tests.frames import clip_jpegs
from tripwire.embedded_nats import free_port
from tripwire.tokens import hash_token, new_token

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TFLITE = SHARED_DATA / "coco_yolov8n_int8_tflite" / "yolov8n_int8.tflite"
CLIP = SHARED_DATA / "video_street_crossing_people1" / "people1.mp4"
CAMERA = "crossing"


@dataclass
class Run:
    home: Path
    gateway_url: str
    console_url: str
    camera_token: str
    operator_token: str
    process: subprocess.Popen[bytes]
    log: Path


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_pipeline(workdir: Path, ready_within_s: float = 180.0) -> Iterator[Run]:
    """``tripwire up`` in ``workdir`` until the block ends (then Ctrl-C, as a user stops it)."""
    camera_token, operator_token = new_token(), new_token()
    config = {
        "cameras": [{"id": CAMERA, "token_hash": hash_token(camera_token),
                     "zones": {"street": [[0.0, 0.35], [1.0, 0.35], [1.0, 1.0], [0.0, 1.0]]}}],
        "operators": [{"name": "ann", "token_hash": hash_token(operator_token)}],
        "alerts": [{"kind": "intrusion", "classes": ["person"], "zones": ["street"],
                    "min_frames": 2, "min_confidence": 0.4, "cooldown_s": 600}],
    }  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cameras.yaml").write_text(yaml.safe_dump(config))
    port, console_port = free_port(), free_port()
    console_url = f"http://127.0.0.1:{console_port}"
    env = {**os.environ, "TRIPWIRE_HOME": str(workdir / "home"),
           "TRIPWIRE_CONSOLE_URL": console_url}  # fmt: skip
    command = [sys.executable, "-m", "tripwire.app.cli", "up",
               "--config", str(workdir / "cameras.yaml"), "--weights", str(TFLITE),
               "--task", "detect", "--port", str(port),
               "--console-port", str(console_port)]  # fmt: skip
    log = workdir / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    run = Run(workdir / "home", f"http://127.0.0.1:{port}", console_url, camera_token,
              operator_token, process, log)  # fmt: skip
    try:
        deadline = time.monotonic() + ready_within_s
        while not (_ok(f"{run.gateway_url}/readyz") and _ok(f"{console_url}/readyz")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tripwire up did not get ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def push_clip(run: Run, every: int = 2, fps: float = 0.0) -> int:
    """Push the people1 clip as camera ``crossing`` (every ``every``-th frame at ``fps``
    frames/s, or as fast as the gateway takes them when ``fps`` is 0; stamped as sent)."""
    frames = [data for _, data in clip_jpegs(CLIP, every)]
    started = time.monotonic()
    with httpx.Client(base_url=run.gateway_url, timeout=10) as cam:
        for i, jpeg in enumerate(frames):
            if fps > 0 and (ahead := started + i / fps - time.monotonic()) > 0:
                time.sleep(ahead)
            answer = cam.post(
                f"/v1/cameras/{CAMERA}/frames",
                content=jpeg,
                headers={"Authorization": f"Bearer {run.camera_token}",
                         "Content-Type": "image/jpeg",
                         "X-Capture-Ns": str(time.time_ns())},
            )  # fmt: skip
            if answer.status_code != 202:
                raise RuntimeError(f"gateway answered {answer.status_code}: {answer.text}")
    return len(frames)
