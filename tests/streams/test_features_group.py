"""The features worker's pure core (GroupKeeper) over recorded data: bars equal the offline engine whatever the
interleaving of the input streams, a checkpoint taken anywhere continues exactly, bad input becomes a dead letter,
a quiet group's bars close by the idle timer."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from processors.features import FeatureConfig, StateError
from processors.regime import RegimeConfig
from streams.features_group import FeatureTopics, GroupKeeper, Output
from tests.streams.features_support import (
    INTERVALS,
    event_times,
    offline_frames,
    offline_outputs,
    recorded_events,
    same_values,
    split,
)
from topics.codec import decode, encode
from topics.records import DeadLetter, FeatureBar, QuoteTick, RegimeSignal

pytestmark = pytest.mark.unit

TOPICS = FeatureTopics()
FEATURES = FeatureConfig(intervals_ns=INTERVALS)
REGIME = RegimeConfig(fit_bars=20)


class Feed:
    """A one-partition broker of the input topics, delivered to a keeper in a random interleaving that keeps each
    topic's order (as Kafka does), from given start offsets."""

    def __init__(self, by_topic: dict[str, list[bytes]], keeper: GroupKeeper, seed: int) -> None:
        self.by_topic = by_topic
        self.keeper = keeper
        self.rng = random.Random(seed)
        self.next = {t: 0 for t in by_topic}
        self.outputs: list[Output] = []

    def caught_up(self, topic: str) -> bool:
        group = self.keeper.groups[0]
        return group.positions.get(topic, 0) >= len(self.by_topic[topic])

    def run(self, steps: int | None = None) -> None:
        done = 0
        while steps is None or done < steps:
            left = [t for t, values in self.by_topic.items() if self.next[t] < len(values)]
            if not left:
                self.outputs += self.keeper.finish(0)
                return
            topic = self.rng.choice(left)
            burst = self.rng.randint(1, 300)  # Faust hands over a fetched batch of one partition at a time
            for _ in range(burst):
                offset = self.next[topic]
                if offset >= len(self.by_topic[topic]):
                    break
                self.next[topic] = offset + 1
                self.outputs += self.keeper.handle(0, topic, offset, b"k", self.by_topic[topic][offset],
                                                   self.caught_up, 1)
                done += 1
            if self.rng.random() < 0.5:  # the features of closed bars come after a while, as in the worker
                self.outputs += self.keeper.finish(0)

    def checkpoint(self) -> tuple[bytes, dict[str, int]]:
        """What the worker does at a commit boundary: the closed bars' features out, then the state."""
        self.outputs += self.keeper.finish(0)
        group = self.keeper.groups[0]
        return group.checkpoint(), dict(group.positions)

    def finish(self) -> None:
        """Every stream read: the idle timer closes the open bar."""
        self.outputs += self.keeper.idle(0, self.caught_up, 2 * INTERVALS[-1], 1)
        self.outputs += self.keeper.finish(0)


def keeper() -> GroupKeeper:
    k = GroupKeeper(TOPICS, FEATURES, REGIME)
    k.assign(0, None)
    return k


def published(outputs: list[Output]) -> tuple[dict[Any, FeatureBar], dict[Any, RegimeSignal]]:
    bars: dict[Any, FeatureBar] = {}
    signals: dict[Any, RegimeSignal] = {}
    for topic, _key, value in outputs:
        if topic == TOPICS.bars:
            bar = decode(FeatureBar, value)
            bars[(bar.instrument, bar.interval_ns, bar.ts_event)] = bar
        elif topic == TOPICS.signals:
            s = decode(RegimeSignal, value)
            signals[(s.instrument, s.kind, s.interval_ns, s.ts_event)] = s
    return bars, signals


@pytest.fixture(scope="module")
def inputs(shared_data: Any) -> dict[str, list[bytes]]:
    return split(TOPICS, recorded_events())


