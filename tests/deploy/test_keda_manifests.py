"""deploy/keda: every object valid for KEDA v2.20, every key one KEDA reads, one policy for both.

Schemas: the CRDs in ../shared/schemas/keda/ (kedacore/keda config/crd/bases; see SOURCE.txt),
validated with jsonschema on ``spec.versions[*].schema.openAPIV3Schema``. jsonschema ignores the
``x-kubernetes-*`` keywords; what the API server would do with unknown fields (prune them
silently, so a typo like ``cooldownperiod`` would vanish) is checked here on its own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tripwire.scaler import NatsJetStreamTrigger, RabbitMQTrigger, load_policy

REPO = Path(__file__).resolve().parents[2]
KEDA_DIR = REPO / "deploy" / "keda"
K3S_DIR = REPO / "deploy" / "k3s"
CRD_DIR = REPO.parent / "shared" / "schemas" / "keda"

NAMESPACE = "tripwire"
DETECTOR = "tripwire-detector"
OVERLAYS = {"nats": "nats-jetstream", "rabbitmq": "rabbitmq"}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
OBJECT_META_KEYS = {"name", "namespace", "labels", "annotations"}
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# The metadata keys each scaler reads (KEDA v2.20, the `keda:"name=..."` tags of
# pkg/scalers/nats_jetstream_scaler.go and rabbitmq_scaler.go, and the scaler docs); a key
# outside these lists is silently ignored by KEDA, i.e. a typo.
TRIGGER_METADATA = {
    "nats-jetstream": {
        "natsServerMonitoringEndpoint",
        "account",
        "accountID",
        "stream",
        "consumer",
        "lagThreshold",
        "activationLagThreshold",
        "useHttps",
    },
    "rabbitmq": {
        "host",
        "hostFromEnv",
        "usernameFromEnv",
        "passwordFromEnv",
        "protocol",
        "mode",
        "value",
        "activationValue",
        "queueName",
        "queueLength",
        "vhostName",
        "useRegex",
        "excludeUnacknowledged",
        "pageSize",
        "operation",
        "timeout",
        "unsafeSsl",
    },
}
# The parameters each scaler takes from a TriggerAuthentication.
TRIGGER_AUTH_PARAMS = {
    "nats-jetstream": {"natsServerMonitoringEndpoint", "account", "accountID"},
    "rabbitmq": {
        "host",
        "protocol",
        "vhostName",
        "username",
        "password",
        "ca",
        "cert",
        "key",
        "keyPassword",
        "tls",
        "workloadIdentityResource",
        "oauthTokenURI",
        "clientID",
        "clientSecret",
        "scopes",
        "endpointParams",
    },
}
# Keys a trigger needs, from its metadata or its TriggerAuthentication.
TRIGGER_REQUIRED = {
    "nats-jetstream": [
        {"stream"},
        {"consumer"},
        {"natsServerMonitoringEndpoint"},
        {"account", "accountID"},
    ],
    "rabbitmq": [{"queueName"}, {"host", "hostFromEnv"}],
}


def _documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), f"{path}: every document is a mapping"
    return docs


YAML_FILES = sorted(KEDA_DIR.rglob("*.yaml"))
OBJECTS = [
    (path, index, doc)
    for path in YAML_FILES
    for index, doc in enumerate(_documents(path))
    if doc.get("kind") != "Kustomization"
]
OBJECT_IDS = [f"{path.relative_to(KEDA_DIR)}#{index}" for path, index, _ in OBJECTS]
SCALED_OBJECTS = [(path, doc) for path, _, doc in OBJECTS if doc.get("kind") == "ScaledObject"]


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, from every CRD in the shared folder."""
    if not CRD_DIR.is_dir():
        pytest.skip(f"KEDA CRD folder {CRD_DIR} is absent (shared/schemas/keda)")
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for crd_path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in _documents(crd_path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    assert ("keda.sh/v1alpha1", "ScaledObject") in schemas, f"no ScaledObject CRD in {CRD_DIR}"
    return schemas


def _validator(schema: dict[str, Any]) -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (deploy extra) not installed")
    # OpenAPI v3.0 schemas are JSON Schema draft 4 plus extensions (ignored here).
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _crd_errors(doc: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key not in schemas:
        return [f"no CRD for apiVersion {key[0]!r} kind {key[1]!r}"]
    validator = _validator(schemas[key])
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def _pruned(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would drop: not in a structural schema's properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                found += _pruned(item, properties[key], where)
            elif isinstance(extra, dict):
                found += _pruned(item, extra, where)
            elif properties is not None and extra is not True:
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += _pruned(item, schema["items"], f"{path}[{index}]")
    return found


@pytest.mark.parametrize(("path", "index", "doc"), OBJECTS, ids=OBJECT_IDS)
def test_object_validates_against_the_keda_crd(
    path: Path, index: int, doc: dict[str, Any], crd_schemas: dict[tuple[str, str], Any]
) -> None:
    assert _crd_errors(doc, crd_schemas) == [], f"{path}#{index}"
    schema = crd_schemas[(doc["apiVersion"], doc["kind"])]
    assert _pruned(doc, schema) == [], f"{path}#{index}: fields KEDA's API would drop"
    # The CRD leaves metadata to the API server's ObjectMeta: check what we use of it.
    meta = doc["metadata"]
    assert set(meta) <= OBJECT_META_KEYS, f"{path}#{index}: metadata keys"
    assert DNS_1123.match(meta["name"]) and len(meta["name"]) <= 253
    assert meta.get("namespace") == NAMESPACE, f"{path}#{index}: objects name their namespace"


# Sanity of the checks themselves: each broken copy must be caught.
BROKEN = [
    # a negative minReplicaCount is refused by the CRD (minimum: 0)
    (("spec", "minReplicaCount"), -1, "crd"),
    # pollingInterval has minimum 1
    (("spec", "pollingInterval"), 0, "crd"),
    # trigger metadata values are strings (additionalProperties: string): an unquoted number
    (("spec", "triggers", 0, "metadata", "lagThreshold"), 32, "crd"),
    # a typo is not an error for the API server, it is pruned: caught by _pruned
    (("spec", "cooldownperiod"), 60, "pruned"),
    # an unknown behavior field is pruned too
    (
        ("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown", "window"),
        1,
        "pruned",
    ),
]


@pytest.mark.parametrize(("where", "value", "caught_by"), BROKEN)
def test_the_schema_checks_catch_broken_objects(
    where: tuple[str | int, ...],
    value: Any,
    caught_by: str,
    crd_schemas: dict[tuple[str, str], Any],
) -> None:
    doc = yaml.safe_load((KEDA_DIR / "nats" / "scaledobject.yaml").read_text())
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    schema = crd_schemas[("keda.sh/v1alpha1", "ScaledObject")]
    if caught_by == "crd":
        assert _crd_errors(doc, crd_schemas) != []
    else:
        assert _pruned(doc, schema) != []


def test_missing_triggers_are_refused_by_the_crd(crd_schemas: dict[tuple[str, str], Any]) -> None:
    doc = yaml.safe_load((KEDA_DIR / "nats" / "scaledobject.yaml").read_text())
    del doc["spec"]["triggers"]  # required by the CRD
    assert any("triggers" in error for error in _crd_errors(doc, crd_schemas))


def test_deploy_keda_holds_one_overlay_per_broker() -> None:
    assert sorted(p.name for p in KEDA_DIR.iterdir() if p.is_dir()) == sorted(OVERLAYS)
    for overlay, trigger_type in OVERLAYS.items():
        scaled = [doc for path, doc in SCALED_OBJECTS if path.parent.name == overlay]
        assert len(scaled) == 1, f"{overlay}: exactly one ScaledObject"
        spec = scaled[0]["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": DETECTOR,
        }
        assert [t["type"] for t in spec["triggers"]] == [trigger_type]
        assert spec["minReplicaCount"] == 0, "scale to zero"
        for key in ("maxReplicaCount", "pollingInterval", "cooldownPeriod"):
            assert key in spec, f"{overlay}: {key} is chosen, not left to KEDA's default"
        assert "behavior" in spec["advanced"]["horizontalPodAutoscalerConfig"]
    for path, _, doc in OBJECTS:
        assert doc["apiVersion"] == "keda.sh/v1alpha1" and doc["kind"] in KEDA_KINDS, path


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kustomization_lists_every_object_of_its_folder(overlay: str) -> None:
    folder = KEDA_DIR / overlay
    (kustomization,) = _documents(folder / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = sorted(kustomization["resources"])
    on_disk = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
    assert listed == on_disk
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the kustomize build itself is not run")
    built = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    expected = [doc for path in folder.glob("*.yaml") for doc in _documents(path)]
    expected = [doc for doc in expected if doc["kind"] != "Kustomization"]

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return (doc["kind"], doc["metadata"]["name"])

    assert sorted([d for d in yaml.safe_load_all(built) if d], key=key) == sorted(expected, key=key)


@pytest.mark.parametrize(
    ("path", "doc"), SCALED_OBJECTS, ids=[str(p.parent.name) for p, _ in SCALED_OBJECTS]
)
def test_trigger_keys_are_ones_keda_reads(path: Path, doc: dict[str, Any]) -> None:
    auths = {
        d["metadata"]["name"]: d
        for _, _, d in OBJECTS
        if d["kind"] == "TriggerAuthentication" and d["metadata"]["namespace"] == NAMESPACE
    }
    for trigger in doc["spec"]["triggers"]:
        kind, metadata = trigger["type"], trigger["metadata"]
        assert set(metadata) <= TRIGGER_METADATA[kind], f"{path}: keys KEDA's {kind} ignores"
        # credentials never sit in the ScaledObject itself
        assert not {"host", "username", "password"} & set(metadata), path
        assert not any(re.search(r"://[^/@\s]+:[^/@\s]+@", v) for v in metadata.values()), path
        params: set[str] = set()
        if "authenticationRef" in trigger:
            ref = trigger["authenticationRef"]
            assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
            assert ref["name"] in auths, f"{path}: {ref['name']} is not in deploy/keda"
            refs = auths[ref["name"]]["spec"]["secretTargetRef"]
            params = {r["parameter"] for r in refs}
            assert params <= TRIGGER_AUTH_PARAMS[kind], f"{path}: parameters {kind} ignores"
        for needed in TRIGGER_REQUIRED[kind]:
            assert needed & (set(metadata) | params), f"{path}: one of {sorted(needed)} is needed"


def test_rabbitmq_reads_the_management_url_secret() -> None:
    # The Secret itself is deploy/k3s's (generated at deploy time); this is the contract.
    (auth,) = [d for _, _, d in OBJECTS if d["kind"] == "TriggerAuthentication"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "tripwire-rabbitmq", "key": "management-url"}
    ]
    (scaled,) = [d for p, d in SCALED_OBJECTS if p.parent.name == "rabbitmq"]
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    # http so that unacknowledged messages count; amqp would read ready messages only
    assert metadata["protocol"] == "http" and metadata["mode"] == "QueueLength"
    assert "excludeUnacknowledged" not in metadata


@pytest.mark.parametrize(
    ("path", "doc"), SCALED_OBJECTS, ids=[str(p.parent.name) for p, _ in SCALED_OBJECTS]
)
def test_local_policy_reads_what_keda_applies(path: Path, doc: dict[str, Any]) -> None:
    """The same file drives both executors: the parsed policy equals the YAML's values."""
    policy = load_policy(path)
    spec = doc["spec"]
    metadata = spec["triggers"][0]["metadata"]
    assert (policy.name, policy.namespace) == (doc["metadata"]["name"], NAMESPACE)
    assert policy.target_ref.name == spec["scaleTargetRef"]["name"]
    assert policy.polling_interval_s == spec["pollingInterval"]
    assert policy.cooldown_period_s == spec["cooldownPeriod"]
    assert policy.min_replicas == spec["minReplicaCount"]
    assert policy.max_replicas == spec["maxReplicaCount"]
    trigger = policy.trigger
    if isinstance(trigger, NatsJetStreamTrigger):
        assert spec["triggers"][0]["type"] == "nats-jetstream"
        assert policy.target_value == float(metadata["lagThreshold"])
        assert policy.activation_value == float(metadata["activationLagThreshold"])
        assert (trigger.stream, trigger.consumer) == (metadata["stream"], metadata["consumer"])
    else:
        assert isinstance(trigger, RabbitMQTrigger)
        assert spec["triggers"][0]["type"] == "rabbitmq"
        assert policy.target_value == float(metadata["value"])
        assert policy.activation_value == float(metadata["activationValue"])
        assert (trigger.queue_name, trigger.vhost_name) == (
            metadata["queueName"],
            metadata["vhostName"],
        )
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert policy.behavior is not None
    for direction, rules in (
        ("scaleUp", policy.behavior.scale_up),
        ("scaleDown", policy.behavior.scale_down),
    ):
        given = behavior[direction]
        assert rules.stabilization_window_seconds == given["stabilizationWindowSeconds"]
        assert rules.select_policy == given.get("selectPolicy", "Max")
        assert [(p.type, p.value, p.period_seconds) for p in rules.policies] == [
            (p["type"], p["value"], p["periodSeconds"]) for p in given["policies"]
        ]


# --- cross-checks with deploy/k3s (issue 6); they run once deploy/k3s defines the workloads ---


def _k3s_objects() -> list[tuple[Path, dict[str, Any]]]:
    if not K3S_DIR.is_dir():
        return []
    found = []
    for path in sorted(K3S_DIR.rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # not ours to judge here (e.g. a Helm-style template)
        found += [(path, doc) for doc in docs if isinstance(doc, dict) and "kind" in doc]
    return found


def _kustomize_namespace(path: Path) -> str | None:
    """The namespace the nearest kustomization at or above ``path`` sets, if any."""
    for folder in path.parents:
        for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            file = folder / name
            if file.is_file():
                namespace = (yaml.safe_load(file.read_text()) or {}).get("namespace")
                if namespace:
                    return str(namespace)
        if folder == K3S_DIR:
            break
    overlays = sorted((K3S_DIR / "overlays").glob("*/kustomization.yaml"))
    namespaces = {(yaml.safe_load(f.read_text()) or {}).get("namespace") for f in overlays}
    return namespaces.pop() if len(namespaces) == 1 else None


def _k3s_detector() -> tuple[Path, dict[str, Any]]:
    deployments = [(p, d) for p, d in _k3s_objects() if d["kind"] == "Deployment"]
    if not deployments:
        pytest.skip("deploy/k3s defines no Deployment yet (issue 6): nothing to cross-check")
    named = [(p, d) for p, d in deployments if d.get("metadata", {}).get("name") == DETECTOR]
    assert named, f"deploy/k3s has Deployments but none named {DETECTOR}"
    return named[0]


def test_scaledobjects_target_the_k3s_detector_deployment() -> None:
    path, deployment = _k3s_detector()
    namespace = deployment["metadata"].get("namespace") or _kustomize_namespace(path)
    assert namespace == NAMESPACE, f"{path}: the detector Deployment's namespace"
    for scaled_path, scaled in SCALED_OBJECTS:
        ref = scaled["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"], scaled["metadata"]["namespace"]) == (
            "Deployment",
            deployment["metadata"]["name"],
            namespace,
        ), scaled_path


def test_k3s_detector_starts_at_zero_replicas() -> None:
    # KEDA owns the count: a Deployment without replicas: 0 would start one GPU pod at
    # every apply until the next poll scales it back.
    path, deployment = _k3s_detector()
    assert deployment["spec"].get("replicas") == 0, path


def test_nats_monitoring_endpoint_is_a_k3s_service() -> None:
    services = [d for _, d in _k3s_objects() if d["kind"] == "Service"]
    if not services:
        pytest.skip("deploy/k3s defines no Service yet (issue 6): nothing to cross-check")
    (scaled,) = [d for p, d in SCALED_OBJECTS if p.parent.name == "nats"]
    endpoint = scaled["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"]
    host, port = endpoint.rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    assert namespace == NAMESPACE
    ports = [
        p.get("port")
        for d in services
        if d["metadata"]["name"] == name
        for p in d.get("spec", {}).get("ports", [])
    ]
    assert int(port) in ports, f"Service {name} must expose the monitoring port {port}"
