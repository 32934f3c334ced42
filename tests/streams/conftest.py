"""Fixtures of the streams tests: isolated pipelines (topics, consumer group, worker processes) on the real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.stack.testing import LocalStack
from tests.streams.harness import Pipeline, tail, unique_prefix


@pytest.fixture
def pipeline_factory(stack: LocalStack, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """``make(partitions=4, **env)``: a pipeline with its own topics and group; workers stopped, topics deleted
    afterwards. Worker logs stay in the test's tmp_path (printed when a test fails)."""
    made: list[Pipeline] = []

    def make(partitions: int = 4, **env: str) -> Pipeline:
        pipeline = Pipeline(stack, unique_prefix(), partitions, tmp_path / f"p{len(made)}", env_extra=env)
        pipeline.base.mkdir(parents=True)
        pipeline.create_topics()
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when == "call" and report.failed and tmp is not None:
        for log in sorted(Path(tmp).glob("*/*.log")):
            report.sections.append((f"worker log {log.name}", tail(log, 60)))