@pytest.fixture(scope="module")
def reference(inputs: dict[str, list[bytes]]) -> tuple[dict[Any, FeatureBar], dict[Any, RegimeSignal]]:
    return offline_outputs(offline_frames(event_times(inputs, TOPICS), FEATURES), REGIME)


@pytest.fixture(scope="module")
def uninterrupted(inputs: dict[str, list[bytes]]) -> tuple[list[Output], list[Output]]:
    """One whole run: (outputs while reading, outputs of the idle timer once everything was read)."""
    feed = Feed(inputs, keeper(), seed=1)
    feed.run()
    reading = list(feed.outputs)
    feed.finish()
    return reading, feed.outputs[len(reading):]


def test_bars_and_signals_equal_the_offline_engine(uninterrupted: Any, reference: Any) -> None:
    want_bars, want_signals = reference
    reading, after = uninterrupted

    got_bars, got_signals = published(reading + after)
    assert want_bars.keys() <= got_bars.keys()
    extra = {k for k in got_bars.keys() - want_bars.keys()}
    last = max(k[2] for k in want_bars)
    assert all(k[2] > last for k in extra), "only the idle timer's quiet bars after the data may be extra"
    bad = [k for k, bar in want_bars.items() if not same_values(got_bars[k], bar)]
    assert not bad, f"{len(bad)} bars differ, first {bad[:3]}"
    assert {k: s for k, s in got_signals.items() if k in want_signals} == want_signals
    assert len(want_signals) > 0 and any(s.changed for s in want_signals.values())


def test_the_interleaving_of_streams_does_not_change_any_bar(inputs: dict[str, list[bytes]],
                                                             uninterrupted: Any) -> None:
    feed = Feed(inputs, keeper(), seed=2)

    feed.run()

    assert sorted((t, v) for t, _, v in feed.outputs) == sorted((t, v) for t, _, v in uninterrupted[0])


def framed(inputs: dict[str, list[bytes]], seed: int) -> dict[str, list[bytes]]:
    """The framed topics' records packed as their publishers pack them: frames (JSON arrays) of consecutive
    records of one key (a tick's venue:symbol, a book output's instrument), of random lengths."""
    rng = random.Random(seed)
    out = dict(inputs)
    for topic in TOPICS.framed():
        frames: list[bytes] = []
        run: list[bytes] = []
        run_key = b""
        for value in inputs[topic]:
            record = msgspec.json.decode(value)
            key = str(record.get("symbol", record.get("instrument_id"))).encode()
            if run and (key != run_key or len(run) >= rng.randint(1, 40)):
                frames.append(b"[" + b",".join(run) + b"]")
                run = []
            run.append(value)
            run_key = key
        frames += [b"[" + b",".join(run) + b"]"] if run else []
        out[topic] = frames
    return out


def test_ticks_in_frames_give_the_bars_of_ticks_one_by_one(inputs: dict[str, list[bytes]],
                                                           uninterrupted: Any) -> None:
    packed = framed(inputs, seed=3)
    feed = Feed(packed, keeper(), seed=3)

    feed.run()

    assert all(len(packed[t]) < len(inputs[t]) for t in TOPICS.framed())
    assert feed.keeper.tally.records == sum(len(v) for v in inputs.values())
    assert sorted((t, v) for t, _, v in feed.outputs) == sorted((t, v) for t, _, v in uninterrupted[0])


def test_a_checkpoint_between_frames_continues_exactly(inputs: dict[str, list[bytes]], uninterrupted: Any) -> None:
    packed = framed(inputs, seed=5)
    whole = {(t, v) for t, _, v in uninterrupted[0]}
    crashed = Feed(packed, keeper(), seed=5)
    crashed.run(20_000)
    blob, positions = crashed.checkpoint()

    restored = GroupKeeper(TOPICS, FEATURES, REGIME)
    restored.assign(0, blob)
    again = Feed(packed, restored, seed=105)
    again.next = {t: positions.get(t, 0) for t in packed}
    again.run()

    assert {(t, v) for t, _, v in crashed.outputs} | {(t, v) for t, _, v in again.outputs} == whole


