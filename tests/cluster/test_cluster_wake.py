"""``tripwire cluster wake`` against a real kube-apiserver (../shared/k8s, RBAC enforced).

Every controller here authenticates as the ServiceAccount of deploy/k3s/base/wake/rbac.yaml,
bound to that file's Role in the test's namespace: the tests that pass show the Role is
enough, and ``test_the_role_allows_nothing_else`` shows it is no more. Wakes travel over the
real brokers (a throwaway nats-server, the machine's RabbitMQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from tests.brokers.test_broker_subscribe import nats_settings, rabbit_settings
from tests.k8s_cluster import (
    Plane,
    create_deployment,
    install_keda_crds,
    install_wake_rbac,
    new_namespace,
    replicas,
    service_account_kubeconfig,
    set_replicas,
    wait_for,
)
from tests.rabbitmq_admin import admin as rabbit_admin
from tripwire import contract
from tripwire.brokers import Broker, open_broker
from tripwire.settings import BrokerSettings
from tripwire.wake.controller import WakeController
from tripwire.wake.kube import PAUSED, PAUSED_REPLICAS, is_paused
from tripwire.wake.service import Running, WakeSettings, running_wake

pytest.importorskip("kubernetes", reason="the deploy extra is not installed")

REPO = Path(__file__).resolve().parents[2]
KEDA_CRDS = REPO.parent / "shared" / "schemas" / "keda"
DETECTOR = "tripwire-detector"  # the name the Role allows
BOUND_S = 10.0  # 0 -> 1 "within a bound": generous, the machine is shared


# --- cluster side -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def admin(k8s: Plane) -> Iterator[Any]:
    api = k8s.api()
    yield api
    api.close()


@pytest.fixture(scope="session")
def keda_crds(k8s: Plane) -> None:
    """KEDA's CRDs on the server, so ScaledObjects are stored and validated."""
    if not KEDA_CRDS.is_dir():
        pytest.skip(f"KEDA CRDs not found at {KEDA_CRDS} (../shared/schemas/keda)")
    install_keda_crds(k8s, KEDA_CRDS)


@dataclass
class Cluster:
    admin: Any
    namespace: str
    kubeconfig: Path  # the wake ServiceAccount's

    def replicas(self) -> int:
        return replicas(self.admin, self.namespace, DETECTOR)

    def set_replicas(self, n: int) -> None:
        set_replicas(self.admin, self.namespace, DETECTOR, n)

    def scale_to_zero(self) -> None:
        """What KEDA does after its cooldown, and then the quiet that follows: the Deployment
        controller has written its last status (a wake comes seconds later at the earliest)."""
        self.set_replicas(0)
        wait_for(self._settled, BOUND_S, "the Deployment at rest at 0", every_s=0.05)
        time.sleep(0.3)

    def _settled(self) -> bool:
        from kubernetes import client

        apps = client.AppsV1Api(self.admin)
        deployment = apps.read_namespaced_deployment(DETECTOR, self.namespace)
        status = deployment.status
        return bool(
            status.observed_generation == deployment.metadata.generation
            and not status.replicas
            and not status.ready_replicas
        )

    def generation(self) -> int:
        from kubernetes import client

        apps = client.AppsV1Api(self.admin)
        return int(apps.read_namespaced_deployment(DETECTOR, self.namespace).metadata.generation)


@pytest.fixture
def cluster(k8s: Plane, admin: Any, tmp_path: Path) -> Iterator[Cluster]:
    from kubernetes import client

    namespace = new_namespace(admin, "wake")
    install_wake_rbac(admin, namespace)
    create_deployment(admin, namespace, DETECTOR, 1)
    kubeconfig = service_account_kubeconfig(
        k8s, admin, namespace, "tripwire-wake", tmp_path / "wake.kubeconfig"
    )
    yield Cluster(admin, namespace, kubeconfig)
    client.CoreV1Api(admin).delete_namespace(namespace)


# --- broker side --------------------------------------------------------------------------------


@dataclass
class Wire:
    settings: BrokerSettings
    subject: str


@pytest.fixture(params=["nats", "rabbitmq"])
async def wire(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Wire]:
    if request.param == "nats":
        url = request.getfixturevalue("nats_url")
        yield Wire(BrokerSettings(url=url, nats=nats_settings(unique)), f"t{unique}.wake")
        return
    rabbit = rabbit_settings(unique)
    url = request.getfixturevalue("rabbitmq_url")
    yield Wire(BrokerSettings(url=url, rabbitmq=rabbit), contract.WAKE_SUBJECT)
    for queue in (rabbit.queue, rabbit.dead_letter_queue, rabbit.events_queue_name):
        rabbit_admin("DELETE", f"queues/%2F/{quote(queue, safe='')}")
    for exchange in (rabbit.exchange, rabbit.dead_letter_exchange):
        rabbit_admin("DELETE", f"exchanges/%2F/{quote(exchange, safe='')}")


