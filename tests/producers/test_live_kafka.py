"""``orderflow live`` against the fake gateway on loopback and the real broker: exactly the file's records, also
across dropped connections; clear errors for a missing key, a refused key, an unknown symbol and garbage."""

from __future__ import annotations

import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.live.fake_gateway import DEFAULT_KEY, FakeGateway, Feed, GatewayOptions
from tests.producers.conftest import Cli, consume_all, consume_raw, row_of
from tests.producers.test_replay_kafka import free_port
from topics import codec
from topics.records import F_LAST, DeadLetter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Rows = tuple[tuple[Any, ...], ...]


@pytest.fixture(scope="module")
def feed(esh4: Path) -> Feed:
    return Feed.load(esh4)


@pytest.fixture
def gateway(feed: Feed) -> Iterator[Callable[..., FakeGateway]]:
    """Factory of fake gateways serving the ESH4 file; each stopped after the test."""
    running: list[FakeGateway] = []

    def start(**options: Any) -> FakeGateway:
        gw = FakeGateway(feed, GatewayOptions(**options)).start()
        running.append(gw)
        return gw

    yield start
    for gw in running:
        gw.stop()


@pytest.fixture
def live(stack: Any) -> Iterator[Callable[..., Cli]]:
    """Factory: ``orderflow live`` against a gateway, ``key`` in DATABENTO_API_KEY (None: unset); killed after."""
    started: list[Cli] = []

    def run(gw: FakeGateway, topic: str, *extra: str, key: str | None = DEFAULT_KEY) -> Cli:
        env = {k: v for k, v in stack.env().items() if k != "DATABENTO_API_KEY"}
        if key is not None:
            env["DATABENTO_API_KEY"] = key
        args = ["live", "--gateway", "127.0.0.1", "--port", str(gw.port), "--dataset", "GLBX.MDP3", "--topic", topic,
                "--no-progress", "--metrics-port", "0", "--backoff-max", "1", *extra]
        c = Cli(args, env)
        started.append(c)
        return c

    yield run
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


def published_rows(stack: Any, topic: str, expect: int) -> list[tuple[Any, ...]]:
    messages = consume_all(stack.bootstrap_servers, topic, idle_s=3.0, expect_records=expect)
    assert {m.key for m in messages} <= {b"17077"}
    ordered = sorted(messages, key=lambda m: (m.partition, m.offset))
    return [row_of(r) for m in ordered for r in m.frame.records()]


def summary_of(out: str) -> dict[str, Any]:
    return dict(json.loads(out.strip().splitlines()[-1]))


def drop_inside_an_event(rows: Rows, after: int) -> int:
    """A record count past ``after`` that cuts in the middle of at least ten records sharing ts_event and sequence
    (one exchange event)."""
    start = after
    for i in range(after + 1, len(rows)):
        if rows[i][1] != rows[start][1] or rows[i][12] != rows[start][12]:
            if i - start >= 10:
                return start + (i - start) // 2
            start = i
    raise AssertionError(f"no event of ten records after record {after}")


def replay_from(rows: Rows, published: int) -> int:
    """Index of the first record an intraday replay from the last published ts_event sends."""
    return next(i for i, r in enumerate(rows) if r[1] >= rows[published - 1][1])


def test_live_publishes_exactly_the_records_of_the_file(
    live: Any, stack: Any, mbo_topic: str, gateway: Any, esh4_rows: Rows,
) -> None:
    # Arrange
    gw = gateway()

    # Act
    run = live(gw, mbo_topic, "--symbols", "ESH4", "--stop-after", str(len(esh4_rows)))
    code, out = run.finish()

    # Assert
    assert code == 0, "".join(run.stderr)
    summary = summary_of(out)
    assert summary["records_delivered"] == len(esh4_rows)
    assert summary["connections"] == 1 and summary["duplicates_dropped"] == 0
    assert published_rows(stack, mbo_topic, len(esh4_rows)) == list(esh4_rows)
    frames = [m.frame for m in consume_all(stack.bootstrap_servers, mbo_topic, idle_s=1.0,
                                           expect_records=len(esh4_rows))]
    assert all(f.flags[-1] & F_LAST for f in frames)  # the file ends on F_LAST, so no frame splits an event
    assert all(len(f) <= 250 or not any(flag & F_LAST for flag in f.flags[:-1]) for f in frames)
    assert {f.symbol for f in frames} == {"ESH4"}


def test_dropped_connections_resume_without_gap_or_duplicate(
    live: Any, stack: Any, mbo_topic: str, gateway: Any, esh4_rows: Rows,
) -> None:
    # Arrange: two drops, each in the middle of an event (records sharing ts_event and sequence); while the client
    # is away the feed moves on by 1000 records, so a resubscription without start would leave a gap
    first, second = drop_inside_an_event(esh4_rows, 20_000), drop_inside_an_event(esh4_rows, 50_000)
    replayed = [replay_from(esh4_rows, first), replay_from(esh4_rows, second)]
    gw = gateway(drop_after=[first, second - replayed[0]], outage_records=1000)

    # Act
    run = live(gw, mbo_topic, "--symbols", "ESH4", "--stop-after", str(len(esh4_rows)))
    code, out = run.finish()

    # Assert
    assert code == 0, "".join(run.stderr)
    summary = summary_of(out)
    assert summary["connections"] == 3
    assert gw.stats.starts == [None, esh4_rows[first - 1][1], esh4_rows[second - 1][1]]  # last published ts_event
    assert summary["duplicates_dropped"] == (first - replayed[0]) + (second - replayed[1])
    assert published_rows(stack, mbo_topic, len(esh4_rows)) == list(esh4_rows)


