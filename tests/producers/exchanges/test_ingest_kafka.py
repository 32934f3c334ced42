"""End to end on the real broker: fake exchanges on loopback -> ``Ingest`` (connection loops, queue, publisher)
-> Kafka topics; every tick arrives once, keyed ``venue:symbol``, in order per key, framed (several ticks of one
key per message under load), with the metrics and /health endpoints answering while it runs."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from producers.exchanges import venue_class
from producers.exchanges.fake import FakeConfig, FakeExchange
from producers.exchanges.ingest import Ingest, IngestConfig
from producers.exchanges.replay import load, replay
from tests.producers.exchanges.support import wait_for
from topics import codec
from topics.records import L2Update, QuoteTick, TradeTick

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VENUES = {"okx": [], "kraken": [], "binance": ["BTCUSDT"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def consume(bootstrap: str, topics: dict[str, str], want: int) -> tuple[list[tuple[str, bytes, Any]], int]:
    """(kind, key, record) of every record of every message, and the number of messages."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{free_port()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(list(topics.values()))
    kinds = {v: k for k, v in topics.items()}
    got: list[tuple[str, bytes, Any]] = []
    idle = messages = 0
    try:
        while len(got) < want and idle < 30:
            msgs = consumer.consume(10_000, timeout=1.0)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                assert m.error() is None, m.error()
                kind, key, value = kinds[str(m.topic())], m.key() or b"", m.value() or b""
                messages += 1
                got += [(kind, key, r) for r in codec.decode_records(codec.RECORD_TYPES[kind], value)]
    finally:
        consumer.close()
    return got, messages


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def run_pipeline(captures: Path, bootstrap: str, topics: dict[str, str], metrics_port: int,
                       expected: dict[str, Counter[str]]) -> tuple[Ingest, dict[str, tuple[int, str]]]:
    fakes = {}
    for name in VENUES:
        cls = venue_class(name)
        fakes[name] = FakeExchange(cls, load(cls, captures, 0), FakeConfig(speed=0))
        await fakes[name].start(0)
    config = IngestConfig(
        venues=list(VENUES), bootstrap=bootstrap, symbols={k: v for k, v in VENUES.items() if v},
        endpoints={n: f.url for n, f in fakes.items()}, metrics_port=metrics_port, topics=topics,
        watchdog_s=30.0,
    )
    ingest = Ingest(config)
    task = asyncio.create_task(ingest.run())
    total = sum(sum(c.values()) for c in expected.values())
    await wait_for(lambda: sum(s.published for s in ingest.stats.values()) >= total, limit_s=120,
                   what="every tick published")
    pages = {}
    for path in ("/metrics", "/health"):
        pages[path] = await asyncio.to_thread(get, f"http://127.0.0.1:{metrics_port}{path}")
    ingest.stop()
    await task
    for f in fakes.values():
        await f.stop()
    return ingest, pages


def test_fake_feeds_to_kafka(captures: Path, kafka_bootstrap: str, new_topic: Any) -> None:
    topics = {kind: new_topic(partitions=3, label=label)
              for kind, label in (("TradeTick", "trades"), ("QuoteTick", "quotes"), ("L2Update", "book"))}
    expected: dict[str, Counter[str]] = {}
    reference: dict[str, list[Any]] = {}
    for name, symbols in VENUES.items():
        v = venue_class(name)(symbols)
        recs = replay(v, load(type(v), captures, 0), default_symbol=symbols[0] if symbols else None)
        reference[name] = recs
        expected[name] = Counter(type(r).__name__ for r in recs)
    port = free_port()
    ingest, pages = asyncio.run(run_pipeline(captures, kafka_bootstrap, topics, port, expected))

    status, text = pages["/metrics"]
    assert status == 200
    assert 'orderflow_exchange_messages_total{venue="okx"}' in text
    assert 'orderflow_exchange_checksums_ok_total{venue="kraken"} 4269.0' in text
    assert "orderflow_exchange_receipt_to_publish_seconds_bucket" in text
    status, text = pages["/health"]
    assert status == 200 and '"ok": true' in text

    total = sum(sum(c.values()) for c in expected.values())
    got, messages = consume(kafka_bootstrap, topics, total)
    assert len(got) == total  # once each: idempotent producer, nothing lost, nothing duplicated
    assert messages == ingest.publisher.messages < total  # the fakes send at full speed: frames of several ticks
    by_venue: dict[str, Counter[str]] = defaultdict(Counter)
    for kind, key, rec in got:
        assert key == f"{rec.venue}:{rec.symbol}".encode()
        by_venue[rec.venue][kind] += 1
    assert by_venue == expected
    # per key, in the order the venue sent them (one key, one partition)
    seqs: dict[bytes, list[int]] = defaultdict(list)
    for kind, key, rec in got:
        if kind == "L2Update" and rec.venue == "binance":
            seqs[key].append(rec.sequence)
    assert seqs[b"binance:BTCUSDT"] == sorted(seqs[b"binance:BTCUSDT"])
    okx_trades = [r for k, _, r in got if k == "TradeTick" and r.venue == "okx"]
    ref_trades = [r for r in reference["okx"] if isinstance(r, TradeTick)]
    assert {(t.trade_id, t.price, t.size) for t in okx_trades} == {(t.trade_id, t.price, t.size) for t in ref_trades}
    assert all(isinstance(r, TradeTick | QuoteTick | L2Update) for _, _, r in got)
    assert ingest.publisher.acked == total and ingest.queue.dropped == 0
    assert ingest.latency.count == total  # every record, with its frame's latency
