"""ops/k8s: the base and every overlay, rendered, validate against the Kubernetes JSON schemas that
kubernetes-validate ships (strict: no unknown field), and what they name exists in the project. No cluster needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import kustomize_lite
from tests.deploy.references import (
    REPO,
    check_environment,
    check_our_image,
    listening_ports,
    orderflow_command,
)
from topics import catalog

pytestmark = pytest.mark.unit

K8S = REPO / "ops" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are meant for (autoscaling/v2, policy/v1)
BUILDS = ["base", "overlays/dev", "overlays/prod"]
HEALTH_COMMANDS = {"worker", "sink", "ingest"}  # the services with a /health endpoint


def render(build: str) -> list[dict[str, Any]]:
    return kustomize_lite.build(K8S / build)


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in kustomize_lite.WORKLOADS]


def container_env(container: dict[str, Any], config: dict[str, str]) -> dict[str, str]:
    env = dict(config) if any("configMapRef" in e for e in container.get("envFrom", [])) else {}
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "from-a-secret")
    return env


def test_overlays_exist() -> None:
    assert sorted(p.name for p in (K8S / "overlays").iterdir()) == ["dev", "prod"]


@pytest.mark.parametrize("build", BUILDS)
def test_every_resource_validates_against_the_kubernetes_schema(build: str) -> None:
    resources = render(build)

    assert len(resources) >= 11
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_a_misplaced_field() -> None:
    worker = copy_of(by_kind(render("base"), "StatefulSet")["orderflow-worker"])
    worker["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health"}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def copy_of(resource: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(resource))


@pytest.mark.parametrize("build", BUILDS)
def test_containers_run_orderflow_commands_on_the_ports_they_declare(build: str) -> None:
    resources = render(build)
    config = by_kind(resources, "ConfigMap")["orderflow-config"]["data"]
    seen = set()
    for workload in workloads(resources):
        for container in kustomize_lite.containers(workload):
            where = f"{build}: {workload['metadata']['name']}/{container['name']}"
            check_our_image(container["image"], where)
            env = container_env(container, config)
            check_environment(env, where)
            command = orderflow_command(container["command"], where)
            assert command is not None, f"{where}: {container['command']} is not an orderflow command"
            seen.add(command.args.command)
            declared = {p["containerPort"] for p in container.get("ports", [])}
            assert command.exposed == listening_ports(command, env) == declared, f"{where}: ports differ"
    assert {"worker", "sink", "ingest", "simulate", "stack", "db"} <= seen


@pytest.mark.parametrize("build", BUILDS)
def test_probes_resources_and_security(build: str) -> None:
    for workload in workloads(render(build)):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in kustomize_lite.containers(workload):
            where = f"{build}: {workload['metadata']['name']}/{container['name']}"
            assert {"requests", "limits"} <= set(container["resources"]), f"{where}: requests and limits"
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), f"{where}: cpu and memory limits"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for container in pod["containers"]:
            where = f"{build}: {workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container, f"{where}: no readiness probe"
            command = orderflow_command(container["command"], where)
            assert command is not None
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                check = probe.get("httpGet") or probe["tcpSocket"]
                assert check["port"] in ports, f"{where}: {kind} on an undeclared port {check['port']}"
                if command.args.command in HEALTH_COMMANDS:
                    assert probe["httpGet"]["path"] == "/health", f"{where}: {kind} does not read /health"


@pytest.mark.parametrize("build", BUILDS)
def test_workers_keep_rocksdb_on_volumes_with_a_disruption_budget_and_an_autoscaler(build: str) -> None:
    resources = render(build)
    worker = by_kind(resources, "StatefulSet")["orderflow-worker"]
    pdb = by_kind(resources, "PodDisruptionBudget")["orderflow-worker"]
    hpa = by_kind(resources, "HorizontalPodAutoscaler")["orderflow-worker"]
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    mounts = {m["name"]: m["mountPath"] for m in worker["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    claims = [c["metadata"]["name"] for c in worker["spec"]["volumeClaimTemplates"]]

    assert mounts[claims[0]] == "/var/lib/orderflow"  # ORDERFLOW_HOME of the image: RocksDB lives below it
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                            "name": "orderflow-worker"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= catalog.MBO_FRAMES.partitions
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


@pytest.mark.parametrize("build", BUILDS)
def test_services_select_pods_and_reach_declared_ports(build: str) -> None:
    resources = render(build)
    pods = {w["metadata"]["name"]: w["spec"]["template"] for w in workloads(resources)}
    for name, service in by_kind(resources, "Service").items():
        matching = [p for p in pods.values() if service["spec"]["selector"].items() <= p["metadata"]["labels"].items()]
        assert len(matching) == 1, f"{build}: service {name} selects {len(matching)} workloads"
        names = {p["name"] for c in matching[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, f"{build}: service {name} targets unknown port {port['targetPort']}"


def test_dev_provides_the_database_secret_and_prod_leaves_it_to_the_operator() -> None:
    dev, prod = render("overlays/dev"), render("overlays/prod")

    assert "orderflow-db" in by_kind(dev, "Secret")
    assert by_kind(prod, "Secret") == {}
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for w in workloads(dev) for c in kustomize_lite.containers(w)
            for e in c.get("env", []) if "valueFrom" in e}
    assert refs == {"orderflow-db"}


@pytest.mark.parametrize("build", BUILDS)
def test_the_built_in_renderer_matches_kustomize_when_installed(build: str, tmp_path: Path) -> None:
    tool = shutil.which("kustomize") or shutil.which("kubectl")
    if tool is None:
        pytest.skip("neither kustomize nor kubectl is installed; the manifests were checked with the built-in renderer")
    argv = [tool, "build"] if tool.endswith("kustomize") else [tool, "kustomize"]

    out = subprocess.run([*argv, str(K8S / build)], capture_output=True, text=True, timeout=60, check=True).stdout

    theirs = [doc for doc in yaml.safe_load_all(out) if doc]

    def key(resource: dict[str, Any]) -> tuple[str, str]:
        return resource["kind"], resource["metadata"]["name"]

    assert sorted(render(build), key=key) == sorted(theirs, key=key)