@pytest.mark.parametrize("seed", [4])
def test_a_checkpoint_taken_anywhere_continues_exactly(inputs: dict[str, list[bytes]], uninterrupted: Any,
                                                       seed: int) -> None:
    rng = random.Random(seed)
    whole = {(t, v) for t, _, v in uninterrupted[0]}
    crashed = Feed(inputs, keeper(), seed)
    crashed.run(rng.randint(1_000, 100_000))
    blob, positions = crashed.checkpoint()
    crashed.run(rng.randint(0, 20_000))  # published, then lost with the process

    restored = GroupKeeper(TOPICS, FEATURES, REGIME)
    restored.assign(0, blob)
    again = Feed(inputs, restored, seed + 100)
    again.next = {t: max(0, p - rng.randint(0, 50)) for t, p in positions.items()}  # committed offsets lag
    again.next.update({t: 0 for t in inputs if t not in positions})
    again.run()

    before = {(t, v) for t, _, v in crashed.outputs}
    after = {(t, v) for t, _, v in again.outputs}
    assert after <= whole, "a bar published after the restore differs from the uninterrupted run's"
    assert before | after == whole
    assert restored.tally.skipped > 0


def test_malformed_records_become_dead_letters_and_the_group_goes_on(inputs: dict[str, list[bytes]]) -> None:
    k = keeper()
    bbo = inputs[TOPICS.bbo]
    broken: dict[str, list[Any]] = {TOPICS.bbo: [bbo[0], b"{not json", b'{"publisher_id": 1}', None, *bbo[1:2000]]}
    broken.update({t: [] for t in inputs if t != TOPICS.bbo})
    feed = Feed(broken, k, seed=6)

    feed.run()
    feed.finish()

    dead = [decode(DeadLetter, v) for t, _, v in feed.outputs if t == TOPICS.deadletter]
    assert [(d.topic, d.partition, d.offset, d.stage) for d in dead] == [
        (TOPICS.bbo, 0, offset, "feature-agent") for offset in (1, 2, 3)]
    assert "JSON" in dead[0].reason
    assert "missing required field" in dead[1].reason
    assert dead[2].reason == "no value (null message)"
    assert dead[0].value == b"{not json" and dead[0].key == b"k"
    assert k.tally.records == 2000 and k.tally.dead_letters == 3
    assert any(t == TOPICS.bars for t, _, _ in feed.outputs)


def test_a_quiet_group_gets_its_bars_from_the_idle_timer(inputs: dict[str, list[bytes]]) -> None:
    k = keeper()
    quotes = {t: [] for t in inputs}
    quotes[TOPICS.tick_quotes] = inputs[TOPICS.tick_quotes][:50]
    feed = Feed(quotes, k, seed=7)
    feed.run()
    group = k.groups[0]
    last = max(group.clocks.values())
    open_end = group.open_end

    assert k.idle(0, feed.caught_up, 0, 1) == []  # no silence yet: the open bar stays open
    out = k.idle(0, feed.caught_up, open_end - last + 3 * INTERVALS[0], 1) + k.finish(0)

    bars = [decode(FeatureBar, v) for t, _, v in out if t == TOPICS.bars]
    ends = sorted({b.ts_event for b in bars if b.interval_ns == INTERVALS[0]})
    assert ends == [open_end + i * INTERVALS[0] for i in range(4)]
    assert {b.instrument for b in bars} == set(group.engine.instruments)
    quiet = [b for b in bars if b.ts_event > open_end]
    assert quiet and all(b.values["quote_count"] == 0 for b in quiet)


def test_an_unreadable_checkpoint_is_refused_naming_the_group() -> None:
    k = GroupKeeper(TOPICS, FEATURES, REGIME)

    with pytest.raises(ValueError, match="group 5"):
        k.assign(5, b"not a checkpoint")


def quote(symbol: str, ts: int) -> bytes:
    return encode(QuoteTick(venue="v", symbol=symbol, ts_event=ts, ts_recv=ts, bid_px=10**11, bid_sz=10**9,
                            ask_px=10**11 + 10**8, ask_sz=10**9))


