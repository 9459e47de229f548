"""Every object of both overlays through ``kubectl apply --dry-run=server`` on a real 1.20
kube-apiserver (../shared/k8s), KEDA's CRDs installed first so the server validates the
ScaledObjects and TriggerAuthentications against their schemas.

What the 1.20 server cannot serve (policy/v1 PodDisruptionBudgets) is listed and stays on the
schema checks of tests/deploy/test_k3s_manifests.py (kubernetes-validate, 1.32). Run with ``-s`` for
the table per kind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy.test_k3s_manifests import CRD_DIR, NAMESPACE, OVERLAYS, build
from tests.k8s_cluster import Plane, install_keda_crds
from tests.k8s_dryrun import NEWER, OK, REFUSED, UNSERVED, dry_run, table

pytest.importorskip("kubernetes", reason="the deploy extra is not installed")

# Served by 1.32 (the bootstrap's k3s) but not by 1.20: checked by schema only.
NOT_ON_1_20 = {("policy/v1", "PodDisruptionBudget")}


@pytest.fixture(scope="module")
def plane(k8s: Plane) -> Plane:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    if not CRD_DIR.is_dir():
        pytest.skip(f"KEDA CRDs not found at {CRD_DIR} (../shared/schemas/keda)")
    install_keda_crds(k8s, CRD_DIR)
    # A namespaced dry run needs its namespace to exist; the Namespace object itself is
    # dry-run too (as an update of this one).
    made = k8s.kubectl("create", "namespace", NAMESPACE)
    assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    return k8s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_served_object_passes_a_server_side_dry_run(
    plane: Plane, overlay: str, tmp_path: Path
) -> None:
    objects = build(tmp_path, overlay)
    results = dry_run(plane, objects)
    print(f"\noverlay {overlay}: {len(results)} objects, kubectl apply --dry-run=server (1.20)")
    print(table(results))
    refused = [r for r in results if r.result == REFUSED]
    assert not refused, refused
    unserved = {(r.api_version, r.kind) for r in results if r.result == UNSERVED}
    assert unserved == NOT_ON_1_20, "only the kinds listed above are left to the schemas"
    kinds = {r.kind for r in results if r.result in (OK, NEWER)}
    # the server checked what matters: the workloads, the wake controller's RBAC, KEDA's objects
    assert {"Deployment", "DaemonSet", "StatefulSet", "Job", "Service", "NetworkPolicy",
            "ServiceAccount", "Role", "RoleBinding", "ScaledObject"} <= kinds  # fmt: skip
    assert sum(r.result in (OK, NEWER) for r in results) == len(results) - len(
        [r for r in results if r.result == UNSERVED]
    )


def test_the_server_refuses_an_invalid_scaledobject(plane: Plane, tmp_path: Path) -> None:
    """The dry run is not a rubber stamp: a ScaledObject the CRD's schema forbids is refused."""
    objects = build(tmp_path, "nats")
    (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
    scaled["spec"]["pollingInterval"] = "five"  # an integer in the CRD
    (result,) = dry_run(plane, [scaled])
    assert result.result == REFUSED and "pollingInterval" in result.detail, result
