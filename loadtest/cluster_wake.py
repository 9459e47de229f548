"""The wake controller's figures on a real kube-apiserver (../shared/k8s, RBAC on):

1. latency: wake published -> the API server has the detector's /scale at 1 (seen by a watch),
   median of ``--samples`` cold starts, per broker, with ``tripwire cluster wake`` as a process
   authenticated as its ServiceAccount (deploy/k3s/base/wake/rbac.yaml);
2. a storm: ``--storm`` wakes published back to back at a Deployment at 0: patches, reads,
   and how often the Deployment's spec changed;
3. ``kubectl apply --dry-run=server`` of every object of both overlays, per kind;
4. the end-to-end rehearsal (tests/cluster_rehearsal.py): first motion frame -> /scale = 1
   -> pod Running -> a local detector process -> first stored result, median of
   ``--rehearsals``; with ``--local``, next to the local scaler's cold start with the same
   detector started from scratch (``loadtest.coldstart``, push on, prefork off).

    python -m loadtest.cluster_wake [--samples 20] [--storm 1000] [--rehearsals 3] [--local]

The plane's state folder (``--state``, default .tripwire/k8s-plane) keeps its binaries and
etcd's venv between runs. Uses the test harness in tests/ (a source checkout is needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.cluster_rehearsal import STAGES, rehearsal, rehearse
from tests.deploy.test_k3s_manifests import CRD_DIR, NAMESPACE, OVERLAYS, build
from tests.k8s_cluster import (
    Plane,
    create_deployment,
    install_keda_crds,
    install_wake_rbac,
    new_namespace,
    running_plane,
    service_account_kubeconfig,
    set_replicas,
    wait_for,
)
from tests.k8s_dryrun import dry_run, table
from tests.rabbitmq_admin import admin as rabbit_admin
from tripwire import contract
from tripwire.brokers import Broker, open_broker
from tripwire.brokers.settings import RabbitSettings
from tripwire.embedded_nats import EmbeddedNats, free_port
from tripwire.settings import BrokerSettings

REPO = Path(__file__).resolve().parents[1]
DETECTOR = "tripwire-detector"
MIN_INTERVAL_S = 2.0  # the controller's default (deploy/k3s/base/wake/deployment.yaml)


class Replicas:
    """A watch of the detector Deployment in a thread: (monotonic time, spec.replicas) pairs."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.changes: queue.Queue[tuple[float, int]] = queue.Queue()
        self.stop = threading.Event()
        self._api, self._namespace = api, namespace
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        from kubernetes import client, watch
        from urllib3.exceptions import HTTPError

        apps = client.AppsV1Api(self._api)
        while not self.stop.is_set():
            stream = watch.Watch().stream(
                apps.list_namespaced_deployment, self._namespace,
                field_selector=f"metadata.name={DETECTOR}", timeout_seconds=5,
            )  # fmt: skip
            try:
                for item in stream:
                    self.changes.put((time.monotonic(), int(item["object"].spec.replicas or 0)))
            except (HTTPError, client.ApiException):  # the namespace or the plane went away
                if self.stop.is_set():
                    return
                raise

    def wait(self, replicas: int, since: float, timeout_s: float = 30) -> float:
        """The first time at or after ``since`` the watch saw ``replicas``."""
        deadline = time.monotonic() + timeout_s
        while True:
            t, n = self.changes.get(timeout=max(0.01, deadline - time.monotonic()))
            if t >= since and n == replicas:
                return t


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{want}}}" if want else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


@contextmanager
def wake_process(
    plane: Plane, broker: BrokerSettings, env: dict[str, str], home: Path
) -> Iterator[tuple[Any, str, str, Replicas]]:
    """Namespace, Role, Deployment at 1, the controller as a process; torn down on exit."""
    from kubernetes import client

    api = plane.api()
    namespace = new_namespace(api, "bench")
    install_wake_rbac(api, namespace)
    create_deployment(api, namespace, DETECTOR, 1)
    kubeconfig = service_account_kubeconfig(plane, api, namespace, "tripwire-wake",
                                            home / f"{namespace}.kubeconfig")  # fmt: skip
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tripwire.app.cli",
        "cluster",
        "wake",
        "--broker",
        str(broker.url),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-port",
        str(port),
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    full_env |= {"PYTHONPATH": str(REPO), "TRIPWIRE_LOG_LEVEL": "WARNING", **env}
    log = (home / f"wake-{namespace}.log").open("wb")
    process = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, f"the wake controller exited (see {log.name})"
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the wake controller's /readyz", every_s=0.1)
        replicas = Replicas(api, namespace)
        try:
            yield api, namespace, url, replicas
        finally:
            replicas.stop.set()
    finally:
        process.terminate()
        process.wait(15)
        client.CoreV1Api(api).delete_namespace(namespace)
        api.close()


