"""The cluster path end to end on one machine: a camera's first motion frame -> the gateway's
wake -> ``tripwire cluster wake`` -> the detector Deployment at 1 on a real API server -> its
pod Running (the stand-in kubelet) -> a local ``tripwire detector`` process standing in for
the pod's container -> the first stored result.

Gateway, wake controller and detector are real ``tripwire`` processes on a NATS server; the
harness plays camera and kubelet runtime: it watches the Deployment and its pods on the API
server and starts the detector once the pod is Running. Every stage lands in one JSONL
timeline (the gateway's and detector's own ``tripwire.timeline`` events, plus the harness's
``scale_decision``, ``pod_running`` and ``worker_started``), read as seconds after the first
motion frame was published, the stages of ``loadtest.coldstart`` for the local scaler.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.frames import moving_box_frames, static_frames
from tests.k8s_cluster import (
    Plane,
    create_deployment,
    install_wake_rbac,
    new_namespace,
    service_account_kubeconfig,
    wait_for,
)
from tripwire import timeline
from tripwire.embedded_nats import free_port
from tripwire.starter import read_tokens, write_starter_config

REPO = Path(__file__).resolve().parents[1]
DETECTOR = "tripwire-detector"
STAGES = [
    "scale_decision",  # the API server has spec.replicas = 1 (the harness's watch saw it)
    "pod_running",  # the stand-in kubelet marked the new pod Running
    "worker_started",  # the harness started the detector process for that pod
    "model_loaded",
    "first_inference",
    "result_stored",
]


@dataclass
class Rehearsal:
    plane: Plane
    nats_url: str
    home: Path
    weights: str = "yolo11n.yaml"
    api: Any = None  # the admin ApiClient
    namespace: str = ""
    gateway_url: str = ""
    wake_url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def timeline_path(self) -> Path:
        return self.home / "timeline.jsonl"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
        return env | {
            "PYTHONPATH": str(REPO),
            "TRIPWIRE_HOME": str(self.home),
            "TRIPWIRE_CONFIG": str(self.home / "cameras.yaml"),
            "TRIPWIRE_BROKER__URL": self.nats_url,
            "TRIPWIRE_TIMELINE": str(self.timeline_path),
            "TRIPWIRE_LOG_LEVEL": "WARNING",
        }

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.home / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tripwire.app.cli", *args],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.home,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _record(path: Path, event: str, **fields: Any) -> None:
    os.environ[timeline.ENV] = str(path)  # the harness writes to the same file
    timeline.record(event, **fields)


def _until_http(url: str, status: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    def answers() -> bool:
        assert process.poll() is None, f"{process.args!r} exited with {process.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=2).status_code == status
        return False

    wait_for(answers, timeout_s, f"{url} -> {status}", every_s=0.1)


def _kubelet_runtime(rehearsal: Rehearsal, stop: threading.Event) -> None:
    """Watch the Deployment until it asks for a replica, then its pods until one runs, then
    start the detector process: what a kubelet and a container runtime would do."""
    from kubernetes import client, watch

    apps, core = client.AppsV1Api(rehearsal.api), client.CoreV1Api(rehearsal.api)
    namespace = rehearsal.namespace
    stream = watch.Watch()
    by_name = f"metadata.name={DETECTOR}"
    deployments = stream.stream(
        apps.list_namespaced_deployment, namespace, field_selector=by_name, timeout_seconds=120
    )
    for item in deployments:
        if stop.is_set():
            return
        if (item["object"].spec.replicas or 0) >= 1:
            _record(rehearsal.timeline_path, "scale_decision", replicas=1, reason="cluster")
            stream.stop()
    stream = watch.Watch()
    for item in stream.stream(core.list_namespaced_pod, namespace, timeout_seconds=120):
        if stop.is_set():
            return
        if item["object"].status.phase == "Running":
            _record(rehearsal.timeline_path, "pod_running", pod=item["object"].metadata.name)
            stream.stop()
    if stop.is_set():
        return
    rehearsal.start("detector", "detector", "--weights", rehearsal.weights, "--metrics-port", "0")
    _record(rehearsal.timeline_path, "worker_started")


def stages(path: Path) -> dict[str, float]:
    """Seconds after the first ``motion_published`` of each stage (its first occurrence)."""
    events = list(timeline.read(path)) if path.exists() else []
    motion = next((e["t_ns"] for e in events if e["event"] == "motion_published"), None)
    if motion is None:
        return {}
    out: dict[str, float] = {}
    for stage in STAGES:
        t = next((e["t_ns"] for e in events if e["event"] == stage), None)
        if t is not None:
            out[stage] = (t - motion) / 1e9
    return out


@contextlib.contextmanager
def rehearsal(plane: Plane, nats_url: str, home: Path, weights: str) -> Iterator[Rehearsal]:
    """Namespace, Role, Deployment at 0; gateway and wake controller up; all stopped on exit."""
    from kubernetes import client

    api = plane.api()
    namespace = new_namespace(api, "rehearsal")
    run = Rehearsal(plane, nats_url, home, weights, api, namespace)
    try:
        write_starter_config(home, 1, force=True)
        install_wake_rbac(api, namespace)
        create_deployment(api, namespace, DETECTOR, 0)
        kubeconfig = service_account_kubeconfig(plane, api, namespace, "tripwire-wake",
                                                home / "wake.kubeconfig")  # fmt: skip
        gateway_port, wake_port = free_port(), free_port()
        gateway = run.start("gateway", "gateway", "--port", str(gateway_port))
        wake = run.start(
            "wake", "cluster", "wake", "--namespace", namespace,
            "--kubeconfig", str(kubeconfig), "--metrics-port", str(wake_port),
        )  # fmt: skip
        _until_http(f"http://127.0.0.1:{gateway_port}/readyz", 200, 60, gateway)
        _until_http(f"http://127.0.0.1:{wake_port}/readyz", 200, 60, wake)
        run.gateway_url = f"http://127.0.0.1:{gateway_port}"
        run.wake_url = f"http://127.0.0.1:{wake_port}"
        yield run
    finally:
        run.stop_all()
        client.CoreV1Api(api).delete_namespace(namespace)
        api.close()


def rehearse(run: Rehearsal, timeout_s: float = 120) -> dict[str, float]:
    """Still frames (the motion function learns the scene), then a walker until a result is
    stored; the stages of that cold start."""
    token = read_tokens(run.home)["cam-1"]
    url = f"{run.gateway_url}/v1/cameras/cam-1/frames"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
    stop = threading.Event()
    runtime = threading.Thread(target=_kubelet_runtime, args=(run, stop), daemon=True)
    runtime.start()
    deadline = time.monotonic() + timeout_s
    try:
        with httpx.Client(timeout=10) as http:
            for body in static_frames(25):
                http.post(url, content=body, headers=headers).raise_for_status()
                time.sleep(0.1)
            walker = moving_box_frames(28)
            i = 0
            while "result_stored" not in stages(run.timeline_path):
                assert time.monotonic() < deadline, f"no result within {timeout_s} s: " + str(
                    stages(run.timeline_path)
                )
                http.post(url, content=walker[i % len(walker)], headers=headers)
                i += 1
                time.sleep(0.1)
    finally:
        stop.set()
    return stages(run.timeline_path)
