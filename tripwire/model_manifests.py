"""One detector Deployment + ScaledObject per model, generated from the shipped ones.

The shipped objects (deploy/k3s/base/detector/deployment.yaml, deploy/keda/<broker>/
scaledobject.yaml) stay the source of every number; a model of the config's ``models:``
section changes only what is its own: the names (``tripwire-detector-<model>``), the
consumer or queue its trigger reads (:mod:`tripwire.brokers.routes`), the ``--model``
argument, the weights it fetches, and the scaling numbers it overrides. The local scaler
reads the same generated ScaledObject (:func:`model_policies`), so on one machine and on a
cluster a model scales by the same object. The wake controller is pointed at the models'
Deployments (its list and its Role's resourceNames).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tripwire.brokers.routes import MotionRoute
from tripwire.camera_config import CamerasFile
from tripwire.errors import ConfigError
from tripwire.model_config import ModelConfig, max_queue_on_nats
from tripwire.scaler.policy import ScalingPolicy, policy_file, policy_from_object
from tripwire.scaler.triggers import Broker

# Under the checkout's root (``tripwire deploy render`` runs from a checkout: it writes an
# overlay over deploy/k3s, which a wheel does not carry).
BASE_DEPLOYMENT = Path("deploy/k3s/base/detector/deployment.yaml")
BASE_PDB = Path("deploy/k3s/base/detector/pdb.yaml")
MODEL_LABEL = "tripwire.io/model"

# The names the shipped objects give the one default model.
DEFAULT_DURABLE = "detector"
DEFAULT_QUEUE = "tripwire.motion"


def workload_name(model: str) -> str:
    return f"tripwire-detector-{model}"


def _load(path: Any) -> dict[str, Any]:
    try:
        with open(path) as handle:
            doc = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not one YAML object")
    return doc


def scaled_object(base: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    """The base ScaledObject for ``model``: its names, its consumer or queue, its numbers."""
    doc = copy.deepcopy(base)
    name = workload_name(model.name)
    doc["metadata"]["name"] = name
    doc["metadata"].setdefault("labels", {})["app.kubernetes.io/name"] = name
    doc["metadata"]["labels"][MODEL_LABEL] = model.name
    spec = doc["spec"]
    spec["scaleTargetRef"]["name"] = name
    route = MotionRoute(model.name, tuple(model.cameras))
    trigger = spec["triggers"][0]
    meta = trigger["metadata"]
    s = model.scaling
    if trigger["type"] == "nats-jetstream":
        meta["consumer"] = route.name(DEFAULT_DURABLE, "-")
        if s.lag_threshold is not None:
            meta["lagThreshold"] = str(s.lag_threshold)
        if s.activation_threshold is not None:
            meta["activationLagThreshold"] = str(s.activation_threshold)
    else:
        meta["queueName"] = route.name(DEFAULT_QUEUE, ".")
        if s.lag_threshold is not None:
            meta["value"] = str(s.lag_threshold)
        if s.activation_threshold is not None:
            meta["activationValue"] = str(s.activation_threshold)
    numbers = {
        "minReplicaCount": s.min_replicas,
        "maxReplicaCount": s.max_replicas,
        "pollingInterval": s.polling_interval_s,
        "cooldownPeriod": s.cooldown_period_s,
    }
    spec.update({k: v for k, v in numbers.items() if v is not None})
    return doc


def deployment(base: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    """The base detector Deployment running ``tripwire detector --model <name>``; its init
    container fetches ``models/<weights file>`` from the archive into ``/models``."""
    doc = copy.deepcopy(base)
    name = workload_name(model.name)
    labels = {**doc["metadata"]["labels"], "app.kubernetes.io/name": name, MODEL_LABEL: model.name}
    doc["metadata"]["name"] = name
    doc["metadata"]["labels"] = labels
    spec = doc["spec"]
    spec["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    pod = spec["template"]
    pod["metadata"]["labels"] = dict(labels)
    weights = PurePosixPath(model.weights).name
    for init in pod["spec"].get("initContainers", []):
        if init["name"] == "fetch-weights":
            init["args"] = [
                arg.replace("models/yolo11n.pt", f"models/{weights}") for arg in init["args"]
            ]
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "detector")
    container["args"] = ["detector", "--model", model.name]
    # The config names the weights as the operator keeps them; the pod loads the fetched copy.
    env = [e for e in container["env"] if e["name"] != "TRIPWIRE_WEIGHTS"]
    env.insert(3, {"name": "TRIPWIRE_MODELS_DIR", "value": "/models"})
    if model.device != "auto":
        env = [e for e in env if e["name"] != "TRIPWIRE_DEVICE"]
    container["env"] = env
    return doc


def pdb(base: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    name = workload_name(model.name)
    doc["metadata"]["name"] = name
    doc["metadata"]["labels"] = {**doc["metadata"]["labels"], "app.kubernetes.io/name": name}
    doc["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    return doc


def render(config: CamerasFile, broker: Broker, root: Path) -> dict[str, list[dict[str, Any]]]:
    """Per model: its Deployment, PodDisruptionBudget and ScaledObject (``root``: the
    checkout whose deploy/ holds the shipped objects)."""
    if not config.models:
        raise ConfigError("the config has no models section: the shipped manifests serve it")
    if broker == "nats" and (bounded := [m.name for m in config.models if m.max_queue]):
        raise ConfigError(max_queue_on_nats(bounded))
    base_so = _load(policy_file(broker))
    base_deploy, base_pdb = _load(root / BASE_DEPLOYMENT), _load(root / BASE_PDB)
    return {
        m.name: [deployment(base_deploy, m), pdb(base_pdb, m), scaled_object(base_so, m)]
        for m in config.models
    }


def model_policies(config: CamerasFile, broker: Broker) -> dict[str, ScalingPolicy]:
    """The scaling policy of each model: the generated ScaledObject, read as KEDA reads it."""
    base = _load(policy_file(broker))
    return {
        m.name: policy_from_object(scaled_object(base, m), f"{policy_file(broker)} [{m.name}]")
        for m in config.models
    }


def _wake_patches(models: list[str]) -> list[dict[str, Any]]:
    """The wake controller wakes, and may scale, each model's Deployment instead."""
    names = [workload_name(m) for m in models]
    env = {"name": "TRIPWIRE_DEPLOYMENTS", "value": json.dumps(names)}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tripwire-wake", "namespace": "tripwire"},
        "spec": {"template": {"spec": {"containers": [{"name": "wake", "env": [env]}]}}},
    }
    role = [{"op": "replace", "path": f"/rules/{i}/resourceNames", "value": names} for i in (0, 1)]
    return [
        {"patch": yaml.safe_dump(deployment)},
        {
            "target": {"kind": "Role", "name": "tripwire-wake"},
            "patch": yaml.safe_dump(role),
        },
    ]


