"""`tripwire cluster watch`: parsing of Deployment objects and the timeline it writes.

Recorded watch objects stand in for a cluster (none runs here): the raw JSON form and the
kubernetes client's model form. The watch loop itself is not exercised without a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tripwire.cluster import ClusterTimeline, JsonlWriter, replica_state
from tripwire.timeline import read


def deployment(desired: int | None, ready: int | None) -> dict[str, Any]:
    status = {} if ready is None else {"readyReplicas": ready}
    return {
        "metadata": {"name": "tripwire-detector"},
        "spec": {"replicas": desired},
        "status": status,
    }


def test_replica_state_reads_dicts_and_client_models() -> None:
    kubernetes = pytest.importorskip("kubernetes", reason="the deploy extra is not installed")
    model = kubernetes.client.V1Deployment(
        spec=kubernetes.client.V1DeploymentSpec(
            replicas=3, selector=kubernetes.client.V1LabelSelector(), template={}
        ),
        status=kubernetes.client.V1DeploymentStatus(ready_replicas=2),
    )
    assert replica_state(model).desired == 3 and replica_state(model).ready == 2
    # A Deployment scaled to zero has no readyReplicas at all.
    assert replica_state(deployment(0, None)) == replica_state(deployment(0, 0))


def test_timeline_of_a_cold_start_and_scale_to_zero(tmp_path: Path) -> None:
    timeline = ClusterTimeline()
    # (desired, ready) as a watch reports them: KEDA activates, the HPA adds one, both go.
    states = [(0, None), (1, None), (1, 1), (2, 1), (2, 2), (1, 1), (0, None)]
    writer = JsonlWriter(tmp_path / "t.jsonl")
    for t, (desired, ready) in enumerate(states):
        for event in timeline.on_deployment(deployment(desired, ready), t):
            writer.write(event)
    writer.write(ClusterTimeline.on_depth(7, 99))
    events = [
        (e["t_ns"], e["event"], e.get("replicas", e.get("ready", e.get("depth"))))
        for e in read(tmp_path / "t.jsonl")
    ]
    assert events == [
        (0, "cluster_state", 0),
        (1, "scale_decision", 1),
        (2, "worker_started", 1),
        (3, "scale_decision", 2),
        (4, "worker_started", 2),
        (5, "scale_decision", 1),
        (5, "worker_stopped", 1),
        (6, "scale_decision", 0),
        (6, "worker_stopped", 0),
        (99, "queue_depth", 7),
    ]
    line = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[1])
    assert line["reason"] == "cluster" and line["previous"] == 0