def test_health_and_metrics_while_streaming_then_sigterm(
    live: Any, stack: Any, mbo_topic: str, gateway: Any, esh4_rows: Rows,
) -> None:
    # Arrange
    gw = gateway()
    port = free_port()
    run = live(gw, mbo_topic, "--symbols", "ESH4", "--metrics-port", str(port))

    # Act
    health = wait_health(port, lambda doc: doc.get("records_published") == len(esh4_rows))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    run.proc.terminate()
    code, out = run.finish()

    # Assert
    assert health["ok"] is True and health["connected"] is True and health["state"] == "streaming"
    assert 'orderflow_live_connections_total{dataset="GLBX.MDP3"} 1.0' in metrics
    assert f'orderflow_live_records_received_total{{dataset="GLBX.MDP3"}} {float(len(esh4_rows))}' in metrics
    assert code == 0, "".join(run.stderr)
    assert summary_of(out)["records_delivered"] == len(esh4_rows)


def wait_health(port: int, ready: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                doc = json.loads(r.read())
        except urllib.error.HTTPError as e:
            doc = json.loads(e.read())
        except OSError:
            pass
        if doc and ready(doc):
            return doc
        time.sleep(0.2)
    raise AssertionError(f"/health never became ready; last: {doc}")


def test_no_key_is_a_clear_error(live: Any, mbo_topic: str, gateway: Any) -> None:
    # Arrange
    gw = gateway()

    # Act
    run = live(gw, mbo_topic, "--symbols", "ESH4", key=None)
    code, _ = run.finish()

    # Assert
    assert code == 1
    assert "DATABENTO_API_KEY is not set" in "".join(run.stderr)
    assert gw.stats.connections == 0


def test_a_refused_key_is_a_clear_error_without_retries(live: Any, mbo_topic: str, gateway: Any) -> None:
    # Arrange
    gw = gateway()

    # Act
    run = live(gw, mbo_topic, "--symbols", "ESH4", key="db-wrongwrongwrongwrongwrong")
    code, _ = run.finish()

    # Assert
    assert code == 1
    assert "refused the session: Authentication failed." in "".join(run.stderr)
    assert gw.stats.connections == 1


def test_an_unknown_dataset_is_a_clear_error(live: Any, mbo_topic: str, gateway: Any) -> None:
    # Arrange
    gw = gateway()

    # Act: the last --dataset wins over the fixture's
    run = live(gw, mbo_topic, "--symbols", "ESH4", "--dataset", "XNAS.ITCH")
    code, _ = run.finish()

    # Assert
    assert code == 1
    assert "refused the session: Unknown dataset 'XNAS.ITCH'" in "".join(run.stderr)
    assert gw.stats.connections == 1


def test_an_unknown_symbol_is_a_clear_error(live: Any, mbo_topic: str, gateway: Any) -> None:
    # Arrange
    gw = gateway()

    # Act
    run = live(gw, mbo_topic, "--symbols", "NOPE9")
    code, _ = run.finish()

    # Assert
    assert code == 1
    stderr = "".join(run.stderr)
    assert "SYMBOL_RESOLUTION_FAILED: Failed to resolve symbol(s): NOPE9" in stderr
    assert gw.stats.connections == 1


def test_garbage_from_the_gateway_is_a_clear_error_not_a_crash_loop(
    live: Any, stack: Any, mbo_topic: str, gateway: Any, esh4_rows: Rows,
) -> None:
    # Arrange: the stream turns into bytes that are not DBN after 3000 records
    gw = gateway(garbage_after=3000)

    # Act
    run = live(gw, mbo_topic, "--symbols", "ESH4")
    code, out = run.finish()

    # Assert
    assert code == 1
    assert "sent data that is not DBN" in "".join(run.stderr)
    assert gw.stats.connections == 1
    published = published_rows(stack, mbo_topic, summary_of(out)["records_delivered"])
    assert published == list(esh4_rows[: len(published)])  # what came before the garbage, intact


def test_an_invalid_record_goes_to_the_dead_letter_topic_and_the_rest_is_published(
    live: Any, stack: Any, mbo_topic: str, new_topic: Any, gateway: Any, esh4_rows: Rows,
) -> None:
    # Arrange: record 30000 arrives with action 'X' (valid DBN, an impossible MBO action)
    dead_topic = new_topic(partitions=1, label="live-dead")
    gw = gateway(invalid_at=[30_000])

    # Act
    run = live(gw, mbo_topic, "--symbols", "ESH4", "--stop-after", str(len(esh4_rows) - 1),
               "--dead-letter-topic", dead_topic)
    code, out = run.finish()

    # Assert
    assert code == 0, "".join(run.stderr)
    assert summary_of(out)["rejected"] == 1
    expected = list(esh4_rows[:30_000] + esh4_rows[30_001:])
    assert published_rows(stack, mbo_topic, len(expected)) == expected
    letters = [codec.decode(DeadLetter, value) for *_, value in consume_raw(stack.bootstrap_servers, dead_topic,
                                                                            idle_s=2.0)]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.stage == "live" and letter.topic == "databento:GLBX.MDP3" and letter.key == b"17077"
    assert "invalid action 'X'" in letter.reason
    assert struct.unpack_from("<4xIQ", letter.value) == (17077, esh4_rows[30_000][1])  # the record's own bytes