def kustomization(models: list[str], overlay: str) -> dict[str, Any]:
    """An overlay that replaces the shipped single detector with one per model."""
    deletes = [
        ("apps/v1", "Deployment", "tripwire-detector"),
        ("policy/v1", "PodDisruptionBudget", "tripwire-detector"),
        ("keda.sh/v1alpha1", "ScaledObject", "tripwire-detector"),
    ]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "tripwire",
        "resources": [overlay, *(f"detector-{m}.yaml" for m in models)],
        "patches": [
            {
                "patch": yaml.safe_dump(
                    {
                        "$patch": "delete",
                        "apiVersion": api,
                        "kind": kind,
                        "metadata": {"name": name, "namespace": "tripwire"},
                    }
                )
            }
            for api, kind, name in deletes
        ]
        + _wake_patches(models),
    }


def write(config: CamerasFile, broker: Broker, out: Path, root: Path) -> list[Path]:
    """``tripwire deploy render``: ``detector-<model>.yaml`` per model and a kustomization
    over the shipped overlay of ``broker`` that replaces its single detector with them."""
    rendered = render(config, broker, root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in rendered.items():
        path = out / f"detector-{name}.yaml"
        path.write_text(
            f"# Generated by tripwire deploy render from the models section: model {name}.\n"
            + yaml.safe_dump_all(docs, sort_keys=False)
        )
        written.append(path)
    overlay = root / "deploy" / "k3s" / "overlays" / broker
    relative = os.path.relpath(overlay, out.resolve())
    kustomize = out / "kustomization.yaml"
    kustomize.write_text(
        "# Generated by tripwire deploy render: kubectl apply -k <this folder>\n"
        + yaml.safe_dump(kustomization(list(rendered), relative), sort_keys=False)
    )
    return [*written, kustomize]
