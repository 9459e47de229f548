"""deploy/k3s/bootstrap: the playbook parses, lints, and keeps its promises about tokens.

``ansible-playbook --syntax-check`` and ``ansible-lint`` run when installed (the deploy extra:
ansible-core, ansible-lint) and skip with the reason otherwise. No machine is contacted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "deploy" / "k3s" / "bootstrap"
PLAYBOOK = BOOTSTRAP / "site.yml"
INVENTORY = BOOTSTRAP / "inventory.example.ini"
CRD_SOURCE = REPO.parent / "shared" / "schemas" / "keda" / "SOURCE.txt"
KUBERNETES = "1.32.0"


def _tasks(node: Any) -> list[dict[str, Any]]:
    """Every task of a play list, blocks and always sections flattened."""
    found: list[dict[str, Any]] = []
    for item in node:
        for key in ("tasks", "block", "always", "rescue"):
            if key in item:
                found += _tasks(item[key])
        if "name" in item and not {"hosts", "block"} & set(item):
            found.append(item)
    return found


PLAY = yaml.safe_load(PLAYBOOK.read_text())
TASKS = _tasks(PLAY) + _tasks(yaml.safe_load((BOOTSTRAP / "secrets.yml").read_text()))
VARS = yaml.safe_load((BOOTSTRAP / "group_vars" / "all.yml").read_text())


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (pip install ansible-core ansible-lint)")
    return subprocess.run(
        [path, *args], cwd=BOOTSTRAP, capture_output=True, text=True, timeout=300,
        env={"ANSIBLE_NOCOLOR": "1", "PATH": str(Path(path).parent) + ":/usr/bin:/bin",
             "HOME": str(Path.home()), "ANSIBLE_LOCAL_TEMP": "/tmp/ansible-local"},
    )  # fmt: skip


def test_playbook_syntax_check() -> None:
    result = _run("ansible-playbook", "-i", str(INVENTORY), "--syntax-check", str(PLAYBOOK))
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr


def test_ansible_lint() -> None:
    result = _run("ansible-lint", "--offline", "--nocolor", str(PLAYBOOK))
    print(result.stdout[-2000:], result.stderr[-2000:])
    assert result.returncode == 0, result.stdout + result.stderr


def test_versions_are_pinned_and_match_the_schemas_the_tests_use() -> None:
    assert re.fullmatch(r"v\d+\.\d+\.\d+\+k3s\d+", VARS["k3s_version"])
    k3s_minor = VARS["k3s_version"][1:].split(".")[:2]
    assert k3s_minor == KUBERNETES.split(".")[:2], "tests validate against the installed version"
    assert re.fullmatch(r"\d+\.\d+\.\d+", VARS["keda_version"])
    if CRD_SOURCE.is_file():
        match = re.search(r"v(\d+\.\d+)", CRD_SOURCE.read_text())
        assert match and VARS["keda_version"].startswith(match.group(1) + ".")
    assert re.fullmatch(r"v\d+\.\d+\.\d+", VARS["nvidia_device_plugin_version"])
    plugin = (BOOTSTRAP / "files" / "nvidia-device-plugin.yaml").read_text()
    assert f"k8s-device-plugin:{VARS['nvidia_device_plugin_version']}" in plugin


def test_join_tokens_are_short_lived_deleted_and_never_logged() -> None:
    assert VARS["k3s_join_token_ttl"] in {"1m", "60s", "2m"}
    create = [t for t in TASKS if "k3s token create" in str(t.get("ansible.builtin.command"))]
    delete = [t for t in TASKS if "k3s token delete" in str(t.get("ansible.builtin.command"))]
    assert len(create) == 1 and len(delete) == 1
    assert "--ttl {{ k3s_join_token_ttl }}" in create[0]["ansible.builtin.command"]
    join_play = next(p for p in PLAY if "k3s_agents" in str(p["hosts"]))
    assert join_play["serial"] == 1, "one token per join, one join at a time"
    (block,) = [t for t in join_play["tasks"] if "block" in t]
    assert delete[0] in block["always"], "the token is deleted even when the join fails"
    for task in TASKS:
        if "token" in str(task.get("environment", "")) or "token" in task["name"].lower():
            assert task.get("no_log") is True, task["name"]
    text = PLAYBOOK.read_text()
    assert "node-token" not in text, "the server's long-lived token is never read"


def test_gpu_nodes_get_the_toolkit_before_k3s_and_labels_match_the_manifests() -> None:
    names = [p["name"] for p in PLAY]
    toolkit = next(i for i, p in enumerate(PLAY) if p["hosts"] == "gpu")
    join = next(i for i, p in enumerate(PLAY) if "k3s_agents" in str(p["hosts"]))
    assert toolkit < join, names
    text = PLAYBOOK.read_text()
    for label in ("tripwire.io/role={{ role_label }}", "'gpu' if", "else 'edge'"):
        assert label in text
    deployment = (REPO / "deploy/k3s/base/detector/deployment.yaml").read_text()
    daemonset = (REPO / "deploy/k3s/base/edge/daemonset.yaml").read_text()
    assert "tripwire.io/role: gpu" in deployment and "tripwire.io/role: edge" in daemonset


@pytest.mark.parametrize("name", ["nvidia-runtimeclass.yaml", "nvidia-device-plugin.yaml"])
def test_bootstrap_manifests_validate(name: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="deploy extra")
    for doc in yaml.safe_load_all((BOOTSTRAP / "files" / name).read_text()):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_inventory_example_holds_no_secret() -> None:
    text = INVENTORY.read_text()
    assert not re.search(r"(password|token|become_pass|ansible_ssh_pass)\s*=", text, re.I)
    assert re.search(r"192\.0\.2\.", text), "documentation addresses only (RFC 5737)"
