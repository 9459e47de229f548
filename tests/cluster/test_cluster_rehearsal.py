"""The end-to-end cluster rehearsal (tests/cluster_rehearsal.py): first motion frame -> wake ->
Deployment at 1 on a real API server -> pod Running -> local detector -> first stored result.

Run with ``-s`` for the timeline. ``python -m loadtest.cluster_wake`` prints it with the other
cluster figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster_rehearsal import DETECTOR, STAGES, rehearsal, rehearse
from tests.k8s_cluster import Plane, replicas
from tripwire.embedded_nats import EmbeddedNats

pytest.importorskip("kubernetes", reason="the deploy extra is not installed")
pytest.importorskip("ultralytics", reason="the detector extra is not installed")


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[str]:
    """A server of its own: the rehearsal's gateway and detector declare the default streams
    (tripwire.>), which overlap the per-test streams of the session's server."""
    server = EmbeddedNats.start(tmp_path / "nats")
    yield server.url
    server.stop()


@pytest.mark.timeout(600)
def test_first_motion_frame_to_first_result_through_the_api_server(
    k8s: Plane, own_nats: str, tmp_path: Path
) -> None:
    with rehearsal(k8s, own_nats, tmp_path, "yolo11n.yaml") as run:
        assert replicas(run.api, run.namespace, DETECTOR) == 0, "starts scaled to zero"
        stages = rehearse(run, timeout_s=240)
        print("\ncluster rehearsal, seconds after the first motion frame was published:")
        for stage in STAGES:
            print(f"  {stage:16} {stages.get(stage, float('nan')):7.2f}")
        assert list(stages) == STAGES, stages
        assert [stages[s] for s in STAGES] == sorted(stages[s] for s in STAGES), "in order"
        # It was the wake controller that scaled it: nothing else in this cluster does.
        metrics = httpx.get(f"{run.wake_url}/metrics", timeout=5).text
        assert f'tripwire_wake_checks_total{{deployment="{DETECTOR}",outcome="scaled"}} 1.0' in (
            metrics
        )
        assert stages["scale_decision"] < 10, "the wake, not some poll, scaled it"
        assert replicas(run.api, run.namespace, DETECTOR) == 1
