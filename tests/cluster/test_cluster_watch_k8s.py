"""``tripwire cluster watch`` on a real kube-apiserver (../shared/k8s): replica changes made
through the API become the timeline's scale decisions and worker starts and stops, and the
command stops promptly on SIGTERM even while no event arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_cluster import Plane, create_deployment, new_namespace, set_replicas, wait_for
from tripwire.timeline import read

pytest.importorskip("kubernetes", reason="the deploy extra is not installed")

REPO = Path(__file__).resolve().parents[2]
NAME = "tripwire-detector"


def _events(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [
        (e["event"], e.get("replicas", e.get("ready", -1)))
        for e in read(path)
        if e["event"] != "queue_depth"
    ]


def test_watch_follows_replica_changes_made_through_the_api(k8s: Plane, tmp_path: Path) -> None:
    from kubernetes import client

    api: Any = k8s.api()
    namespace = new_namespace(api, "watch")
    create_deployment(api, namespace, NAME, 0)
    out = tmp_path / "timeline.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TRIPWIRE_BROKER__URL", None)  # no broker: replicas only
    watch = subprocess.Popen(
        [sys.executable, "-m", "tripwire.app.cli", "cluster", "watch", "--kubeconfig",
         str(k8s.kubeconfig), "--namespace", namespace, "--deployment", NAME, "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: ("cluster_state", 0) in _events(out), 30, "the first state", 0.1)
        set_replicas(api, namespace, NAME, 2)  # as KEDA would
        # Two pods may turn ready in one status update or in two: either way 2 shows up.
        wait_for(lambda: ("worker_started", 2) in _events(out), 30, "2 ready", 0.1)
        set_replicas(api, namespace, NAME, 0)
        wait_for(lambda: ("worker_stopped", 0) in _events(out), 30, "0 ready", 0.1)
        time.sleep(0.5)  # the watch is idle now: SIGTERM must still end it promptly
        started = time.monotonic()
        watch.send_signal(signal.SIGTERM)
        code = watch.wait(timeout=15)
        assert code == 0, watch.stdout.read() if watch.stdout else ""
        assert time.monotonic() - started < 15
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        client.CoreV1Api(api).delete_namespace(namespace)
        api.close()
    events = _events(out)
    assert events[0] == ("cluster_state", 0)
    decisions = [n for e, n in events if e == "scale_decision"]
    assert decisions == [2, 0]
    started_ = [n for e, n in events if e == "worker_started"]
    stopped = [n for e, n in events if e == "worker_stopped"]
    assert started_ == [1, 2] or started_ == [2, 2], events  # one line per replica
    assert len(stopped) == 2 and stopped[-1] == 0, events
    # order: the decision comes before the workers it caused
    assert events.index(("scale_decision", 2)) < events.index(("worker_started", started_[0]))
