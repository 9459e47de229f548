"""deploy/k3s/images: what each Dockerfile copies exists, what it runs is a real command.

No Docker engine is needed: the Dockerfiles are parsed (line continuations, ARG defaults in
FROM) and checked against the repository, .dockerignore and the CLI's own parser.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

from tripwire.app.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "deploy" / "k3s" / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
EXPECTED = {"edge.Dockerfile": "gateway", "detector.Dockerfile": "detector"}

Instruction = tuple[str, str]


def _instructions(path: Path) -> list[Instruction]:
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _stages(path: Path) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for keyword, rest in _instructions(path):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _global_args(path: Path) -> dict[str, str]:
    args = {}
    for keyword, rest in _instructions(path):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def _exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"exec form expected: {rest}"
    return [str(v) for v in value]


def test_both_images_exist() -> None:
    assert sorted(p.name for p in DOCKERFILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_and_multi_stage(path: Path) -> None:
    args = _global_args(path)
    stages = _stages(path)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    for stage in stages:
        image = shlex.split(stage[0][1])[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: a tag is pinned"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{image}: a versioned tag"


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(relative, bare) or relative.startswith(bare + "/"):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_exists_and_is_in_the_context(path: Path) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = 0
    for keyword, rest in _instructions(path):
        if keyword not in {"COPY", "ADD"}:
            continue
        assert keyword == "COPY", "ADD fetches URLs and unpacks archives: COPY only"
        words = shlex.split(rest)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"{path.name}: COPY {source}: missing"
            assert not _ignored(source, patterns), f"{path.name}: {source} is .dockerignored"
            copied += 1
    assert copied


def test_dockerignore_keeps_secrets_and_weights_out() -> None:
    patterns = (REPO / ".dockerignore").read_text().splitlines()
    for path in ("deploy/k3s/base/secrets/archive.env", ".venv", ".tripwire", "yolo11n.pt",
                 "tests/app/test_cli.py", ".git"):  # fmt: skip
        assert _ignored(path, [p for p in patterns if p and not p.startswith("#")]), path


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_is_non_root_with_a_healthcheck_and_a_real_command(path: Path) -> None:
    final = _stages(path)[-1]
    keywords = [k for k, _ in final]
    users = [rest for k, rest in final if k == "USER"]
    assert users, "USER is set"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, "non-root"
    assert user.isdigit(), "numeric uid, so runAsNonRoot can verify it"
    assert "HEALTHCHECK" in keywords
    (entrypoint,) = [_exec_form(r) for k, r in final if k == "ENTRYPOINT"]
    (cmd,) = [_exec_form(r) for k, r in final if k == "CMD"]
    assert entrypoint == ["tripwire"]
    args = build_parser().parse_args(cmd)  # SystemExit on an unknown command
    assert args.command == EXPECTED[path.name]
    healthcheck = next(r for k, r in final if k == "HEALTHCHECK")
    assert "/healthz" in healthcheck


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_no_secret_is_baked_in(path: Path) -> None:
    for keyword, rest in _instructions(path):
        if keyword in {"ENV", "ARG"}:
            for name in re.findall(r"(\w+)=", rest):
                assert not re.search(r"PASS|SECRET|TOKEN|ACCESS_KEY|BROKER__URL", name), name


def test_edge_image_has_no_torch_and_detector_has_ultralytics() -> None:
    edge = " ".join(f"{k} {r}" for k, r in _instructions(IMAGES / "edge.Dockerfile"))
    detector = " ".join(f"{k} {r}" for k, r in _instructions(IMAGES / "detector.Dockerfile"))
    assert "[detector]" not in edge and "torch" not in edge.lower()
    assert re.search(r"FROM \$\{PYTHON_IMAGE\}", edge) and "slim" in edge
    assert "[detector]" in detector and "opencv-python-headless" in detector
    assert "pytorch/pytorch:" in detector and "cuda" in detector
