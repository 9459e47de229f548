"""`tripwire up` installed from a wheel finds its default ScaledObject.

The policies KEDA applies live in deploy/keda/; a wheel has no deploy/ folder, so the package
carries copies (tripwire/scaler/keda/, package data). One test keeps the copies equal to
deploy/keda; the other builds a real wheel from this checkout's files and imports tripwire
from it, away from the checkout, to see that the packaged files are what ``policy_file``
resolves and that they load.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tripwire.scaler.policy import PACKAGED, policy_file

REPO = Path(__file__).resolve().parents[2]
BROKERS = ["nats", "rabbitmq"]


@pytest.mark.parametrize("broker", BROKERS)
def test_packaged_policies_equal_deploy_keda(broker: str) -> None:
    deployed = REPO / "deploy" / "keda" / broker / "scaledobject.yaml"
    packaged = PACKAGED / broker / "scaledobject.yaml"
    assert packaged.read_bytes() == deployed.read_bytes(), (
        f"copy the policy: cp {deployed.relative_to(REPO)} {packaged.relative_to(REPO)}"
    )
    assert policy_file(broker) == packaged  # type: ignore[arg-type]  # a checkout too


def test_a_wheel_resolves_its_packaged_policies(tmp_path: Path) -> None:
    source = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = subprocess.run(
        [*pip, "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("tripwire-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for broker in BROKERS:
        assert f"tripwire/scaler/keda/{broker}/scaledobject.yaml" in names
    assert not any(n.startswith("deploy/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    check = (
        "import tripwire, tripwire.scaler as s\n"
        "print(tripwire.__file__)\n"
        "for b in ('nats', 'rabbitmq'):\n"
        "    p = s.policy_file(b); s.load_policy(p); print(p)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,  # not the checkout: nothing of it on sys.path
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    module, *policies = run.stdout.split()
    assert module.startswith(str(site))
    for broker, path in zip(BROKERS, policies, strict=True):
        assert path == str(site / "tripwire" / "scaler" / "keda" / broker / "scaledobject.yaml")
