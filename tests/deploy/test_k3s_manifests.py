"""deploy/k3s: each overlay builds, every object is valid, and the pieces fit together.

Build: ``kubectl kustomize`` when kubectl is on PATH, else the small Python builder below,
which implements the subset of kustomize these folders use (resources, components, namespace,
secret/configMap generators with env files and files, generator labels, no name hash). When
kubectl is present, a test also checks that both builders produce the same objects.

The generators read env files that are never committed: each build works on a temporary copy
of deploy/ where every ``*.example`` is copied to its real name with the ``<...>`` placeholders
replaced by random values, the way the bootstrap playbook writes them.

Schemas: Kubernetes objects against kubernetes-validate's strict schemas for KUBERNETES
(the version the bootstrap installs), KEDA objects against ../shared/schemas/keda (skipped with
a reason when absent). ServiceMonitor has no schema available offline: checked by hand.
Run with ``-s`` to see the object counts per kind per overlay.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K3S = DEPLOY / "k3s"
CRD_DIR = REPO.parent / "shared" / "schemas" / "keda"
KUBERNETES = "1.32.0"  # = k3s_version's minor in deploy/k3s/bootstrap/group_vars/all.yml
NAMESPACE = "tripwire"
OVERLAYS = ["nats", "rabbitmq"]
VARIANTS = [(o, m) for o in OVERLAYS for m in (False, True)]
VARIANT_IDS = [f"{o}{'+monitoring' if m else ''}" for o, m in VARIANTS]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
PLACEHOLDER = re.compile(r"<[^<>\n]*>")

Obj = dict[str, Any]


# --- building ---------------------------------------------------------------------------------


def _materialize(tmp: Path) -> Path:
    """A copy of deploy/ with the git-ignored secret files written from their examples."""
    copy = tmp / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("*.env", "cameras.yaml"))
    for example in copy.rglob("*.example"):
        text = PLACEHOLDER.sub(lambda _: secrets.token_hex(16), example.read_text())
        if example.name == "cameras.yaml.example":
            text = re.sub(r"sha256:[0-9a-f]+", "sha256:" + "ab" * 32, text)
        example.with_suffix("").write_text(text)
    return copy


def _read_env(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _generated(kind: str, gen: dict[str, Any], folder: Path, options: dict[str, Any]) -> Obj:
    data: dict[str, str] = {}
    for env in gen.get("envs", []):
        data.update(_read_env(folder / env))
    for spec in gen.get("files", []):
        key, _, source = spec.rpartition("=") if "=" in spec else ("", "", spec)
        data[key or Path(source).name] = (folder / source).read_text()
    merged = {**options, **gen.get("options", {})}
    assert merged.get("disableNameSuffixHash"), f"{folder}: the Python builder needs no hash"
    meta: dict[str, Any] = {"name": gen["name"]}
    if merged.get("labels"):
        meta["labels"] = dict(merged["labels"])
    if kind == "Secret":
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "type": gen.get("type", "Opaque"), "data": encoded}  # fmt: skip
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": data}


def python_build(folder: Path) -> list[Obj]:
    """The kustomize subset deploy/k3s uses; refuses anything else."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "components", "generatorOptions",
             "secretGenerator", "configMapGenerator"}  # fmt: skip
    assert set(kustomization) <= known, f"{folder}: {set(kustomization) - known} not supported"
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if path.is_dir():
            objects += python_build(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    options = kustomization.get("generatorOptions", {})
    for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        objects += [_generated(kind, g, folder, options) for g in kustomization.get(key, [])]
    for component in kustomization.get("components", []):
        objects += python_build(folder / component)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in {"Namespace", "RuntimeClass"}:
                obj["metadata"]["namespace"] = namespace
    return objects


def kubectl_build(folder: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


BUILDER = "kubectl kustomize" if shutil.which("kubectl") else "python builder"


def _overlay_dir(deploy: Path, overlay: str, monitoring: bool) -> Path:
    folder = deploy / "k3s" / "overlays" / overlay
    if monitoring:  # what a user does to enable the component: add it to the overlay
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        kustomization["components"] = ["../../components/monitoring"]
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return folder


def build(tmp: Path, overlay: str, monitoring: bool = False) -> list[Obj]:
    folder = _overlay_dir(_materialize(tmp), overlay, monitoring)
    return kubectl_build(folder) if shutil.which("kubectl") else python_build(folder)


@pytest.fixture(scope="module", params=VARIANTS, ids=VARIANT_IDS)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    overlay, monitoring = request.param
    return overlay, monitoring, build(tmp_path_factory.mktemp(overlay), overlay, monitoring)


def _find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def _pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj, obj["spec"]["template"]


def _containers(pod: Obj) -> list[Obj]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def _env(container: Obj) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


# --- counts and schemas -----------------------------------------------------------------------


def test_object_counts_per_kind(built: Any) -> None:
    overlay, monitoring, objects = built
    counts = Counter(o["kind"] for o in objects)
    label = f"{overlay}{' + monitoring' if monitoring else ''}"
    print(f"\n[{BUILDER}] overlay {label}: {len(objects)} objects")
    for kind, n in sorted(counts.items()):
        print(f"  {kind:24} {n}")
    # Deployments: detector, events function, console, wake controller; DaemonSets: the
    # gateway and the pull-mode cameras.
    assert counts["Namespace"] == 1 and counts["DaemonSet"] == 2
    assert {d["metadata"]["name"] for d in _find(objects, "Deployment")} == {
        "tripwire-detector", "tripwire-events", "tripwire-console", "tripwire-wake"}  # fmt: skip
    assert counts["ScaledObject"] == 1
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "no object twice"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_kubernetes_objects_validate(built: Any) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="deploy extra")
    _, _, objects = built
    checked = 0
    for obj in objects:
        if "." in obj["apiVersion"].split("/")[0] and obj["kind"] in {
            "ScaledObject",
            "TriggerAuthentication",
            "ServiceMonitor",
        }:
            continue  # CRDs: below
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        checked += 1
    assert checked > 20


def test_keda_objects_validate_against_the_crds(built: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="test extra")
    if not CRD_DIR.is_dir():
        pytest.skip(f"KEDA CRDs not found at {CRD_DIR} (../shared/schemas/keda)")
    schemas = {}
    for path in CRD_DIR.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    _, _, objects = built
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    assert keda
    for obj in keda:
        jsonschema.Draft4Validator(schemas[(obj["apiVersion"], obj["kind"])]).validate(obj)


def test_servicemonitors_select_services_with_their_ports(built: Any) -> None:
    # No ServiceMonitor schema offline (monitoring.coreos.com): the fields we use, by hand.
    _, monitoring, objects = built
    monitors = _find(objects, "ServiceMonitor")
    assert bool(monitors) == monitoring
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor["spec"]) == {"selector", "endpoints"}
        wanted = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in _find(objects, "Service")
                    if wanted.items() <= s["metadata"].get("labels", {}).items()]  # fmt: skip
        assert services, monitor["metadata"]["name"]
        ports = {p["name"] for s in services for p in s["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    if monitoring:
        (dashboard,) = _find(objects, "ConfigMap", "tripwire-grafana-dashboard")
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_python_builder_matches_kubectl(tmp_path: Path) -> None:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed: the Python builder is the only build")
    for overlay, monitoring in VARIANTS:
        folder = _overlay_dir(
            _materialize(tmp_path / f"{overlay}{monitoring}"), overlay, monitoring
        )

        def key(o: Obj) -> tuple[str, str]:
            return (o["kind"], o["metadata"]["name"])

        def plain(objects: list[Obj]) -> list[Obj]:
            # kubectl wraps long base64 lines: compare decoded Secret values
            for obj in objects:
                if obj["kind"] == "Secret":
                    obj["data"] = {k: base64.b64decode(v) for k, v in obj["data"].items()}
            return sorted(objects, key=key)

        assert plain(python_build(folder)) == plain(kubectl_build(folder))


# --- cross-checks -----------------------------------------------------------------------------


def test_every_service_selects_pods(built: Any) -> None:
    _, _, objects = built
    pods = [pod["metadata"]["labels"] for _, pod in _pod_specs(objects)]
    for service in _find(objects, "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), service["metadata"]
        targets = {
            p.get("name") for _, pod in _pod_specs(objects) for c in pod["spec"]["containers"]
            for p in c.get("ports", [])
            if selector.items() <= pod["metadata"]["labels"].items()
        }  # fmt: skip
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            assert not isinstance(target, str) or target in targets, (service, target)


def test_workload_selectors_match_their_templates_and_have_a_pdb(built: Any) -> None:
    _, _, objects = built
    budgets = [b["spec"]["selector"]["matchLabels"] for b in _find(objects, "PodDisruptionBudget")]
    for workload, pod in _pod_specs(objects):
        labels = pod["metadata"]["labels"]
        if workload["kind"] == "Job":
            continue
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert any(b.items() <= labels.items() for b in budgets), workload["metadata"]["name"]


def test_scaledobject_targets_the_detector_at_zero_replicas(built: Any) -> None:
    _, _, objects = built
    (scaled,) = _find(objects, "ScaledObject")
    ref = scaled["spec"]["scaleTargetRef"]
    (target,) = _find(objects, ref["kind"], ref["name"])
    assert target["spec"]["replicas"] == 0, "KEDA owns the count"
    for auth_ref in (t.get("authenticationRef") for t in scaled["spec"]["triggers"]):
        if auth_ref:
            assert _find(objects, "TriggerAuthentication", auth_ref["name"])


def test_nats_trigger_reads_the_nats_service_monitoring_port(built: Any) -> None:
    overlay, _, objects = built
    (scaled,) = _find(objects, "ScaledObject")
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    if overlay != "nats":
        host = "rabbitmq"
        (service,) = _find(objects, "Service", host)
        assert 15672 in [p["port"] for p in service["spec"]["ports"]]
        return
    host, port = metadata["natsServerMonitoringEndpoint"].rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    (service,) = _find(objects, "Service", name)
    assert namespace == NAMESPACE and int(port) in [p["port"] for p in service["spec"]["ports"]]


def _secret_refs(objects: list[Obj]) -> Iterator[tuple[str, str | None, str]]:
    """(secret name, key or None, where) for every reference to a Secret."""
    for workload, pod in _pod_specs(objects):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                yield volume["secret"]["secretName"], None, where
        for container in _containers(pod):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    yield source["secretRef"]["name"], None, where
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"], where
    for auth in _find(objects, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            yield ref["name"], ref["key"], f"TriggerAuthentication/{auth['metadata']['name']}"


def test_every_secret_reference_has_a_generator_and_the_key(built: Any) -> None:
    _, _, objects = built
    secrets_ = {s["metadata"]["name"]: s.get("data", {}) for s in _find(objects, "Secret")}
    refs = list(_secret_refs(objects))
    assert refs
    for name, key, where in refs:
        assert name in secrets_, f"{where}: Secret {name} is not generated"
        assert key is None or key in secrets_[name], f"{where}: Secret {name} lacks key {key}"
    config_maps = {c["metadata"]["name"] for c in _find(objects, "ConfigMap")}
    for _, pod in _pod_specs(objects):
        for volume in pod["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_every_container_has_requests_and_limits(built: Any) -> None:
    _, _, objects = built
    for workload, pod in _pod_specs(objects):
        for container in _containers(pod):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (
                    f"{workload['metadata']['name']}/{container['name']}: {part}"
                )
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_detector_is_placed_on_a_gpu_and_stops_gracefully(built: Any) -> None:
    _, _, objects = built
    (detector,) = _find(objects, "Deployment", "tripwire-detector")
    pod = detector["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"tripwire.io/role": "gpu"}
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    stop_s = float(_env(container)["TRIPWIRE_STOP_TIMEOUT_S"]["value"])
    assert stop_s == 20
    assert pod["terminationGracePeriodSeconds"] > stop_s, "the kill must not cut the stop short"
    assert "preStop" in container["lifecycle"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the weights come from a volume the init container fills, never a download at start
    weights = _env(container)["TRIPWIRE_WEIGHTS"]["value"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(weights).parent) in mounts
    assert any(str(Path(weights).parent) in {m["mountPath"] for m in c["volumeMounts"]}
               for c in pod["initContainers"])  # fmt: skip
    assert "TRIPWIRE_ALLOW_DOWNLOAD" not in _env(container)


def test_edge_daemonset_keeps_camera_traffic_on_its_node(built: Any) -> None:
    _, _, objects = built
    (edge,) = _find(objects, "DaemonSet", "tripwire-edge")
    pod = edge["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"tripwire.io/role": "edge"}
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (service,) = _find(objects, "Service", "tripwire-edge")
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["internalTrafficPolicy"] == "Local"


def test_edge_serves_cameras_over_tls_and_keeps_metrics_and_docs_internal(built: Any) -> None:
    """The NodePort cameras reach carries only the gateway's TLS camera port; /metrics and
    /docs live on the internal port, which only a ClusterIP Service and Prometheus reach."""
    _, monitoring, objects = built
    (edge,) = _find(objects, "DaemonSet", "tripwire-edge")
    pod = edge["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {k: v.get("value") for k, v in _env(container).items()}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["TRIPWIRE_PORT"] == str(ports["https"])
    assert env["TRIPWIRE_INTERNAL_PORT"] == str(ports["internal"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    (secret,) = _find(objects, "Secret", tls["secret"]["secretName"])
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key"}
    assert env["TRIPWIRE_TLS_CERTFILE"] == f"{mounts['tls']}/tls.crt"
    assert env["TRIPWIRE_TLS_KEYFILE"] == f"{mounts['tls']}/tls.key"
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["port"], get["scheme"]) == ("internal", "HTTPS"), probe
    edge_pods = {"app.kubernetes.io/name": "tripwire-edge"}
    services = [s for s in _find(objects, "Service") if s["spec"]["selector"] == edge_pods]
    for service in services:
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        if service["spec"].get("type") == "NodePort":
            assert targets == {"https"}, service["metadata"]["name"]
        else:
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {p["targetPort"] for s in services for p in s["spec"]["ports"]} == {"https", "internal"}
    (open_to_all,) = _find(objects, "NetworkPolicy", "tripwire-edge-ingress")
    (rule,) = open_to_all["spec"]["ingress"]
    assert "from" not in rule and [p["port"] for p in rule["ports"]] == [ports["https"]]
    for monitor in _find(objects, "ServiceMonitor", "tripwire-edge"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["scheme"]) == ("internal", "https")
    if monitoring:
        (scrape,) = _find(objects, "NetworkPolicy", "prometheus-scrape")
        assert ports["internal"] in {
            p["port"] for r in scrape["spec"]["ingress"] for p in r["ports"]
        }


def test_containers_run_real_tripwire_commands_with_valid_settings(
    built: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tripwire.app.cli import build_parser
    from tripwire.settings import (
        ConsoleSettings,
        DetectorSettings,
        EventsSettings,
        GatewaySettings,
        MotionSettings,
    )
    from tripwire.wake.service import WakeSettings

    _, _, objects = built
    secrets_ = {s["metadata"]["name"]: s["data"] for s in _find(objects, "Secret")}
    checked = 0
    for _, pod in _pod_specs(objects):
        for container in pod["spec"]["containers"]:
            if not container["image"].startswith("tripwire-"):
                continue
            args = build_parser().parse_args(container["args"])
            settings_cls = {
                "gateway": GatewaySettings,
                "detector": DetectorSettings,
                "events": EventsSettings,
                "console": ConsoleSettings,
                "cluster": WakeSettings,
                "cameras": MotionSettings,
            }[args.command]
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                data = secrets_[source["secretRef"]["name"]]
                env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
            for name, item in _env(container).items():
                if "value" in item:
                    env[name] = item["value"]
                elif "fieldRef" in item["valueFrom"]:  # the downward API
                    path = item["valueFrom"]["fieldRef"]["fieldPath"]
                    assert path in {"metadata.namespace", "spec.nodeName"}, path
                    env[name] = NAMESPACE if path == "metadata.namespace" else "edge-node-1"
                else:
                    ref = item["valueFrom"]["secretKeyRef"]
                    env[name] = base64.b64decode(secrets_[ref["name"]][ref["key"]]).decode()
            for name in [n for n in os.environ if n.startswith("TRIPWIRE_")]:
                monkeypatch.delenv(name)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = settings_cls()  # the prod profile: placeholders would be refused here
            assert settings.profile == "prod"
            if not isinstance(settings, ConsoleSettings):  # the console reads the db only
                assert settings.broker.url
            if isinstance(settings, DetectorSettings | ConsoleSettings):
                assert settings.archive.backend == "s3"
            if isinstance(settings, EventsSettings | ConsoleSettings):
                assert (settings.events_db.url or "").startswith("postgresql://")
            checked += 1
    assert checked == 6


def _policies_for(objects: list[Obj], labels: dict[str, str]) -> list[Obj]:
    return [p for p in _find(objects, "NetworkPolicy")
            if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
            and not p["spec"]["podSelector"].get("matchExpressions")]  # fmt: skip


def test_minio_and_broker_admit_only_pipeline_pods(built: Any) -> None:
    overlay, _, objects = built
    assert any(p["spec"]["podSelector"] == {} for p in _find(objects, "NetworkPolicy"))
    for name in ("minio", overlay):
        (workload,) = _find(objects, "StatefulSet", name)
        assert workload["spec"]["volumeClaimTemplates"], f"{name}: data on a PVC"
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert "tripwire.io/pipeline" not in labels
        for policy in _policies_for(objects, labels):
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']}: open to everyone"
                for peer in rule["from"]:
                    pipeline = peer.get("podSelector", {}).get("matchLabels") == {
                        "tripwire.io/pipeline": "true"
                    }
                    keda = peer.get("namespaceSelector", {}).get("matchLabels") == {
                        "kubernetes.io/metadata.name": "keda"
                    }
                    assert (pipeline and "namespaceSelector" not in peer) or keda, peer
    for service in _find(objects, "Service"):
        if service["spec"]["selector"].get("app.kubernetes.io/name") in ("minio", overlay):
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


# --- what is committed -------------------------------------------------------------------------

CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://([^/\s:@<>$]+):([^/\s@]+)@")
# NAME_PASSWORD=..., NAME_SECRET_KEY: ... (env style), or a plain password:/token: key.
SECRET_ASSIGNMENT = re.compile(
    r"^\s*-?\s*([A-Z_][A-Z0-9_]*(?:PASS|PASSWORD|SECRET|SECRET_KEY|TOKEN)"
    r"|(?i:password|passwd|secret_key|token))\s*[=:]\s*([^\n]+)",
    re.MULTILINE,
)
DEFAULT_PASSWORDS = {"guest", "minioadmin", "changeme", "admin", "password", "secret"}


def _committed_files() -> list[Path]:
    """Files of deploy/ that git would commit (tracked or not ignored), plus the image files."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "deploy",
         ".dockerignore"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def test_no_plain_text_credential_in_committed_files() -> None:
    files = _committed_files()
    assert any(f.name.endswith(".env.example") for f in files)
    for path in files:
        text = path.read_text(errors="replace")
        where = path.relative_to(REPO)
        assert not path.name.endswith(".env"), f"{where}: a real env file would be committed"
        for match in CREDENTIAL_URL.finditer(text):
            password = match.group(2)
            metavariable = re.fullmatch(r"[A-Z_]*(PASS|SECRET)[A-Z_]*", password)  # docs
            assert PLACEHOLDER.fullmatch(password) or password.startswith("$") or metavariable, (
                f"{where}: credentials in a URL"
            )
        for match in SECRET_ASSIGNMENT.finditer(text):
            value = match.group(2).strip("\"'")
            assert (
                PLACEHOLDER.match(value) or value.startswith(("$", "{{", '"{{')) or value == "|"
            ), f"{where}: {match.group(1)} has a literal value"
        for word in DEFAULT_PASSWORDS:
            assert not re.search(rf"(PASS|PASSWORD|SECRET)\w*\s*[=:]\s*{word}\b", text, re.I), where


def test_real_secret_files_are_git_ignored() -> None:
    examples = list(K3S.rglob("*.example"))
    assert examples
    real = [str(p.with_suffix("").relative_to(REPO)) for p in examples]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *real], cwd=REPO, capture_output=True, text=True
    )
    ignored = set(result.stdout.split())
    assert ignored == set(real), f"not ignored by .gitignore: {sorted(set(real) - ignored)}"


def test_events_database_admits_only_the_events_function_and_console(built: Any) -> None:
    _, _, objects = built
    (policy,) = _find(objects, "NetworkPolicy", "postgres-from-events")
    [rule] = policy["spec"]["ingress"]
    allowed = rule["from"][0]["podSelector"]["matchLabels"]
    labelled = sorted(
        w["metadata"]["name"]
        for w, pod in _pod_specs(objects)
        if allowed.items() <= pod["metadata"]["labels"].items()
    )
    assert labelled == ["tripwire-console", "tripwire-events"]
    for name in ("tripwire-console", "tripwire-events"):
        (deployment,) = _find(objects, "Deployment", name)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        sources = {s["secretRef"]["name"] for s in container.get("envFrom", [])}
        assert "tripwire-events-db" in sources
