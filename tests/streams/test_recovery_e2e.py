"""kill -9 a real worker at random moments while a session streams, restart it: the final books equal an
uninterrupted run, and the BBO topic has no gap (repeats only where marked duplicate)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from tests.streams.checks import check_stream
from tests.streams.feed import publish, read_all
from tests.streams.harness import Pipeline, Worker, metric, wait_for
from tests.streams.sessions import FOUR_INSTRUMENTS, bbo_key, esh4_records, esh4_reference, multi_session, reference_for
from topics.codec import encode
from topics.records import BboUpdate

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

INSTRUMENTS = FOUR_INSTRUMENTS[1:]  # three instruments in three of the four partitions
RATE = 60_000  # records/s: the session streams for a few seconds, across the kills


def reference_outputs_for(instruments: tuple[int, ...]) -> list[tuple[str, bytes, bytes]]:
    """The offline BBO changes of the day for each of ``instruments``, as encoded outputs."""
    out = []
    for inst in instruments:
        for key in reference_for(inst):
            update = BboUpdate(publisher_id=1, instrument_id=key[0], sequence=key[1], ts_recv=key[2], ts_event=0,
                               bid_px=key[3], bid_sz=key[4], bid_ct=key[5], ask_px=key[6], ask_sz=key[7],
                               ask_ct=key[8])
            out.append(("bbo", b"", encode(update)))
    return out


def complete(worker: Worker) -> bool:
    """Every instrument's book has applied the whole day (its counters travel in the checkpoints)."""
    if not worker.alive() or worker.health() != 200:
        return False
    books = {b["instrument_id"]: b for b in worker.books()["books"]}
    return all(books.get(i, {}).get("stats", {}).get("records") == len(esh4_records()) for i in INSTRUMENTS) \
        and metric(worker.metrics(), "orderflow_book_consumer_lag") == 0


def assert_books_equal_offline(worker: Worker) -> None:
    offline = esh4_reference()[1][17077]
    for inst in INSTRUMENTS:
        status, doc = worker.book(inst, depth=1000)
        assert status == 200, doc
        for side, key in (("B", "bids"), ("A", "asks")):
            assert [(lv["price_raw"], lv["size"], lv["count"]) for lv in doc[key]] == [
                (lv.price, lv.size, lv.count) for lv in offline.levels(side, 1000)], (inst, side)
        assert doc["orders"] == offline.order_count


@pytest.mark.parametrize("seed", [7, 8])
def test_kill_9_at_random_points(pipeline_factory: Any, seed: int) -> None:
    rng = random.Random(seed)
    pipeline: Pipeline = pipeline_factory(partitions=4)
    worker = pipeline.start("w1")
    pipeline.wait_healthy(worker)
    session = multi_session(INSTRUMENTS)
    feeder = threading.Thread(target=publish, args=(pipeline.bootstrap, pipeline.topics.frames, session),
                              kwargs={"rate": RATE, "stamp": True}, daemon=True)
    feeder.start()
    for kill in range(2):
        time.sleep(rng.uniform(0.2, 2.5))
        pipeline.kill(worker)
        # the second restart comes up with an empty workdir: everything restored from the changelog
        worker = pipeline.start("w1", workdir=pipeline.base / f"work-{seed}-{kill}" if kill else None)
        pipeline.wait_healthy(worker)
    feeder.join(timeout=300)
    wait_for("the restarted worker caught up", lambda: complete(worker))
    assert_books_equal_offline(worker)
    pipeline.stop(worker)
    delivered = [("bbo", k or b"", v) for _, _, k, v in read_all(pipeline.bootstrap, pipeline.topics.bbo)]
    repeats = check_stream(reference_outputs_for(INSTRUMENTS), delivered, bbo_key, BboUpdate)
    print(f"seed {seed}: {len(delivered)} BBO messages, {repeats} marked repeats dropped")