def _settled(api: Any, namespace: str) -> bool:
    from kubernetes import client

    d = client.AppsV1Api(api).read_namespaced_deployment(DETECTOR, namespace)
    return bool(d.status.observed_generation == d.metadata.generation and not d.status.replicas)


async def _wake(publisher: Broker, subject: str) -> None:
    await publisher.publish(subject, b'{"camera":"cam-1"}', {contract.Header.CAMERA: "cam-1"})


async def measure_broker(
    plane: Plane, name: str, broker: BrokerSettings, env: dict[str, str], home: Path,
    samples: int, storm: int,
) -> dict[str, Any]:  # fmt: skip
    publisher = open_broker(broker, str(broker.url))
    await publisher.connect()
    subject = contract.WAKE_SUBJECT
    try:
        with wake_process(plane, broker, env, home) as (api, namespace, url, watch):
            heard = "tripwire_wake_signals_total"
            while _metric(url, heard) == 0:  # the subscription is made asynchronously
                await _wake(publisher, subject)
                await asyncio.sleep(0.05)
            latencies = []
            for _ in range(samples):
                set_replicas(api, namespace, DETECTOR, 0)  # as KEDA after its cooldown
                await asyncio.to_thread(wait_for, lambda: _settled(api, namespace), 30, "rest")
                await asyncio.sleep(MIN_INTERVAL_S + 0.3)  # the rate limit at rest too
                started = time.monotonic()
                await _wake(publisher, subject)
                seen = await asyncio.to_thread(watch.wait, 1, started)
                latencies.append((seen - started) * 1000)
            inside = _metric(url, "tripwire_wake_scale_seconds_sum") / max(
                1.0, _metric(url, "tripwire_wake_scale_seconds_count")
            )
            # the storm, at 0 again
            set_replicas(api, namespace, DETECTOR, 0)
            await asyncio.to_thread(wait_for, lambda: _settled(api, namespace), 30, "rest")
            await asyncio.sleep(MIN_INTERVAL_S + 0.3)
            from kubernetes import client

            apps = client.AppsV1Api(api)
            generation = apps.read_namespaced_deployment(DETECTOR, namespace).metadata.generation

            def calls(call: str) -> float:
                return _metric(url, "tripwire_wake_api_requests_total", call=call)

            before = {c: calls(c) for c in ("get_scale", "get_scaledobject", "patch_scale")}
            signals = _metric(url, heard)
            started = time.monotonic()
            for _ in range(storm):
                await _wake(publisher, subject)
            publish_s = time.monotonic() - started
            await asyncio.to_thread(
                wait_for, lambda: _metric(url, heard) - signals >= storm, 60, "the storm heard", 0.1
            )
            await asyncio.sleep(MIN_INTERVAL_S + 1.0)  # the trailing check
            after = {c: calls(c) - before[c] for c in before}
            changed = apps.read_namespaced_deployment(DETECTOR, namespace).metadata.generation
    finally:
        await publisher.close()
    lat = {"median": statistics.median(latencies), "min": min(latencies),
           "max": max(latencies), "samples": samples}  # fmt: skip
    storm_ = {"wakes": storm, "publish_s": round(publish_s, 2),
              "patches": int(after["patch_scale"]),
              "reads": int(after["get_scale"] + after["get_scaledobject"]),
              "spec_changes": int(changed - generation)}  # fmt: skip
    print(f"{name}: wake published -> /scale = 1: median {lat['median']:.1f} ms "
          f"(min {lat['min']:.1f}, max {lat['max']:.1f}, {samples} samples); inside the "
          f"controller (heard -> patched) mean {inside * 1000:.1f} ms", flush=True)  # fmt: skip
    print(f"{name}: storm of {storm} wakes (published in {storm_['publish_s']} s): "
          f"{storm_['patches']} patch(es), {storm_['reads']} reads, the Deployment's spec "
          f"changed {storm_['spec_changes']} time(s)", flush=True)  # fmt: skip
    return {"latency_ms": lat, "controller_heard_to_patched_ms_mean": inside * 1000,
            "storm": storm_}  # fmt: skip


def dry_runs(plane: Plane, tmp: Path) -> dict[str, Any]:
    install_keda_crds(plane, CRD_DIR)
    made = plane.kubectl("create", "namespace", NAMESPACE)
    assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    out: dict[str, Any] = {}
    for overlay in OVERLAYS:
        results = dry_run(plane, build(tmp / overlay, overlay))
        print(
            f"\noverlay {overlay}: kubectl apply --dry-run=server on 1.20 ({len(results)} objects)"
        )
        print(table(results), flush=True)
        out[overlay] = [[r.kind, r.name, r.result, r.detail] for r in results]
    return out