@pytest.fixture
def nats_wire(unique: str, nats_url: str) -> Wire:
    return Wire(BrokerSettings(url=nats_url, nats=nats_settings(unique)), f"t{unique}.wake")


@contextlib.asynccontextmanager
async def controller(
    cluster: Cluster, wire: Wire, min_interval_s: float
) -> AsyncIterator[tuple[Running, Broker]]:
    """The wake controller (as the ServiceAccount) and a publisher on the same broker."""
    settings = WakeSettings(
        namespace=cluster.namespace,
        kubeconfig=cluster.kubeconfig,
        broker=wire.settings,
        subject=wire.subject,
        min_interval_s=min_interval_s,
        metrics_port=0,
    )
    publisher = open_broker(wire.settings, str(wire.settings.url))
    await publisher.connect()
    try:
        async with running_wake(settings) as running:
            yield running, publisher
    finally:
        await publisher.close()


async def wake(publisher: Broker, subject: str) -> None:
    headers = {contract.Header.CAMERA: "cam-1", contract.Header.EVENT: "ev-1"}
    await publisher.publish(subject, b'{"camera":"cam-1"}', headers)


async def until_heard(publisher: Broker, subject: str, wake_controller: WakeController) -> None:
    """Wake until the controller hears one (its subscription is made asynchronously), then
    let the checks those wakes caused finish, so the next wake starts from rest."""
    deadline = time.monotonic() + 15
    while wake_controller.heard() == 0:
        assert time.monotonic() < deadline, "the controller never heard a wake"
        await wake(publisher, subject)
        await asyncio.sleep(0.05)
    await asyncio.sleep(2 * wake_controller.min_interval_s + 0.5)


async def eventually(predicate: Any, timeout_s: float, what: str) -> None:
    await asyncio.to_thread(wait_for, predicate, timeout_s, what)


