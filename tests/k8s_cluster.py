"""A real Kubernetes API server for tests: ../shared/k8s (kube-apiserver 1.20.2, etcd, the
controller manager and a stand-in kubelet), started with RBAC enforced, plus the few helpers
the cluster tests share (namespaces, Deployments, a ServiceAccount's own kubeconfig).

The plane is started by ``up`` and always stopped by ``down``: in the fixture's ``finally``,
at interpreter exit if the fixture never got to its teardown, and before each start (what a
killed session left running in the same state folder).
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
K8S_TOOLKIT = REPO.parent / "shared" / "k8s"
WAKE_DIR = REPO / "deploy" / "k3s" / "base" / "wake"
UP_TIMEOUT_S = 240  # first start on a new folder installs etcd into a venv: ~20-60 s


class PlaneError(RuntimeError):
    """``up`` failed; the message carries its output."""


@dataclass(frozen=True)
class Plane:
    state: Path
    kubeconfig: Path

    def config(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        return doc

    @property
    def server(self) -> str:
        return str(self.config()["clusters"][0]["cluster"]["server"])

    def api(self) -> Any:
        """An ApiClient with the admin token (system:masters: allowed everything)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, input_: str | None = None) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        assert kubectl is not None, "kubectl is not installed"
        return subprocess.run(
            [kubectl, "--kubeconfig", str(self.kubeconfig), *args],
            input=input_, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def _down(state: Path) -> None:
    subprocess.run([str(K8S_TOOLKIT / "down"), str(state)], capture_output=True, timeout=120)


@contextmanager
def running_plane(state: Path) -> Iterator[Plane]:
    """``up`` with RBAC enforced in ``state``, yield, ``down`` (also if the body raised)."""
    _down(state)  # a plane a killed session left behind in this folder
    env = dict(os.environ, K8S_AUTHORIZATION_MODE="RBAC", K8S_UP_TIMEOUT="120")
    # The fake kubelet needs a python with the kubernetes client: this one has it (deploy extra).
    env.setdefault("K8S_PYTHON", sys.executable)
    stop = atexit.register(_down, state)
    try:
        up = subprocess.run(
            [str(K8S_TOOLKIT / "up"), str(state)],
            env=env, capture_output=True, text=True, timeout=UP_TIMEOUT_S,
        )  # fmt: skip
        if up.returncode != 0:
            raise PlaneError(f"{K8S_TOOLKIT}/up failed:\n{up.stdout}\n{up.stderr}")
        yield Plane(state, state / "kubeconfig")
    finally:
        _down(state)
        atexit.unregister(stop)


def install_keda_crds(plane: Plane, folder: Path) -> None:
    """KEDA's CRDs (../shared/schemas/keda), once per plane, Established when this returns.

    ``create --validate=false``: the 1.32 client refuses the CRDs' CEL rules
    (x-kubernetes-validations), which a 1.20 server does not know and drops; server-side
    apply refuses them too. The rest of each schema is served and enforced.
    """
    created = plane.kubectl("create", "--validate=false", "-f", str(folder))
    assert created.returncode == 0 or "AlreadyExists" in created.stderr, created.stderr
    for path in sorted(folder.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        wait = plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        assert wait.returncode == 0, wait.stderr


# --- objects ------------------------------------------------------------------------------------


def new_namespace(api: Any, prefix: str) -> str:
    """A namespace of the calling test only (the plane lives for the whole session)."""
    from kubernetes import client

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def install_wake_rbac(api: Any, namespace: str) -> None:
    """deploy/k3s/base/wake/rbac.yaml (ServiceAccount, Role, RoleBinding) in ``namespace``."""
    from kubernetes import utils

    for doc in yaml.safe_load_all((WAKE_DIR / "rbac.yaml").read_text()):
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace  # what kustomize's namespace does
        utils.create_from_dict(api, doc, namespace=namespace)


def deployment(name: str, replicas: int) -> dict[str, Any]:
    """A minimal Deployment: the stand-in kubelet marks its pods Running, nothing runs."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "detector", "image": "tripwire-detector:test"}]},
            },
        },
    }


def create_deployment(api: Any, namespace: str, name: str, replicas: int) -> None:
    from kubernetes import client

    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment(name, replicas))


def set_replicas(api: Any, namespace: str, name: str, replicas: int) -> None:
    from kubernetes import client

    body = {"spec": {"replicas": replicas}}
    client.AppsV1Api(api).patch_namespaced_deployment_scale(name, namespace, body)


def replicas(api: Any, namespace: str, name: str) -> int:
    from kubernetes import client

    scale = client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace)
    return int(scale.spec.replicas or 0)


def wait_for(predicate: Any, timeout_s: float, what: str, every_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def service_account_kubeconfig(
    plane: Plane, api: Any, namespace: str, name: str, out: Path
) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``name`` (its token Secret, which the
    controller manager creates in 1.20), for checking what a Role allows."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    token: list[str] = []

    def has_token() -> bool:
        account = core.read_namespaced_service_account(name, namespace)
        for ref in account.secrets or []:
            secret = core.read_namespaced_secret(ref.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                token.append(base64.b64decode(secret.data["token"]).decode())
                return True
        return False

    wait_for(has_token, 30, f"the token of ServiceAccount {namespace}/{name}", every_s=0.1)
    doc = plane.config()
    doc["users"] = [{"name": name, "user": {"token": token[0]}}]
    context = {"cluster": doc["clusters"][0]["name"], "user": name, "namespace": namespace}
    doc["contexts"] = [{"name": name, "context": context}]
    doc["current-context"] = name
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out
