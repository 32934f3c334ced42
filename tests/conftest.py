"""Session-wide fixtures: the shared real-data folder, and the real local stack (Kafka + PostgreSQL).

The stack is started lazily, once per test session, the first time a test asks for ``stack`` (or for a fixture
built on it), in its own home under ``.orderflow/test-<pid>`` on free ports, and stopped at the end of the session
(also when tests fail). Its home is removed after a green session and kept, logs included, after a red one.

    def test_roundtrip(stack, new_topic):          # stack.settings.bootstrap_servers, stack.settings.pg_dsn
        topic = new_topic(partitions=3)            # a unique topic for this test, deleted afterwards
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from ops.stack.testing import LocalStack, create_topic, delete_topics, start_local_stack, stop_local_stack, topic_name

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

_started: list[LocalStack] = []
TIERS = ("unit", "integration", "e2e", "browser")
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
_tiers_of: dict[str, tuple[str, ...]] = {}  # test id -> its tier markers, filled at collection


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; the test is skipped with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """A real Kafka broker and PostgreSQL for the whole session: ``.settings`` (a Settings pointing at them),
    ``.bootstrap_servers``, ``.pg_dsn``, ``.home``, ``.kafka_ready_s`` and ``.env()`` for subprocesses."""
    local = start_local_stack()
    _started.append(local)
    try:
        yield local
    finally:
        stop_local_stack(local, remove=request.session.testsfailed == 0)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: LocalStack) -> str:
    """``host:port`` of the session's broker."""
    return stack.settings.bootstrap_servers


@pytest.fixture(scope="session")
def pg_dsn(stack: LocalStack) -> str:
    """libpq DSN of the session's database, as the application role."""
    return stack.settings.pg_dsn


@pytest.fixture
def new_topic(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory of uniquely named topics for this test: ``new_topic(partitions=1, config=None, label=None)``;
    each is ready (partition leaders elected) when returned and deleted after the test."""
    made: list[str] = []

    def make(partitions: int = 1, config: Mapping[str, str] | None = None, label: str | None = None) -> str:
        name = create_topic(stack.settings, topic_name(label or request.node.name), partitions, config)
        made.append(name)
        return name

    yield make
    delete_topics(stack.settings, made)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        _tiers_of[item.nodeid] = tuple(t for t in TIERS if item.get_closest_marker(t)) or ("unmarked",)


def tier_counts(stats: Mapping[str, list[object]]) -> dict[str, Counter[str]]:
    """Outcomes per tier marker, each test counted once per outcome (a test with two tiers counts in both)."""
    counts: dict[str, Counter[str]] = {}
    for outcome in OUTCOMES:
        seen: set[str] = set()
        for report in stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid in _tiers_of and nodeid not in seen:
                seen.add(nodeid)
                for tier in _tiers_of[nodeid]:
                    counts.setdefault(tier, Counter())[outcome] += 1
    return counts


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = tier_counts(terminalreporter.stats)
    if counts:
        terminalreporter.section("tests per tier")
        for tier in (*TIERS, "unmarked"):
            found = counts.get(tier, Counter())
            detail = ", ".join(f"{found[o]} {o}" for o in OUTCOMES if found[o]) or "none run"
            terminalreporter.write_line(f"{tier:<12} {detail}")
    for local in _started:
        ready = f"{local.kafka_ready_s:.1f} s" if local.kafka_ready_s is not None else "n/a"
        terminalreporter.write_line(f"local stack: Kafka ready in {ready} ({local.home})")
