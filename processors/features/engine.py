"""The feature engine: instruments, events in, bars out, checkpoints. Pure: the caller gives every time.

    engine = FeatureEngine(FeatureConfig(assets={"binance:BTCUSDT": "BTC", "binance_futures:BTCUSDT": "BTC"}))
    engine.advance_to(ts)            # opens the first bar (the one containing ts)
    engine.feed(record)              # BboUpdate, Mbp10Snapshot, BookTrade, QuoteTick or TradeTick
    frames = engine.advance_to(ts)   # closes every bar that ended at or before ts, of every interval
    bars = engine.close_to(ts); ...; frames = engine.finish()   # the same in two halves: bar series first
    blob = engine.checkpoint(); engine2 = FeatureEngine.restore(blob)   # identical later bars
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from processors.features.catalog import FeatureSpec
from processors.features.config import FeatureConfig
from processors.features.errors import ConfigError, UnknownRecordError
from processors.features.frame import BarSeries, FeatureFrame
from processors.features.inputs import FIX, NAN, EventSink, Quotes
from processors.features.interval import IntervalEngine
from processors.features.state import pack, unpack
from topics.records import BboUpdate, BookTrade, Mbp10Snapshot, QuoteTick, TradeTick

logger = logging.getLogger(__name__)

Record = BboUpdate | Mbp10Snapshot | BookTrade | QuoteTick | TradeTick
STATE_KIND = "orderflow.features"
STATE_VERSION = 1


def instrument_key(rec: Record) -> str:
    """The instrument name a record's features are published under: the instrument_id for MBO-derived records,
    ``venue:symbol`` for exchange ticks."""
    if isinstance(rec, QuoteTick | TradeTick):
        return f"{rec.venue}:{rec.symbol}"
    return str(rec.instrument_id)


def _px(p: int | None) -> float:
    return NAN if p is None else p * FIX


class FeatureEngine:
    """Features of every instrument for every configured bar interval."""

    def __init__(self, config: FeatureConfig | None = None, capacity: int = 16) -> None:
        self.config = config or FeatureConfig()
        self.capacity = max(1, capacity)
        self.instruments: list[str] = []
        self.slots: dict[str, int] = {}
        self.peers = np.full(self.capacity, -1, dtype=np.int64)
        self.groups: dict[str, list[int]] = {}
        self.quotes = Quotes()
        self.intervals = [IntervalEngine(iv, self.config, self.capacity) for iv in self.config.intervals_ns]
        self.sink = EventSink(self.quotes, [iv.acc for iv in self.intervals])
        self._feeders: dict[type, Callable[[Any, str], None]] = {
            BboUpdate: self._feed_bbo, QuoteTick: self._feed_quote, BookTrade: self._feed_book_trade,
            TradeTick: self._feed_trade, Mbp10Snapshot: self._feed_depth}

    # ------------------------------------------------------------------------------------------- catalog
    def specs(self, interval_ns: int | None = None) -> list[FeatureSpec]:
        """The features of one interval (all intervals have the same ones), in column order."""
        return self._interval(interval_ns).specs

    def names(self, interval_ns: int | None = None) -> tuple[str, ...]:
        return self._interval(interval_ns).names

    def _interval(self, interval_ns: int | None) -> IntervalEngine:
        for iv in self.intervals:
            if interval_ns is None or iv.interval_ns == interval_ns:
                return iv
        raise ConfigError(f"no interval of {interval_ns} ns; configured: {self.config.intervals_ns}")

    # ------------------------------------------------------------------------------------------- events
    def slot(self, instrument: str) -> int:
        """The slot of ``instrument``, registering it (empty, warming up) the first time."""
        s = self.slots.get(instrument)
        if s is None:
            s = self._register(instrument)
        return s

    def _register(self, instrument: str) -> int:
        for iv in self.intervals:  # a closed bar's features come from the slots and peers it was closed with
            iv.settle()
        s = len(self.instruments)
        if s >= self.capacity:
            self._grow(2 * self.capacity)
        self.instruments.append(instrument)
        self.slots[instrument] = s
        self.quotes.add_slot()
        for iv in self.intervals:
            iv.acc.add_slot()
        asset = self.config.assets.get(instrument)
        if asset is not None:
            self.groups.setdefault(asset, []).append(s)
            self._assign_peers(self.groups[asset])
        return s

    def _grow(self, capacity: int) -> None:
        peers = np.full(capacity, -1, dtype=np.int64)
        peers[: self.capacity] = self.peers
        self.peers = peers
        for iv in self.intervals:
            iv.grow(capacity)
        self.capacity = capacity

    def _assign_peers(self, group: list[int]) -> None:
        """Each venue of an asset is compared with the first one registered; the first with the second."""
        want = {s: group[0] for s in group[1:]}
        if len(group) > 1:
            want[group[0]] = group[1]
        changed = np.array([s for s, p in want.items() if self.peers[s] != p], dtype=np.int64)
        for s, p in want.items():
            self.peers[s] = p
        if changed.size:
            for iv in self.intervals:
                if iv.t > 0:
                    iv.recompute_pairs(changed, self.peers)

    def feed(self, rec: Record) -> None:
        """Take in one event for the open bar. Duplicates (re-published after recovery) and synthetic fills are
        ignored; MBP-10 snapshots give the depth, BBO updates and quote ticks the L1 quote."""
        take = self._feeders.get(type(rec))
        if take is None:
            raise UnknownRecordError(f"the feature engine does not take {type(rec).__name__}")
        take(rec, instrument_key(rec))

    def _feed_bbo(self, rec: BboUpdate, key: str) -> None:
        if not rec.duplicate:
            self.sink.quote(self.slot(key), _px(rec.bid_px), _sz(rec.bid_px, rec.bid_sz, 1.0), _px(rec.ask_px),
                            _sz(rec.ask_px, rec.ask_sz, 1.0))

    def _feed_quote(self, rec: QuoteTick, key: str) -> None:
        self.sink.quote(self.slot(key), _px(rec.bid_px), _sz(rec.bid_px, rec.bid_sz, FIX), _px(rec.ask_px),
                        _sz(rec.ask_px, rec.ask_sz, FIX))

    def _feed_book_trade(self, rec: BookTrade, key: str) -> None:
        if not (rec.duplicate or rec.synthetic):
            self.sink.trade(self.slot(key), rec.price * FIX, float(rec.size), rec.side)

    def _feed_trade(self, rec: TradeTick, key: str) -> None:
        self.sink.trade(self.slot(key), rec.price * FIX, rec.size * FIX, rec.side)

    def _feed_depth(self, rec: Mbp10Snapshot, key: str) -> None:
        if not rec.duplicate:
            self.sink.depth(self.slot(key), [(lv.price * FIX, float(lv.size)) for lv in rec.bids],
                            [(lv.price * FIX, float(lv.size)) for lv in rec.asks])

    # ------------------------------------------------------------------------------------------- bars
    def advance_to(self, ts_ns: int) -> list[FeatureFrame]:
        """Close every bar (of every interval) that ends at or before ``ts_ns``, oldest first: :meth:`close_to`
        then :meth:`finish`.

        The first call opens the bar containing ``ts_ns``. Empty bars in between are closed too (quiet bars);
        when more than ``max_gap_bars`` are due, they are skipped and the rolling state starts over.
        """
        self.close_to(ts_ns)
        return self.finish()

    def close_to(self, ts_ns: int) -> list[BarSeries]:
        """The first half of :meth:`advance_to`: close every bar due and return its bar series (all the regime
        signals need, oldest first); the rest of its features come from :meth:`finish`, which may wait while
        events of the next bars are fed. They are the features :meth:`advance_to` gives."""
        out: list[BarSeries] = []
        for iv in self.intervals:
            if iv.bar_end is None:
                iv.bar_end = (ts_ns // iv.interval_ns + 1) * iv.interval_ns
                continue
            due = (ts_ns - iv.bar_end) // iv.interval_ns + 1
            if due > self.config.max_gap_bars:
                iv.restart((ts_ns // iv.interval_ns + 1) * iv.interval_ns)
                continue
            if due > 0:
                quotes = self.quotes.arrays(len(self.instruments))
                out.extend(iv.close(quotes, self.instruments, self.peers) for _ in range(due))
        out.sort(key=lambda b: (b.ts_event, b.interval_ns))
        return out

    def finish(self) -> list[FeatureFrame]:
        """Every feature of the bars closed since the last call, oldest first."""
        frames = [frame for iv in self.intervals for frame in iv.finish()]
        frames.sort(key=lambda f: (f.ts_event, f.interval_ns))
        return frames

    @property
    def unfinished(self) -> bool:
        """Bars closed by :meth:`close_to` whose frames :meth:`finish` has not returned yet."""
        return any(iv.unfinished for iv in self.intervals)

    # ------------------------------------------------------------------------------------------- state
    def checkpoint(self) -> bytes:
        """Everything needed to continue exactly where this engine is (config included), as bytes; refused
        (:class:`StateError`) while closed bars wait for :meth:`finish`."""
        meta: dict[str, Any] = {
            "config": msgspec.to_builtins(self.config),
            "instruments": self.instruments,
            "capacity": self.capacity,
            "bars": [[iv.t, iv.bar_end] for iv in self.intervals],
        }
        arrays = {f"quotes.{k}": v for k, v in self.quotes.arrays(len(self.instruments)).items()}
        for i, iv in enumerate(self.intervals):
            arrays.update(iv.state(f"iv{i}.", len(self.instruments)))
        return pack(STATE_KIND, STATE_VERSION, meta, arrays)

    @classmethod
    def restore(cls, blob: bytes) -> FeatureEngine:
        """The engine a :meth:`checkpoint` was taken from."""
        meta, arrays = unpack(blob, STATE_KIND, STATE_VERSION)
        config = msgspec.convert(meta["config"], FeatureConfig)
        engine = cls(config, capacity=meta["capacity"])
        for name in meta["instruments"]:
            engine.slot(name)
        engine.quotes.load({k[7:]: v for k, v in arrays.items() if k.startswith("quotes.")})
        for i, (iv, (t, bar_end)) in enumerate(zip(engine.intervals, meta["bars"], strict=True)):
            iv.load(arrays, f"iv{i}.", engine.capacity)
            iv.t, iv.bar_end = t, bar_end
        return engine


def _sz(px: int | None, size: int, scale: float) -> float:
    return NAN if px is None else size * scale
