"""docker/compose.yaml: valid against the compose-spec JSON schema (the copy check-jsonschema ships), and every
image, command, port, variable and file it names exists in the project. No Docker engine needed."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from ops.stack.kafka import server_properties
from ops.stack.layout import Layout
from tests.deploy.references import (
    REPO,
    check_environment,
    check_our_image,
    check_pinned,
    is_our_image,
    listening_ports,
    orderflow_command,
)
from topics import settings

pytestmark = pytest.mark.unit

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
SHARED = REPO.parent / "shared"


def compose_schema() -> dict[str, Any]:
    dist = importlib.metadata.distribution("check-jsonschema")
    path = Path(str(dist.locate_file("check_jsonschema/builtin_schemas/vendor/compose-spec.json")))
    return json.loads(path.read_text())


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(compose_schema())  # its $schema names draft-07 (without the "#")
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def our_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if is_our_image(svc["image"])}


def test_compose_file_is_valid_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_the_schema_check_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["sink"]["healthchek"] = broken["services"]["sink"].pop("healthcheck")

    errors = schema_errors(broken)

    assert any("healthchek" in e for e in errors), errors


def test_profiles_dev_obs_demo_and_demo_starts_everything_it_depends_on(compose: dict[str, Any]) -> None:
    services = compose["services"]
    profiles = {name: set(svc.get("profiles", [])) for name, svc in services.items()}

    assert {"kafka", "timescaledb"} <= {n for n, p in profiles.items() if "dev" in p}
    assert {"prometheus", "grafana"} <= {n for n, p in profiles.items() if "obs" in p}
    assert all("demo" in p for p in profiles.values()), "demo is the whole system"
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert profiles[dep] >= profiles[name] & {"demo"}, f"{name} needs {dep} in the demo profile"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"


def test_our_services_use_the_image_the_dockerfile_builds(compose: dict[str, Any]) -> None:
    for name, svc in our_services(compose).items():
        check_our_image(svc["image"], f"service {name}")
        context = (DOCKER / svc["build"]["context"]).resolve()
        assert context == REPO, f"service {name}: build context {context} is not the repository root"
        assert (context / svc["build"]["dockerfile"]).is_file(), f"service {name}: no {svc['build']['dockerfile']}"


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    others = {n: s["image"] for n, s in compose["services"].items() if not is_our_image(s["image"])}

    assert {"kafka", "timescaledb", "prometheus", "grafana"} <= set(others)
    assert others["kafka"].startswith("apache/kafka:") and others["timescaledb"].startswith("timescale/timescaledb:")
    for name, image in others.items():
        check_pinned(image, f"service {name}")


def test_commands_parse_and_the_launcher_publishes_exactly_the_ports_they_serve(compose: dict[str, Any]) -> None:
    commands = 0
    for name, svc in our_services(compose).items():
        env = {k: str(v) for k, v in svc.get("environment", {}).items()}
        command = orderflow_command(svc["command"], f"service {name}")
        assert command is not None, f"service {name}: {svc['command']} is not an orderflow command"
        commands += 1
        assert command.exposed == listening_ports(command, env), f"service {name}: launcher ports differ"
        published = {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])}
        assert published <= command.exposed, f"service {name}: publishes ports it does not serve"
        probe = svc.get("healthcheck", {}).get("test")
        assert bool(probe) == bool(command.exposed), f"service {name}: a server needs a health check, a job none"
        if probe:
            url = urlsplit(probe[-1])
            assert probe[:4] == ["CMD", "python", "/opt/orderflow/expose.py", "--probe"], f"service {name}: {probe}"
            assert url.port in command.exposed, f"service {name}: health check on {url.port}, not a served port"
            if command.args.command in ("worker", "sink", "ingest"):
                assert url.path == "/health", f"service {name}: probes {url.path}, not /health"
    assert commands >= 7


def test_orderflow_variables_are_settings_and_load(compose: dict[str, Any]) -> None:
    for name, svc in our_services(compose).items():
        check_environment({k: str(v) for k, v in svc.get("environment", {}).items()}, f"service {name}")


def test_other_images_use_orderflow_variables_only_through_their_mounted_files(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if is_our_image(svc["image"]):
            continue
        mounted = "".join(f.read_text() for v in svc.get("volumes", []) if (DOCKER / v.split(":")[0]).exists()
                          for f in sorted(_files(DOCKER / v.split(":")[0])))
        for var in svc.get("environment", {}):
            if var.startswith("ORDERFLOW_"):
                assert "${" + var + "}" in mounted, f"service {name}: {var} is used by none of its mounted files"


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml")]


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"service {name}: undeclared volume {source}"
                continue
            path = (DOCKER / source).resolve()
            if path.is_relative_to(REPO):
                assert path.exists(), f"service {name}: mounts {source}, which does not exist"
            else:
                assert path.is_relative_to(SHARED / "data"), f"service {name}: mounts {path} outside the project"
                if SHARED.is_dir():
                    assert path.is_dir(), f"service {name}: mounts {path}, which does not exist"


def test_services_point_at_the_compose_kafka_and_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = services["kafka"]["environment"]
    advertised = re.findall(r"//([^,]+)", kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    db = services["timescaledb"]["environment"]
    for name, svc in our_services(compose).items():
        env = svc["environment"]
        assert env["ORDERFLOW_KAFKA_BOOTSTRAP"] in advertised, f"service {name}: bootstrap is no Kafka listener"
        assert (env["ORDERFLOW_PG_HOST"], env["ORDERFLOW_PG_PORT"]) == ("timescaledb", "5432")
        assert (env["ORDERFLOW_PG_DATABASE"], env["ORDERFLOW_PG_USER"], env["ORDERFLOW_PG_PASSWORD"]) == (
            db["POSTGRES_DB"], db["POSTGRES_USER"], db["POSTGRES_PASSWORD"])


def test_compose_prometheus_scrapes_the_ports_the_services_serve(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    served = {}
    for name, svc in our_services(compose).items():
        command = orderflow_command(svc["command"], name)
        assert command is not None
        served[name] = command.exposed
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    local = yaml.safe_load((REPO / "ops" / "prometheus" / "prometheus.yml").read_text())

    assert set(jobs) == {job["job_name"] for job in local["scrape_configs"]}, "same jobs as ops/prometheus"
    for job_name, job in jobs.items():
        if job_name == "prometheus":
            continue
        for target in job["static_configs"][0]["targets"]:
            host, port = target.rsplit(":", 1)
            assert int(port) in served.get(host, set()), f"{job_name}: {target} is served by no compose service"


def test_compose_kafka_runs_with_the_local_stack_broker_settings(compose: dict[str, Any]) -> None:
    conf = settings.load({})
    local = dict(line.split("=", 1) for line in server_properties(conf, Layout.of(conf)).splitlines()
                 if "=" in line and not line.startswith("#"))
    env = compose["services"]["kafka"]["environment"]
    props = {key[len("KAFKA_"):].lower().replace("_", "."): str(value) for key, value in env.items()
             if key.startswith("KAFKA_") and key != "KAFKA_HEAP_OPTS"}
    listeners = {"listeners", "advertised.listeners", "controller.quorum.voters", "listener.security.protocol.map",
                 "inter.broker.listener.name", "node.id"}

    shared = {key: local[key] for key in props if key in local and key not in listeners}

    assert {"message.max.bytes", "replica.fetch.max.bytes", "auto.create.topics.enable"} <= set(shared)
    assert {key: props[key] for key in shared} == shared
    assert props["process.roles"] == "broker,controller"  # KRaft, one node
