"""The topic catalog: every Kafka topic orderflow reads or writes, with its key, partitions and retention.

The catalog is the single source of truth for topic creation (``orderflow stack up`` and the tests create
topics from it) and for what each topic carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    """One Kafka topic: its name, what its key is, how it is partitioned and kept."""

    name: str
    key: str  # what the message key holds, e.g. "instrument_id" or "venue:symbol"
    value: str  # the record type (a Struct name in topics.records) the value decodes to
    partitions: int
    cleanup_policy: str = "delete"  # "delete", "compact" or "compact,delete"
    retention_ms: int = 7 * DAY_MS
    description: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)
    # A value is one record or a frame: a JSON array of consecutive records of the key (topics.codec.decode_records)
    framed: bool = False

    def config(self) -> dict[str, str]:
        """Topic-level configs as Kafka's admin API takes them."""
        cfg = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        cfg.update(self.extra_config)
        return cfg


MBO_FRAMES = TopicSpec(
    "mbo.frames", "instrument_id", "MboFrame", 8, retention_ms=2 * DAY_MS,
    description="Framed MBO records of one instrument, never splitting an F_LAST event",
    extra_config={"max.message.bytes": str(8 * 1024 * 1024)},
)
TICKS_TRADES = TopicSpec(
    "ticks.trades", "venue:symbol", "TradeTick", 8, description="Normalized exchange trades", framed=True,
)
TICKS_QUOTES = TopicSpec(
    "ticks.quotes", "venue:symbol", "QuoteTick", 8, description="Normalized exchange best bid/ask quotes",
    framed=True,
)
TICKS_BOOK = TopicSpec(
    "ticks.book", "venue:symbol", "L2Update", 8, retention_ms=2 * DAY_MS,
    description="Normalized exchange L2 book updates (validated by the venue's sequence/checksum rules)",
    framed=True,
)
BOOK_BBO = TopicSpec(
    "book.bbo", "instrument_id", "BboUpdate", 8, description="Top of book, published when it changes",
    framed=True,
)
BOOK_MBP10 = TopicSpec(
    "book.mbp10", "instrument_id", "Mbp10Snapshot", 8, cleanup_policy="compact,delete",
    retention_ms=2 * DAY_MS, description="Ten levels per side, at most one per instrument per interval",
)
BOOK_TRADES = TopicSpec(
    "book.trades", "instrument_id", "BookTrade", 8, description="Trades seen in the MBO feed, and synthetic fills",
    framed=True,
)
BOOK_ANOMALIES = TopicSpec(
    "book.anomalies", "instrument_id", "BookAnomaly", 8, retention_ms=30 * DAY_MS,
    description="Crossed books, unknown orders, sequence gaps, F_MAYBE_BAD_BOOK",
)
FEATURES_BARS = TopicSpec(
    "features.bars", "instrument_id", "FeatureBar", 8, description="Feature vectors per instrument per bar"
)
SIGNALS_REGIME = TopicSpec(
    "signals.regime", "instrument_id", "RegimeSignal", 8, description="Regime states and changes"
)
DEAD_LETTER = TopicSpec(
    "orderflow.deadletter", "source topic", "DeadLetter", 1, retention_ms=30 * DAY_MS,
    description="Malformed input with the reason and where it came from",
    extra_config={"max.message.bytes": str(16 * 1024 * 1024)},
)

CATALOG: tuple[TopicSpec, ...] = (
    MBO_FRAMES,
    TICKS_TRADES,
    TICKS_QUOTES,
    TICKS_BOOK,
    BOOK_BBO,
    BOOK_MBP10,
    BOOK_TRADES,
    BOOK_ANOMALIES,
    FEATURES_BARS,
    SIGNALS_REGIME,
    DEAD_LETTER,
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in CATALOG}
FRAMED_TYPES = frozenset(spec.value for spec in CATALOG if spec.framed)  # record types published in frames
COMPACTED_TYPES = frozenset(spec.value for spec in CATALOG if "compact" in spec.cleanup_policy)  # offsets may skip


def topic(name: str) -> TopicSpec:
    """The catalog entry for ``name``; raises ``KeyError`` naming the known topics if there is none."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(BY_NAME)}") from None
