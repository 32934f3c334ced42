"""Supply chain: the lock file pins everything pyproject.toml asks for, pip-audit's ignore file needs reasons, the
audit reports plainly when no vulnerability service answers, the SBOM lists the lock file, dependabot is set up."""

from __future__ import annotations

import importlib.metadata
import json
import re
import socket
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ops import supply_chain
from tests.deploy.references import REPO

LOCK = REPO / "constraints.txt"


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closed_port_url(path: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"  # nothing listens there once the socket is closed: refused


def vendored_schema(name: str) -> dict[str, Any]:
    dist = importlib.metadata.distribution("check-jsonschema")
    path = Path(str(dist.locate_file(f"check_jsonschema/builtin_schemas/vendor/{name}.json")))
    return dict(json.loads(path.read_text()))


@pytest.mark.unit
def test_the_lock_file_pins_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = {normal(name) for name, _ in supply_chain.read_pins(LOCK)}

    missing = [d for d in wanted if normal(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) not in pins]

    assert missing == []
    assert {"pip-audit", "cyclonedx-bom"} <= pins


@pytest.mark.unit
def test_an_ignored_vulnerability_needs_a_reason(tmp_path: Path) -> None:
    ignore = tmp_path / "ignore.txt"
    ignore.write_text("# comment\nPYSEC-2024-1  fixed upstream, not reachable from orderflow\n\nGHSA-xxxx-yyyy\n")

    with pytest.raises(supply_chain.SupplyChainError, match=r"ignore.txt:4: GHSA-xxxx-yyyy is ignored without a"):
        supply_chain.read_ignores(ignore)


@pytest.mark.unit
def test_the_committed_ignore_file_parses_and_becomes_ignore_flags() -> None:
    ignores = supply_chain.read_ignores(supply_chain.IGNORE_FILE)
    ignores.append(supply_chain.Ignored("PYSEC-2024-1", "example"))

    argv = supply_chain.audit_command("pypi", LOCK, ignores)

    assert argv[argv.index("--ignore-vuln") + 1] == "PYSEC-2024-1"
    assert {"--no-deps", "--disable-pip", "--strict"} <= set(argv)
    assert all(item.reason for item in ignores)


@pytest.mark.unit
def test_audit_without_a_vulnerability_service_says_so_and_fails_only_when_required(
        capsys: pytest.CaptureFixture[str]) -> None:
    pypi, osv = closed_port_url("/pypi/{name}/{version}/json"), closed_port_url("/v1/query")

    lenient = supply_chain.audit(LOCK, supply_chain.IGNORE_FILE, False, pypi, osv)
    strict = supply_chain.audit(LOCK, supply_chain.IGNORE_FILE, True, pypi, osv)

    assert (lenient, strict) == (0, 1)
    assert "pip-audit: SKIPPED: no vulnerability service answers" in capsys.readouterr().err


@pytest.mark.integration
def test_audit_fails_on_a_known_vulnerable_pin(tmp_path: Path) -> None:
    pin = ("urllib3", "1.26.4")  # CVE-2021-33503 and later advisories
    if supply_chain.reachable_service(pin) is None:
        pytest.skip("neither PyPI's per-release JSON API nor OSV answers from this machine")
    lock = tmp_path / "constraints.txt"
    lock.write_text("urllib3==1.26.4\n")

    assert supply_chain.audit(lock, supply_chain.IGNORE_FILE, True) == 1


@pytest.mark.integration
def test_sbom_lists_every_pinned_package(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"

    code = supply_chain.sbom(LOCK, out)

    doc = json.loads(out.read_text())
    assert code == 0
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["metadata"]["component"]["name"] == "orderflow"
    listed = {(normal(c["name"]), c["version"]) for c in doc["components"]}
    assert listed == {(normal(name), version) for name, version in supply_chain.read_pins(LOCK)}


@pytest.mark.unit
def test_sbom_goes_to_an_ignored_artifact_folder() -> None:
    assert "artifacts/" in (REPO / ".gitignore").read_text().split()
    assert supply_chain.SBOM_DIR.relative_to(REPO).parts[0] == "artifacts"


@pytest.mark.unit
def test_dependabot_covers_pip_npm_docker_and_actions_and_validates() -> None:
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())

    errors = list(jsonschema.Draft7Validator(vendored_schema("dependabot")).iter_errors(config))

    assert errors == []
    folders = {u["package-ecosystem"]: u["directory"] for u in config["updates"]}
    assert set(folders) == {"pip", "npm", "docker", "github-actions"}
    assert (REPO / "pyproject.toml").is_file() and (REPO / "constraints.txt").is_file()
    assert (REPO / folders["npm"].lstrip("/") / "package-lock.json").is_file()
    assert (REPO / folders["docker"].lstrip("/") / "Dockerfile").is_file()
    assert list((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.mark.unit
def test_the_workflow_validates_and_runs_the_ci_entry_point() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as a boolean; GitHub reads it as "on"

    errors = list(jsonschema.Draft7Validator(vendored_schema("github-workflows")).iter_errors(workflow))

    assert errors == []
    assert {"run": ".ci/run"} in workflow["jobs"]["ci"]["steps"]
    assert "bash ops/test.sh" in (REPO / ".ci" / "run").read_text()