async def http_get(running: Running, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(f"http://127.0.0.1:{running.health.port}{path}")


async def until_ready(running: Running, status: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while (await http_get(running, "/readyz")).status_code != status:
        assert time.monotonic() < deadline, f"/readyz never answered {status}"
        await asyncio.sleep(0.1)


# --- KEDA's pause annotations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "paused"),
    [
        (None, False),  # no annotations at all
        ({}, False),
        ({"other": "x"}, False),
        ({PAUSED_REPLICAS: "0"}, True),  # held at 0 by an operator
        ({PAUSED_REPLICAS: "2"}, True),  # held at 2: KEDA does not scale, neither do we
        ({PAUSED: "true"}, True),  # KEDA 2.13+: paused at the current count
        ({PAUSED: "True "}, True),  # case and spaces ignored: when in doubt, paused
        ({PAUSED: "1"}, True),  # Go's ParseBool spellings of true
        ({PAUSED: "false"}, False),  # present but off
        ({PAUSED: "false", PAUSED_REPLICAS: "0"}, True),  # paused-replicas wins
    ],
)
def test_pause_annotations(annotations: dict[str, str] | None, paused: bool) -> None:
    assert is_paused(annotations) is paused


# --- behaviour ----------------------------------------------------------------------------------


async def test_a_wake_scales_the_detector_from_zero_to_one(cluster: Cluster, wire: Wire) -> None:
    async with controller(cluster, wire, min_interval_s=0.5) as (running, publisher):
        ctl = running.controller
        await until_heard(publisher, wire.subject, ctl)  # at 1 replica: these wakes change nothing
        assert cluster.replicas() == 1 and ctl.requests("patch_scale") == 0
        await until_ready(running, 200)
        await asyncio.to_thread(cluster.scale_to_zero)
        started = time.monotonic()
        await wake(publisher, wire.subject)
        await eventually(lambda: cluster.replicas() == 1, BOUND_S, "replicas 0 -> 1")
        print(f"\nwake published -> /scale = 1: {(time.monotonic() - started) * 1000:.0f} ms")
        assert ctl.count("scaled") == 1 and ctl.requests("patch_scale") == 1
        metrics = (await http_get(running, "/metrics")).text
        assert f'tripwire_wake_checks_total{{deployment="{DETECTOR}",outcome="scaled"}} 1.0' in (
            metrics
        )
        # and the stand-in kubelet runs the pod the controller asked for
        await eventually(lambda: _ready(cluster) == 1, BOUND_S, "one ready replica")


def _ready(cluster: Cluster) -> int:
    from kubernetes import client

    apps = client.AppsV1Api(cluster.admin)
    status = apps.read_namespaced_deployment(DETECTOR, cluster.namespace).status
    return int(status.ready_replicas or 0)


async def test_a_wake_changes_nothing_when_replicas_are_running(
    cluster: Cluster, nats_wire: Wire
) -> None:
    cluster.set_replicas(3)  # KEDA scaled up for a backlog: a wake must not touch it
    generation = cluster.generation()
    async with controller(cluster, nats_wire, min_interval_s=0.2) as (running, publisher):
        ctl = running.controller
        await until_heard(publisher, nats_wire.subject, ctl)
        for _ in range(5):
            await wake(publisher, nats_wire.subject)
            await asyncio.sleep(0.3)
        await eventually(lambda: ctl.count("running") >= 3, BOUND_S, "checks that found 3")
        assert ctl.requests("patch_scale") == 0 and ctl.count("scaled") == 0
    assert cluster.replicas() == 3 and cluster.generation() == generation


async def test_a_storm_of_wakes_makes_a_handful_of_api_calls(
    cluster: Cluster, nats_wire: Wire
) -> None:
    async with controller(cluster, nats_wire, min_interval_s=2.0) as (running, publisher):
        ctl = running.controller
        await until_heard(publisher, nats_wire.subject, ctl)
        await asyncio.to_thread(cluster.scale_to_zero)
        generation = cluster.generation()
        heard, calls = ctl.heard(), sum(map(ctl.requests, ("get_scale", "get_scaledobject")))
        started = time.monotonic()
        for _ in range(1000):
            await wake(publisher, nats_wire.subject)
        await eventually(lambda: ctl.heard() - heard >= 1000, 30, "1,000 wakes heard")
        elapsed = time.monotonic() - started
        await asyncio.sleep(ctl.min_interval_s + 1.0)  # the trailing check of the storm
        patches = ctl.requests("patch_scale")
        reads = sum(map(ctl.requests, ("get_scale", "get_scaledobject"))) - calls
        print(f"\nstorm: 1,000 wakes in {elapsed:.2f} s -> {patches} patch(es), {reads} reads")
        assert cluster.replicas() == 1
        assert patches == 1, "one Deployment at 0: one patch"
        assert cluster.generation() == generation + 1, "the spec changed once"
        # one check per interval at most (each check: 1-2 reads), plus the trailing one
        assert reads <= 2 * (elapsed / ctl.min_interval_s + 2)


async def test_a_paused_scaledobject_is_left_alone(
    cluster: Cluster, nats_wire: Wire, keda_crds: None
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.admin)
    scaled = yaml.safe_load((REPO / "deploy" / "keda" / "nats" / "scaledobject.yaml").read_text())
    scaled["metadata"]["namespace"] = cluster.namespace
    scaled["metadata"]["annotations"] = {PAUSED_REPLICAS: "0"}  # an operator holds it at zero
    custom.create_namespaced_custom_object(
        "keda.sh", "v1alpha1", cluster.namespace, "scaledobjects", scaled
    )
    async with controller(cluster, nats_wire, min_interval_s=0.2) as (running, publisher):
        ctl = running.controller
        await until_heard(publisher, nats_wire.subject, ctl)
        await asyncio.to_thread(cluster.scale_to_zero)
        await wake(publisher, nats_wire.subject)
        await eventually(lambda: ctl.count("paused") >= 1, BOUND_S, "a check that saw the pause")
        assert cluster.replicas() == 0 and ctl.requests("patch_scale") == 0
        # unpaused (the annotation removed): the next wake scales it
        patch = {"metadata": {"annotations": {PAUSED_REPLICAS: None}}}  # a merge patch
        custom.patch_namespaced_custom_object(
            "keda.sh", "v1alpha1", cluster.namespace, "scaledobjects", DETECTOR, patch
        )
        await asyncio.sleep(ctl.min_interval_s + 0.3)
        await wake(publisher, nats_wire.subject)
        await eventually(lambda: cluster.replicas() == 1, BOUND_S, "replicas 0 -> 1")
        assert ctl.count("scaled") == 1


async def test_readyz_is_503_when_the_role_is_missing(
    k8s: Plane, admin: Any, nats_wire: Wire, tmp_path: Path
) -> None:
    from kubernetes import client

    namespace = new_namespace(admin, "norole")
    try:
        client.CoreV1Api(admin).create_namespaced_service_account(
            namespace, {"metadata": {"name": "tripwire-wake"}}
        )  # the account, but no RoleBinding: every call is refused
        create_deployment(admin, namespace, DETECTOR, 0)
        kubeconfig = service_account_kubeconfig(
            k8s, admin, namespace, "tripwire-wake", tmp_path / "k"
        )
        cluster = Cluster(admin, namespace, kubeconfig)
        async with controller(cluster, nats_wire, min_interval_s=0.2) as (running, publisher):
            await asyncio.sleep(1.0)  # the start-up probe has been refused by now
            assert (await http_get(running, "/readyz")).status_code == 503
            await until_heard(publisher, nats_wire.subject, running.controller)
            assert running.controller.count("error") >= 1
            assert cluster.replicas() == 0
    finally:
        client.CoreV1Api(admin).delete_namespace(namespace)


# --- the Role: enough and no more -------------------------------------------------------------


def test_the_role_allows_nothing_else(cluster: Cluster, keda_crds: None) -> None:
    from kubernetes import client, config

    other = new_namespace(cluster.admin, "other")
    create_deployment(cluster.admin, other, DETECTOR, 0)  # the same name, another namespace
    create_deployment(cluster.admin, cluster.namespace, "another-model", 0)
    scaled = yaml.safe_load((REPO / "deploy" / "keda" / "nats" / "scaledobject.yaml").read_text())
    scaled["metadata"]["namespace"] = cluster.namespace
    client.CustomObjectsApi(cluster.admin).create_namespaced_custom_object(
        "keda.sh", "v1alpha1", cluster.namespace, "scaledobjects", scaled
    )
    sa = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    apps, core = client.AppsV1Api(sa), client.CoreV1Api(sa)
    rbac, custom = client.RbacAuthorizationV1Api(sa), client.CustomObjectsApi(sa)
    ns, one = cluster.namespace, {"spec": {"replicas": 1}}
    keda = ("keda.sh", "v1alpha1", ns, "scaledobjects")
    try:
        # enough: what the controller does
        assert apps.read_namespaced_deployment_scale(DETECTOR, ns).spec.replicas == 1
        assert apps.patch_namespaced_deployment_scale(DETECTOR, ns, one).spec.replicas == 1
        assert custom.get_namespaced_custom_object(*keda, DETECTOR)["metadata"]["name"] == DETECTOR
        # no more: each of these is refused by the API server
        scale = apps.read_namespaced_deployment_scale(DETECTOR, ns)
        refused: dict[str, Callable[[], Any]] = {
            "get the Deployment itself": lambda: apps.read_namespaced_deployment(DETECTOR, ns),
            "patch the Deployment": lambda: apps.patch_namespaced_deployment(DETECTOR, ns, one),
            "update (PUT) its scale": lambda: apps.replace_namespaced_deployment_scale(
                DETECTOR, ns, scale
            ),
            "delete the Deployment": lambda: apps.delete_namespaced_deployment(DETECTOR, ns),
            "list Deployments": lambda: apps.list_namespaced_deployment(ns),
            "watch Deployments": lambda: apps.list_namespaced_deployment(ns, watch=True,
                                                                         timeout_seconds=1),
            "get another Deployment's scale": lambda: apps.read_namespaced_deployment_scale(
                "another-model", ns
            ),
            "patch another Deployment's scale": lambda: apps.patch_namespaced_deployment_scale(
                "another-model", ns, one
            ),
            "the detector's scale in another namespace": lambda: (
                apps.patch_namespaced_deployment_scale(DETECTOR, other, one)
            ),
            "a StatefulSet's scale": lambda: apps.read_namespaced_stateful_set_scale(DETECTOR, ns),
            "list pods": lambda: core.list_namespaced_pod(ns),
            "list Secrets": lambda: core.list_namespaced_secret(ns),
            "create a pod": lambda: core.create_namespaced_pod(
                ns, {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x",
                                                                         "image": "x"}]}}
            ),
            "patch the ScaledObject": lambda: custom.patch_namespaced_custom_object(
                *keda, DETECTOR, {"metadata": {"annotations": {PAUSED_REPLICAS: "0"}}}
            ),
            "list ScaledObjects": lambda: custom.list_namespaced_custom_object(*keda),
            "create a RoleBinding": lambda: rbac.create_namespaced_role_binding(
                ns, {"metadata": {"name": "x"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                     "kind": "ClusterRole", "name": "admin"},
                     "subjects": [{"kind": "ServiceAccount", "name": "tripwire-wake",
                                   "namespace": ns}]},
            ),
            "list namespaces": lambda: core.list_namespace(),
        }  # fmt: skip
        for what, call in refused.items():
            with pytest.raises(client.ApiException) as refusal:
                call()
            assert refusal.value.status == 403, f"{what}: HTTP {refusal.value.status}"
        assert cluster.replicas() == 1 and replicas(cluster.admin, other, DETECTOR) == 0
    finally:
        sa.close()
        client.CoreV1Api(cluster.admin).delete_namespace(other)


def test_the_command_refuses_to_start_without_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tripwire.app.cli import main

    monkeypatch.delenv("TRIPWIRE_BROKER__URL", raising=False)
    assert main(["cluster", "wake", "--namespace", "x"]) == 2
    assert "needs a broker URL" in capsys.readouterr().err
