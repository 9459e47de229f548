"""``tripwire deploy render``: one detector Deployment + ScaledObject per model, built with the
shipped overlay by kustomize and validated like the shipped manifests; the local scaler reads
the same generated ScaledObject."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_k3s_manifests import (
    CRD_DIR,
    KUBERNETES,
    NAMESPACE,
    _materialize,
    kubectl_build,
)
from tests.deploy.test_k3s_server_dryrun import plane  # noqa: F401  (the fixture)
from tests.k8s_cluster import Plane
from tests.k8s_dryrun import NEWER, OK, REFUSED, dry_run
from tripwire.camera_config import parse_config
from tripwire.model_manifests import model_policies, write
from tripwire.scaler.policy import policy_from_object

CONFIG = {
    "cameras": [{"id": "cam-1", "token_hash": "sha256:" + "ab" * 32}],
    "models": [
        {"name": "coco", "weights": "/anywhere/yolov8n_int8.tflite", "task": "detect"},
        {
            "name": "accident",
            "weights": "accident-cls.pt",
            "task": "classify",
            "device": "cpu",
            "scaling": {"max_replicas": 2, "lag_threshold": 8, "cooldown_period_s": 120},
        },
    ],
}


@pytest.mark.parametrize("broker", ["nats", "rabbitmq"])
def test_render_builds_one_detector_per_model(tmp_path: Path, broker: Any) -> None:
    deploy = _materialize(tmp_path)
    out = tmp_path / "models"
    write(parse_config(CONFIG), broker, out, root=deploy.parent)
    if not shutil.which("kubectl"):
        pytest.skip("the rendered overlay's patches need kubectl kustomize")
    objects = kubectl_build(out)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "tripwire-detector") not in names
    assert ("ScaledObject", "tripwire-detector") not in names
    for model in ("coco", "accident"):
        for kind in ("Deployment", "PodDisruptionBudget", "ScaledObject"):
            assert (kind, f"tripwire-detector-{model}") in names
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    accident = deployments["tripwire-detector-accident"]
    pod = accident["spec"]["template"]
    assert accident["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["detector", "--model", "accident"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRIPWIRE_MODELS_DIR"] == "/models" and "TRIPWIRE_WEIGHTS" not in env
    assert "TRIPWIRE_DEVICE" not in env  # the model's own device (cpu) from the config
    fetch = pod["spec"]["initContainers"][0]["args"][0]
    assert "models/accident-cls.pt /models/accident-cls.pt" in fetch
    coco_env = {e["name"]: e.get("value") for e in deployments["tripwire-detector-coco"]
                ["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert coco_env["TRIPWIRE_DEVICE"] == "cuda:0"  # auto: the GPU pod's setting stays

    # The wake controller wakes (and may scale) the models' Deployments instead.
    wake = deployments["tripwire-wake"]
    wake_env = {
        e["name"]: e.get("value") for e in wake["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    wanted = ["tripwire-detector-coco", "tripwire-detector-accident"]
    assert json.loads(wake_env["TRIPWIRE_DEPLOYMENTS"]) == wanted
    assert len(wake_env) > 3  # merged into its env, not replacing it
    (role,) = [
        o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "tripwire-wake"
    ]
    assert [r["resourceNames"] for r in role["rules"]] == [wanted, wanted]

    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="deploy extra")
    jsonschema = pytest.importorskip("jsonschema", reason="test extra")
    for obj in objects:
        if not obj["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")):
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    scaled = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ScaledObject"}
    if CRD_DIR.is_dir():
        schemas = {}
        for path in CRD_DIR.glob("*.yaml"):
            for crd in yaml.safe_load_all(path.read_text()):
                for version in crd["spec"]["versions"]:
                    kind = crd["spec"]["names"]["kind"]
                    key = (f"{crd['spec']['group']}/{version['name']}", kind)
                    schemas[key] = version["schema"]["openAPIV3Schema"]
        for obj in scaled.values():
            jsonschema.Draft4Validator(schemas[(obj["apiVersion"], obj["kind"])]).validate(obj)

    # The local scaler runs exactly what KEDA gets, model by model.
    local = model_policies(parse_config(CONFIG), broker)
    for model, policy in local.items():
        built = policy_from_object(scaled[f"tripwire-detector-{model}"])
        assert built.model_dump(exclude={"source"}) == policy.model_dump(exclude={"source"})
    assert local["accident"].max_replicas == 2 and local["accident"].target_value == 8
    assert local["accident"].cooldown_period_s == 120
    assert local["coco"].max_replicas == 4 and local["coco"].cooldown_period_s == 60  # shipped
    trigger = scaled["tripwire-detector-accident"]["spec"]["triggers"][0]["metadata"]
    if broker == "nats":
        assert trigger["consumer"] == "detector-accident"
    else:
        assert trigger["queueName"] == "tripwire.motion.accident"


def test_rendered_objects_pass_a_server_side_dry_run(plane: Plane, tmp_path: Path) -> None:  # noqa: F811
    """Each model's Deployment and ScaledObject through the real kube-apiserver (1.20, KEDA's
    CRDs installed); its PodDisruptionBudget (policy/v1) is left to the schemas above."""
    deploy = _materialize(tmp_path)
    out = tmp_path / "models"
    write(parse_config(CONFIG), "nats", out, root=deploy.parent)
    rendered = [
        d for p in sorted(out.glob("detector-*.yaml")) for d in yaml.safe_load_all(p.read_text())
    ]
    for obj in rendered:
        obj["metadata"]["namespace"] = NAMESPACE
    results = dry_run(plane, rendered)
    assert not [r for r in results if r.result == REFUSED], results
    checked = sorted((r.kind, r.name) for r in results if r.result in (OK, NEWER))
    assert checked == [
        ("Deployment", "tripwire-detector-accident"),
        ("Deployment", "tripwire-detector-coco"),
        ("ScaledObject", "tripwire-detector-accident"),
        ("ScaledObject", "tripwire-detector-coco"),
    ]
