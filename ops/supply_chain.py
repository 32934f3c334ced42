"""Supply-chain checks of the lock file (constraints.txt), run by .ci/run:

    python -m ops.supply_chain audit   pip-audit over every pinned package; a finding fails unless it is listed, with
                                       a reason, in ops/pip-audit-ignore.txt
    python -m ops.supply_chain sbom    a CycloneDX JSON SBOM of the lock file into artifacts/sbom/

pip-audit needs a vulnerability service: PyPI's per-release JSON API or OSV. When neither answers from this machine,
``audit`` says so plainly and exits 0 (``--require-service`` makes that an error); see docs/deploy.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
IGNORE_FILE = ROOT / "ops" / "pip-audit-ignore.txt"
SBOM_DIR = ROOT / "artifacts" / "sbom"
PYPI_RELEASE = "https://pypi.org/pypi/{name}/{version}/json"
OSV_QUERY = "https://api.osv.dev/v1/query"
PROBE_TIMEOUT_S = 10.0
EXIT_ERROR = 2


class SupplyChainError(Exception):
    """A problem with the inputs (lock file, ignore file): the message names the file and line."""


@dataclass(frozen=True)
class Ignored:
    vuln_id: str
    reason: str


def read_ignores(path: Path) -> list[Ignored]:
    """``ID reason...`` per line (``#`` comments, blank lines skipped); an ID without a reason is an error."""
    ignores: list[Ignored] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        vuln_id, _, reason = text.partition(" ")
        if not reason.strip():
            raise SupplyChainError(f"{path}:{number}: {vuln_id} is ignored without a reason ('ID reason...')")
        ignores.append(Ignored(vuln_id, reason.strip()))
    return ignores


def read_pins(path: Path) -> list[tuple[str, str]]:
    """(name, version) of every ``name==version`` line of the lock file."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, sep, version = text.partition("==")
        if not sep or not name or not version:
            raise SupplyChainError(f"{path}:{number}: {text!r} is not pinned as name==version")
        pins.append((name.strip(), version.strip()))
    return pins


def _answers(request: urllib.request.Request) -> bool:
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as e:
        logger.info("vulnerability service probe %s: %s", request.full_url, e)
        return False


def reachable_service(pin: tuple[str, str], pypi: str = PYPI_RELEASE, osv: str = OSV_QUERY) -> str | None:
    """``pypi`` or ``osv``: the first vulnerability service that answers for ``pin``; None when neither does."""
    name, version = pin
    if _answers(urllib.request.Request(pypi.format(name=name, version=version))):
        return "pypi"
    query = json.dumps({"package": {"name": name, "ecosystem": "PyPI"}, "version": version}).encode()
    if _answers(urllib.request.Request(osv, data=query, headers={"Content-Type": "application/json"})):
        return "osv"
    return None


def tool(name: str) -> str:
    """A console script of this interpreter's environment (the project's venv)."""
    return str(Path(sys.executable).parent / name)


def audit_command(service: str, lock: Path, ignores: list[Ignored]) -> list[str]:
    argv = [tool("pip-audit"), "-r", str(lock), "--no-deps", "--disable-pip", "--strict", "-s", service,
            "--progress-spinner", "off"]
    for item in ignores:
        argv += ["--ignore-vuln", item.vuln_id]
    return argv


def audit(lock: Path, ignore_file: Path, require_service: bool, pypi: str = PYPI_RELEASE, osv: str = OSV_QUERY) -> int:
    ignores = read_ignores(ignore_file)
    pins = read_pins(lock)
    if not pins:
        raise SupplyChainError(f"{lock}: no pinned package")
    service = reachable_service(pins[0], pypi, osv)
    if service is None:
        print(f"pip-audit: SKIPPED: no vulnerability service answers from this machine (PyPI's per-release JSON "
              f"API {pypi.format(name=pins[0][0], version=pins[0][1])} and OSV {osv}); "
              f"{len(pins)} pinned packages not audited", file=sys.stderr)
        return 1 if require_service else 0
    for item in ignores:
        print(f"pip-audit: ignoring {item.vuln_id}: {item.reason}", file=sys.stderr)
    print(f"pip-audit: {len(pins)} packages of {lock.name} against {service}", file=sys.stderr)
    return subprocess.run(audit_command(service, lock, ignores), check=False).returncode


def sbom(lock: Path, out: Path | None) -> int:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    target = out or SBOM_DIR / f"orderflow-{version}.cdx.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = [tool("cyclonedx-py"), "requirements", str(lock), "--pyproject", str(ROOT / "pyproject.toml"),
            "--output-reproducible", "--output-format", "JSON", "-o", str(target)]
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return result.returncode
    doc = json.loads(target.read_text())
    print(f"sbom: {target} (CycloneDX {doc['specVersion']}, {len(doc['components'])} components)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.supply_chain", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("audit", help="pip-audit over the lock file")
    p.add_argument("--lock", type=Path, default=LOCK)
    p.add_argument("--ignore-file", type=Path, default=IGNORE_FILE)
    p.add_argument("--require-service", action="store_true", help="fail when no vulnerability service answers")
    p = sub.add_parser("sbom", help="CycloneDX SBOM of the lock file")
    p.add_argument("--lock", type=Path, default=LOCK)
    p.add_argument("--out", type=Path, help=f"output file (default: {SBOM_DIR.relative_to(ROOT)}/orderflow-VERSION"
                   ".cdx.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.action == "audit":
            return audit(args.lock, args.ignore_file, args.require_service)
        return sbom(args.lock, args.out)
    except (SupplyChainError, OSError) as e:
        print(f"supply_chain {args.action}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
