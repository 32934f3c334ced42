"""A small kustomize renderer for the features ops/k8s uses, so that the manifests are checked without kubectl.

Supported: ``resources`` (files and folders holding a kustomization), ``namespace``, ``images`` (newName, newTag),
``replicas`` and ``patches`` given by ``path`` (strategic merge: maps merge, lists of containers, env, volumes,
volume mounts and ports merge by their key, other lists are replaced). Anything else in a kustomization is refused
with its name, so that the renderer never silently differs from kustomize; when kubectl or kustomize is installed,
tests/deploy/test_k8s.py also compares this output with theirs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet"}


class KustomizeError(ValueError):
    pass


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(folder: Path) -> list[dict[str, Any]]:
    """The resources that ``kustomize build folder`` outputs (same content; order not guaranteed)."""
    file = folder / "kustomization.yaml"
    if not file.is_file():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    spec = yaml.safe_load(file.read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{file}: fields this renderer does not support: {', '.join(sorted(unknown))}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = folder / entry
        if target.is_dir():
            resources += build(target)
        elif target.is_file():
            resources += load_documents(target)
        else:
            raise KustomizeError(f"{file}: resource {entry!r} does not exist")
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{file}: only patches given by path are supported, not {patch}")
        for doc in load_documents(folder / patch["path"]):
            apply_patch(resources, doc, file)
    for item in spec.get("replicas", []):
        find(resources, None, item["name"], file)["spec"]["replicas"] = item["count"]
    for image in spec.get("images", []):
        set_image(resources, image)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return resources


def find(resources: list[dict[str, Any]], kind: str | None, name: str, where: Path) -> dict[str, Any]:
    """The resource of ``kind`` named ``name``; ``kind`` None: the workload (Deployment, StatefulSet) of that name."""
    kinds = {kind} if kind else WORKLOADS
    matches = [r for r in resources if r["kind"] in kinds and r["metadata"]["name"] == name]
    if len(matches) != 1:
        raise KustomizeError(f"{where}: {kind or 'workload'} {name!r} matches {len(matches)} resources")
    return matches[0]


def apply_patch(resources: list[dict[str, Any]], patch: dict[str, Any], where: Path) -> None:
    target = find(resources, patch["kind"], patch["metadata"]["name"], where)
    merged = merge(target, patch)
    target.clear()
    target.update(merged)


def merge(base: Any, patch: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        field = MERGE_KEYS[key]  # kustomize's order: the patch's items first (merged), then the others
        merged = [merge(next((b for b in base if b.get(field) == item.get(field)), {}), item, "") for item in patch]
        named = {item.get(field) for item in patch}
        return merged + [copy.deepcopy(b) for b in base if b.get(field) not in named]
    return copy.deepcopy(patch)


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container and init container of a workload (empty for other kinds)."""
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def set_image(resources: list[dict[str, Any]], image: dict[str, Any]) -> None:
    for resource in resources:
        for container in containers(resource):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