def rehearsals(plane: Plane, tmp: Path, runs: int, weights: str) -> dict[str, float]:
    all_stages = []
    for i in range(runs):
        # a NATS server per run: frames a previous run left unacked would be first in line
        nats = EmbeddedNats.start(tmp / f"nats-{i}")
        try:
            with rehearsal(plane, nats.url, tmp / f"rehearsal-{i}", weights) as run:
                stages = rehearse(run, timeout_s=240)
        finally:
            nats.stop()
        print(f"rehearsal {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()),
              flush=True)  # fmt: skip
        all_stages.append(stages)
    return {s: statistics.median(r[s] for r in all_stages) for s in STAGES}


def local_coldstart(tmp: Path, runs: int, weights: str) -> dict[str, float]:
    """The local scaler's cold start, detector started from scratch like a pod (prefork off),
    push activation on, the cluster's pollingInterval (5 s)."""
    from loadtest.coldstart import measure, policy_copy

    results = asyncio.run(
        measure(tmp / "local", policy_copy(tmp, 5), True, runs, weights, prefork=False)
    )
    return {s: statistics.median(r[s] for r in results if s in r)
            for s in ("scale_decision", "worker_started", "model_loaded", "first_inference",
                      "result_stored")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--storm", type=int, default=1000)
    parser.add_argument("--rehearsals", type=int, default=3)
    parser.add_argument("--weights", default="yolo11n.yaml")
    parser.add_argument("--brokers", nargs="+", choices=["nats", "rabbitmq"],
                        default=["nats", "rabbitmq"])  # fmt: skip
    parser.add_argument("--local", action="store_true", help="also the local scaler's cold start")
    parser.add_argument("--state", type=Path, default=Path(".tripwire/k8s-plane"))
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_, running_plane(args.state.resolve()) as plane:
        tmp = Path(tmp_)
        nats = EmbeddedNats.start(tmp / "nats")
        try:
            for name in args.brokers:
                env: dict[str, str] = {}
                settings = BrokerSettings(url=nats.url)
                rabbit = None
                if name == "rabbitmq":  # the machine's RabbitMQ, names of this run only
                    unique = uuid.uuid4().hex[:8]
                    rabbit = RabbitSettings(exchange=f"bench-{unique}", queue=f"bench-{unique}.m",
                                            dead_letter_exchange=f"bench-{unique}.dlx",
                                            dead_letter_queue=f"bench-{unique}.dead")  # fmt: skip
                    settings = BrokerSettings(url="amqp://guest:guest@127.0.0.1:5672/%2F",
                                              rabbitmq=rabbit)  # fmt: skip
                    env = {"TRIPWIRE_BROKER__RABBITMQ__EXCHANGE": rabbit.exchange,
                           "TRIPWIRE_BROKER__RABBITMQ__QUEUE": rabbit.queue,
                           "TRIPWIRE_BROKER__RABBITMQ__DEAD_LETTER_EXCHANGE":
                               rabbit.dead_letter_exchange,
                           "TRIPWIRE_BROKER__RABBITMQ__DEAD_LETTER_QUEUE":
                               rabbit.dead_letter_queue}  # fmt: skip
                try:
                    report[name] = asyncio.run(
                        measure_broker(plane, name, settings, env, tmp, args.samples, args.storm)
                    )
                finally:
                    if rabbit is not None:
                        for q in (rabbit.queue, rabbit.dead_letter_queue):
                            rabbit_admin("DELETE", f"queues/%2F/{quote(q, safe='')}")
                        for x in (rabbit.exchange, rabbit.dead_letter_exchange):
                            rabbit_admin("DELETE", f"exchanges/%2F/{quote(x, safe='')}")
            report["dry_run"] = dry_runs(plane, tmp)
            if args.rehearsals:
                report["rehearsal_median_s"] = rehearsals(plane, tmp, args.rehearsals, args.weights)
        finally:
            nats.stop()
    if args.local and args.rehearsals:
        with tempfile.TemporaryDirectory() as tmp_:
            report["local_median_s"] = local_coldstart(Path(tmp_), args.rehearsals, args.weights)
    if args.rehearsals:
        print(f"\nmedian seconds after the first motion frame was published ({args.weights}, "
              f"{args.rehearsals} runs)")  # fmt: skip
        print(f"{'':28}" + "".join(f"{s:>16}" for s in STAGES))
        rows = [("cluster (wake controller)", report["rehearsal_median_s"])]
        if "local_median_s" in report:
            rows.append(("local scaler (prefork off)", report["local_median_s"]))
        for label, row in rows:
            print(f"{label:28}" + "".join(f"{row.get(s, float('nan')):>16.2f}" for s in STAGES))
    print(json.dumps({"cluster_wake": report}))


if __name__ == "__main__":
    main()
