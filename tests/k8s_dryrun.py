"""Server-side dry runs (``kubectl apply --dry-run=server``) of built manifests on the 1.20 test
plane, one object at a time, each with one of four results:

- ``ok``: kubectl's validation against the server's schema and the server's own checks pass;
- ``ok, fields newer than 1.20``: kubectl refuses fields the 1.20 schema lacks (named in
  ``detail``); the object without them (and without what they leave empty: a preStop hook
  whose only handler is the 1.29+ ``sleep``) is accepted by the server. Those fields are
  checked by the 1.32 schemas of tests/deploy/test_k3s_manifests.py (the bootstrap installs 1.32);
- ``not served``: the 1.20 server has no such API version or kind (policy/v1, autoscaling/v2,
  a CRD that is not installed): these objects stay on tests/deploy/test_k3s_manifests.py's schemas;
- ``refused``: the server (or kubectl on a field it knows) rejects the object: a defect.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_cluster import Plane

OK, NEWER, UNSERVED, REFUSED = "ok", "ok, fields newer than 1.20", "not served", "refused"
UNKNOWN_FIELD = re.compile(r'ValidationError\(([^)]*)\): unknown field "([^"]+)"')


@dataclass(frozen=True)
class DryRun:
    kind: str
    name: str
    api_version: str
    result: str
    detail: str = ""


def served_kinds(plane: Plane, api_versions: set[str]) -> set[tuple[str, str]]:
    """(apiVersion, kind) pairs the server serves, from its discovery documents."""
    served: set[tuple[str, str]] = set()
    for version in sorted(api_versions):
        path = f"/api/{version}" if "/" not in version else f"/apis/{version}"
        got = plane.kubectl("get", "--raw", path)
        if got.returncode != 0:  # 404: the group/version is not served at all
            continue
        for resource in json.loads(got.stdout)["resources"]:
            served.add((version, resource["kind"]))
    return served


def dry_run(plane: Plane, objects: list[dict[str, Any]]) -> list[DryRun]:
    served = served_kinds(plane, {o["apiVersion"] for o in objects})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, obj in enumerate(objects):
            kind, name, version = obj["kind"], obj["metadata"]["name"], obj["apiVersion"]
            if (version, kind) not in served:
                results.append(DryRun(kind, name, version, UNSERVED))
                continue
            path = Path(tmp) / f"{i}.yaml"
            path.write_text(yaml.safe_dump(obj))
            strict = plane.kubectl("apply", "--dry-run=server", "-f", str(path))
            if strict.returncode == 0:
                results.append(DryRun(kind, name, version, OK))
                continue
            unknown = UNKNOWN_FIELD.findall(strict.stderr)
            if not unknown:
                results.append(DryRun(kind, name, version, REFUSED, _last_line(strict.stderr)))
                continue
            for where, field in unknown:
                _drop(obj, where, field)
            path.write_text(yaml.safe_dump(obj))
            loose = plane.kubectl("apply", "--dry-run=server", "-f", str(path))
            fields = ", ".join(f"{where}.{field}" for where, field in unknown)
            if loose.returncode == 0:
                results.append(DryRun(kind, name, version, NEWER, fields))
            else:
                results.append(DryRun(kind, name, version, REFUSED, _last_line(loose.stderr)))
    return results


def _drop(obj: dict[str, Any], where: str, field: str) -> None:
    """Remove ``field`` at kubectl's path ``Kind.a.b[0].c``, then the mappings it leaves empty."""
    trail: list[tuple[Any, str | int]] = []
    node: Any = obj
    for part in where.split(".")[1:]:
        name, _, index = part.partition("[")
        trail.append((node, name))
        node = node[name]
        if index:
            trail.append((node, int(index.rstrip("]"))))
            node = node[int(index.rstrip("]"))]
    node.pop(field, None)
    for parent, key in reversed(trail):
        if parent[key] in ({}, []):
            del parent[key]


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "version skew" not in line.lower()]
    return lines[-1] if lines else stderr


def table(results: list[DryRun]) -> str:
    """Counts per kind and result, then the detail of every object that was not plain ok."""
    counts = Counter((r.kind, r.api_version, r.result) for r in results)
    lines = [f"  {'kind':24} {'apiVersion':30} {'result':28} n"]
    for (kind, version, result), n in sorted(counts.items()):
        lines.append(f"  {kind:24} {version:30} {result:28} {n}")
    for r in results:
        if r.detail:
            lines.append(f"    {r.kind}/{r.name}: {r.detail}")
    return "\n".join(lines)
