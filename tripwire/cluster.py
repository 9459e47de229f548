"""``tripwire cluster watch``: follow the detector Deployment on a cluster and the queue depth,
and write the same JSONL timeline the local scaler writes, so ``loadtest.coldstart`` and
the energy benchmark read a cluster run the same way as a local one.

Events written (one JSON line each, ``t_ns`` wall time):

- ``scale_decision``: the Deployment's ``spec.replicas`` changed (KEDA or the HPA decided),
  with ``replicas``, ``previous`` and ``reason: "cluster"``;
- ``worker_started`` / ``worker_stopped``: ``status.readyReplicas`` went up / down (one line per
  replica);
- ``queue_depth``: the broker's depth, polled every ``--interval`` seconds.

The parsing and the timeline logic are plain functions over the watch events' objects
(tested with recorded objects); the watch itself needs a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tripwire import timeline
from tripwire.errors import BrokerError, TripwireError

log = logging.getLogger(__name__)


class ClusterError(TripwireError):
    """The cluster cannot be reached or the Deployment is missing."""


@dataclass(frozen=True, slots=True)
class ReplicaState:
    desired: int  # spec.replicas (what KEDA/the HPA set)
    ready: int  # status.readyReplicas


def _get(obj: Any, *path: str) -> Any:
    """Read a field from a watch object: a dict (raw JSON) or a kubernetes client model."""
    for key in path:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            obj = obj.get(key)
        else:  # client models use snake_case attributes
            obj = getattr(obj, "".join("_" + c.lower() if c.isupper() else c for c in key), None)
    return obj


def replica_state(deployment: Any) -> ReplicaState:
    """The desired and ready replicas of a Deployment object (dict or client model)."""
    return ReplicaState(
        int(_get(deployment, "spec", "replicas") or 0),
        int(_get(deployment, "status", "readyReplicas") or 0),
    )


class ClusterTimeline:
    """Turns successive Deployment states and depths into timeline events."""

    def __init__(self) -> None:
        self._last: ReplicaState | None = None

    def on_deployment(self, deployment: Any, t_ns: int) -> list[dict[str, Any]]:
        state = replica_state(deployment)
        last, self._last = self._last, state
        if last is None:
            return [
                {
                    "t_ns": t_ns,
                    "event": "cluster_state",
                    "replicas": state.desired,
                    "ready": state.ready,
                }
            ]
        events: list[dict[str, Any]] = []
        if state.desired != last.desired:
            events.append(
                {
                    "t_ns": t_ns,
                    "event": "scale_decision",
                    "reason": "cluster",
                    "replicas": state.desired,
                    "previous": last.desired,
                }
            )
        change = state.ready - last.ready
        name = "worker_started" if change > 0 else "worker_stopped"
        events.extend(
            {"t_ns": t_ns, "event": name, "ready": state.ready} for _ in range(abs(change))
        )
        return events

    @staticmethod
    def on_depth(depth: int, t_ns: int) -> dict[str, Any]:
        return {"t_ns": t_ns, "event": "queue_depth", "depth": depth}


class JsonlWriter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, event: Mapping[str, Any]) -> None:
        timeline.append(self.path, {"pid": os.getpid(), **event})


def _deployment_events(
    namespace: str, name: str, kubeconfig: str | None
) -> Iterator[Any]:  # pragma: no cover - needs a cluster
    try:
        from kubernetes import client, config, watch
    except ImportError as exc:
        raise ClusterError(
            "tripwire cluster needs the deploy extra: pip install -e '.[deploy]'"
        ) from exc
    try:
        if kubeconfig:
            config.load_kube_config(kubeconfig)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
    except Exception as exc:  # the client raises several kinds; say which config failed
        raise ClusterError(f"no usable kubeconfig: {exc}") from None
    apps = client.AppsV1Api()
    while True:
        stream = watch.Watch().stream(
            apps.list_namespaced_deployment,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=300,
        )
        for item in stream:
            yield item["object"]


async def watch_cluster(
    namespace: str,
    name: str,
    out: Path,
    *,
    kubeconfig: str | None,
    depth: Callable[[], Any] | None,
    interval_s: float,
    stop: asyncio.Event,
) -> None:  # pragma: no cover - needs a cluster
    """Run until ``stop``: the Deployment watch in a thread, depth polls on the loop.

    The watch thread is a daemon, not the loop's executor: a watch with no event blocks in a
    socket read for up to its timeout (300 s), and ``asyncio.run`` waits for executor threads,
    so SIGTERM would wait that long; a daemon thread ends with the process.
    """
    writer = JsonlWriter(out)
    events = ClusterTimeline()
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            for obj in _deployment_events(namespace, name, kubeconfig):
                if stop.is_set():
                    return
                for event in events.on_deployment(obj, time.time_ns()):
                    writer.write(event)
        except BaseException as exc:  # handed to the loop, which re-raises it
            failure.append(exc)

    watcher = threading.Thread(target=follow, name="cluster-watch", daemon=True)
    watcher.start()
    while not stop.is_set():
        if depth is not None:
            try:
                writer.write(events.on_depth(int(await depth()), time.time_ns()))
            except BrokerError as exc:
                log.warning("queue depth unavailable: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if failure:
            raise failure[0]  # a watch failure
        if not watcher.is_alive():
            return
