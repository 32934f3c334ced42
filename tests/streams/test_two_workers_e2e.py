"""Two workers in one group split the partitions; stopping one moves its books to the other, same result."""

from __future__ import annotations

from typing import Any

import pytest

from tests.streams.checks import check_stream
from tests.streams.feed import publish, read_all
from tests.streams.harness import Pipeline, Worker, wait_for
from tests.streams.sessions import FOUR_INSTRUMENTS, bbo_key, esh4_records, esh4_reference, multi_session
from tests.streams.test_recovery_e2e import reference_outputs_for
from topics.records import BboUpdate, MboFrame

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def split(worker_a: Worker, worker_b: Worker) -> bool:
    if worker_a.health() != 200 or worker_b.health() != 200:
        return False
    a, b = set(worker_a.books()["partitions"]), set(worker_b.books()["partitions"])
    return bool(a) and bool(b) and not a & b and a | b == {0, 1, 2, 3}


def applied(workers: list[Worker], counts: dict[int, int]) -> bool:
    """Each instrument's book, wherever it lives, has applied ``counts[instrument]`` records."""
    seen: dict[int, int] = {}
    for w in workers:
        if w.health() != 200:
            return False
        seen.update({b["instrument_id"]: b["stats"]["records"] for b in w.books()["books"]})
    return seen == counts


def records_of(frames: list[MboFrame]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for f in frames:
        counts[f.instrument_id] = counts.get(f.instrument_id, 0) + len(f)
    return counts


def test_two_workers_split_partitions_and_take_over(pipeline_factory: Any) -> None:
    pipeline: Pipeline = pipeline_factory(partitions=4)
    w1, w2 = pipeline.start("w1"), pipeline.start("w2")
    pipeline.wait_healthy(w1, w2)
    wait_for("the partitions split between the two workers", lambda: split(w1, w2))
    session = multi_session(FOUR_INSTRUMENTS)
    half = len(session) // 2
    publish(pipeline.bootstrap, pipeline.topics.frames, session[:half])
    wait_for("the first half applied", lambda: applied([w1, w2], records_of(session[:half])))
    assert w1.books()["books"] and w2.books()["books"]  # both workers hold books

    assert pipeline.stop(w2) == 0
    wait_for("w1 owns every partition", lambda: w1.health() == 200 and w1.books()["partitions"] == [0, 1, 2, 3])
    publish(pipeline.bootstrap, pipeline.topics.frames, session[half:])
    total = {inst: len(esh4_records()) for inst in FOUR_INSTRUMENTS}
    wait_for("the whole day applied on w1", lambda: applied([w1], total))

    offline = esh4_reference()[1][17077]
    for inst in FOUR_INSTRUMENTS:
        status, doc = w1.book(inst, depth=1000)
        assert status == 200
        for side, key in (("B", "bids"), ("A", "asks")):
            assert [(lv["price_raw"], lv["size"], lv["count"]) for lv in doc[key]] == [
                (lv.price, lv.size, lv.count) for lv in offline.levels(side, 1000)]
    pipeline.stop(w1)
    delivered = [("bbo", k or b"", v) for _, _, k, v in read_all(pipeline.bootstrap, pipeline.topics.bbo)]
    # a graceful hand-over checkpoints and commits everything: nothing is re-published at all
    assert check_stream(reference_outputs_for(FOUR_INSTRUMENTS), delivered, bbo_key, BboUpdate) == 0
