"""Java and the Kafka jars: find the JVM, resolve Apache Kafka from Maven Central into ``<home>/kafka/libs``.

The jars are cached: a marker file records the Kafka version and the POM's digest; while both match, nothing is
downloaded. Run ``python -m ops.stack.jars`` to resolve them ahead of time (ops/bootstrap.sh does).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ops.stack.errors import MissingToolError, ResolveError, StackError
from ops.stack.layout import Layout

logger = logging.getLogger(__name__)

POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
MARKER = ".orderflow-resolved"
COPY_GOAL = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
MIN_JAVA = 17
_NETWORK = re.compile(
    r"Could not transfer|could not be resolved|Failed to read artifact descriptor|Connect to .* failed|"
    r"UnknownHost|Network is unreachable|timed out|Cannot access .* in offline mode",
    re.IGNORECASE,
)


def find_java() -> str:
    """Path of the ``java`` launcher (``$JAVA_HOME/bin/java`` first), checked to be Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else None
    java = java or shutil.which("java")
    if not java:
        raise MissingToolError(
            "Java is not installed: Kafka needs a Java 17+ runtime",
            "run `bash ops/bootstrap.sh` (or `apt-get install openjdk-17-jre-headless`), or set JAVA_HOME",
        )
    version = java_major_version(java)
    if version < MIN_JAVA:
        raise MissingToolError(
            f"{java} is Java {version}; Kafka 4 needs Java {MIN_JAVA} or newer",
            "install openjdk-17-jre-headless and put it first on PATH, or set JAVA_HOME to it",
        )
    return java


def java_major_version(java: str) -> int:
    """The major version ``java -version`` reports (8 for '1.8.0_x', 17 for '17.0.15')."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError) as e:
        raise MissingToolError(f"cannot run {java}: {e}", "check the Java installation") from None
    return parse_java_version(out)


def parse_java_version(text: str) -> int:
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def marker_text(kafka_version: str) -> str:
    return f"kafka={kafka_version} pom={pom_digest()}\n"


def jars_ready(libs: Path, kafka_version: str) -> bool:
    """True if ``libs`` holds the jars of this Kafka version resolved with the current POM."""
    marker = libs / MARKER
    try:
        return marker.read_text() == marker_text(kafka_version) and any(libs.glob("kafka_2.13-*.jar"))
    except OSError:
        return False


def ensure_jars(layout: Layout, kafka_version: str) -> bool:
    """Resolve the Kafka jars into ``layout.kafka_libs`` unless already there; True if it downloaded."""
    libs = layout.kafka_libs
    if jars_ready(libs, kafka_version):
        logger.debug("Kafka %s jars already in %s", kafka_version, libs)
        return False
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingToolError(
            "Maven (mvn) is not installed: it fetches the Kafka jars from Maven Central",
            "run `bash ops/bootstrap.sh` (or `apt-get install maven`)",
        )
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    logger.info("resolving Apache Kafka %s jars from Maven Central into %s", kafka_version, libs)
    _run_maven(mvn, staging, kafka_version, layout.home / "logs" / "mvn.log")
    (staging / MARKER).write_text(marker_text(kafka_version))
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    logger.info("resolved %d jars", len(list(libs.glob("*.jar"))))
    return True


def _run_maven(mvn: str, output: Path, kafka_version: str, log: Path) -> None:
    cmd = [
        mvn, "-B", "-q", "-f", str(POM), COPY_GOAL,
        f"-DoutputDirectory={output}", f"-Dkafka.version={kafka_version}", "-DincludeScope=runtime",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise ResolveError(
            "resolving the Kafka jars with Maven took more than 15 minutes",
            "check the network access to Maven Central, then run again",
        ) from None
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise _maven_error(proc.stdout + proc.stderr, kafka_version, log)


def _maven_error(output: str, kafka_version: str, log: Path) -> StackError:
    errors = [line.strip() for line in output.splitlines() if "[ERROR]" in line and line.strip() != "[ERROR]"]
    first = errors[0].replace("[ERROR] ", "") if errors else output.strip()[-300:]
    first = re.sub(r"\x1b\[[0-9;]*m", "", first)
    if _NETWORK.search(output):
        return ResolveError(
            f"cannot download Apache Kafka {kafka_version} from the Maven repository: it is unreachable "
            f"({first[:300]})",
            f"check network access to Maven Central (or the mirror/proxy in ~/.m2/settings.xml), then run "
            f"again; full Maven output in {log}",
        )
    return ResolveError(f"Maven failed to resolve Apache Kafka {kafka_version}: {first[:300]}",
                        f"full Maven output in {log}")


def classpath(layout: Layout) -> str:
    return str(layout.kafka_libs / "*")


def main() -> int:
    """Resolve the jars for the current settings (used by ops/bootstrap.sh)."""
    from topics.errors import SettingsError
    from topics.settings import load

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = load()
        downloaded = ensure_jars(Layout.of(settings), settings.kafka_version)
    except (StackError, SettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    libs = Layout.of(settings).kafka_libs
    print(f"Kafka {settings.kafka_version} jars {'resolved into' if downloaded else 'already in'} {libs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