class Live:
    """Groups fed live quotes (every stream read to its end), one message at a time."""

    def __init__(self, groups: tuple[int, ...]) -> None:
        self.keeper = GroupKeeper(TOPICS, FeatureConfig(intervals_ns=(INTERVALS[0],)), REGIME)
        for number in groups:
            self.keeper.assign(number, None)
        self.offsets = dict.fromkeys(groups, 0)

    def quote(self, number: int, ts: int, now_ns: int = 0) -> list[Output]:
        offset = self.offsets[number]
        self.offsets[number] += 1
        return self.keeper.handle(number, TOPICS.tick_quotes, offset, None, quote(f"S{number}", ts),
                                  lambda _topic: True, now_ns)


def test_signals_leave_with_the_closing_record_and_the_bars_follow_from_finish() -> None:
    live = Live((0,))
    live.quote(0, INTERVALS[0] // 2)
    bars = 0
    closing: list[Output] = []
    while bars < 100:  # until the regimes are warm: signals with every bar from then on
        bars += 1
        closing = live.quote(0, bars * INTERVALS[0] + 1)
        if closing:
            break
        live.keeper.finish(0)

    later = live.keeper.finish(0)

    assert closing and {t for t, _, _ in closing} == {TOPICS.signals}
    assert {decode(RegimeSignal, v).ts_event for _, _, v in closing} == {bars * INTERVALS[0]}
    assert [(t, decode(FeatureBar, v).ts_event) for t, _, v in later] == [(TOPICS.bars, bars * INTERVALS[0])]
    assert live.keeper.finish(0) == []


def test_a_group_ahead_waits_for_the_groups_behind_or_for_the_wait() -> None:
    live, second, wait = Live((0, 1)), INTERVALS[0], 250_000_000
    for number in (0, 1):
        live.quote(number, second // 2)

    live.quote(0, second + 1, now_ns=10)  # group 0 closes the first bar; group 1 has not yet
    ahead = live.keeper.finishing(10 + wait - 1, wait)
    live.quote(1, second + 2, now_ns=20)  # now every group has closed it
    together = live.keeper.finishing(20, wait)
    for number in together:
        live.keeper.finish(number)
    live.quote(0, 2 * second + 1, now_ns=30)  # group 0 alone closes the second bar
    waited = live.keeper.finishing(30 + wait, wait)

    assert ahead == [] and together == [0, 1] and waited == [0]
    with pytest.raises(StateError, match="finish"):
        live.keeper.groups[0].checkpoint()


def test_a_stream_that_goes_on_past_unhandled_offsets_is_counted_and_named(caplog: pytest.LogCaptureFixture
                                                                          ) -> None:
    live = Live((0,))
    live.quote(0, INTERVALS[0] // 2)  # offset 0
    live.offsets[0] = 5  # offsets 1 to 4 never arrive

    with caplog.at_level("WARNING", logger="streams.features_group"):
        live.quote(0, INTERVALS[0] // 2 + 1)

    assert live.keeper.tally.gaps == 4 and live.keeper.tally.skipped == 0
    assert "records 1 to 4 of ticks.quotes partition 0 were never handled" in caplog.text


def test_offsets_skipped_in_a_compacted_input_are_no_gap(inputs: dict[str, list[bytes]]) -> None:
    k = keeper()
    feed = Feed({t: [] for t in inputs}, k, seed=8)
    mbp10, bbo = inputs[TOPICS.mbp10][:2], inputs[TOPICS.bbo][:2]

    for topic, values in ((TOPICS.mbp10, mbp10), (TOPICS.bbo, bbo)):
        k.handle(0, topic, 0, b"k", values[0], feed.caught_up, 1)
        k.handle(0, topic, 3, b"k", values[1], feed.caught_up, 1)  # offsets 1 and 2 compacted away, or lost

    assert TOPICS.mbp10 in k.compacted and k.tally.gaps == 2  # the two of book.bbo only
