-- orderflow storage: the base tables, one per sink topic, in both modes (TimescaleDB and plain PostgreSQL).
--
-- Prices and sizes are BIGINT 1e-9 fixed point, exactly as on the wire (see docs/sinks.md); the v_* views
-- (0004) expose numeric prices. `ts` is the time axis of each table (microsecond timestamptz): the Databento
-- index timestamp ts_recv for tables derived from the MBO book, the venue's event time for exchange ticks and
-- the bar end for features and signals. Exact nanosecond timestamps are kept in *_ns columns.
-- Every table has its natural key as a UNIQUE constraint, which makes replays insert nothing. The key
-- includes `ts` because a TimescaleDB hypertable requires the time column in every unique index.

CREATE TABLE bbo (
    ts           timestamptz NOT NULL,
    instrument_id bigint     NOT NULL,
    publisher_id integer     NOT NULL,
    sequence     bigint      NOT NULL,
    ts_recv_ns   bigint      NOT NULL,
    ts_event_ns  bigint      NOT NULL,
    bid_px       bigint,
    bid_sz       bigint      NOT NULL,
    bid_ct       bigint      NOT NULL,
    ask_px       bigint,
    ask_sz       bigint      NOT NULL,
    ask_ct       bigint      NOT NULL,
    crossed      boolean     NOT NULL,
    duplicate    boolean     NOT NULL,
    CONSTRAINT bbo_key UNIQUE (instrument_id, ts, publisher_id, ts_recv_ns, sequence)
);
COMMENT ON TABLE bbo IS 'Top of book at each F_LAST consistency point where it changed (topic book.bbo)';

-- Ten levels per side as parallel BIGINT arrays, best level first: one row per snapshot, typed, compact,
-- fast to COPY in binary, and indexable as bid_px[1]; jsonb would be 3x larger, slower to write and
-- would lose the integer type (see docs/sinks.md).
CREATE TABLE mbp10 (
    ts           timestamptz NOT NULL,
    instrument_id bigint     NOT NULL,
    publisher_id integer     NOT NULL,
    sequence     bigint      NOT NULL,
    ts_recv_ns   bigint      NOT NULL,
    ts_event_ns  bigint      NOT NULL,
    bid_px       bigint[]    NOT NULL,
    bid_sz       bigint[]    NOT NULL,
    bid_ct       bigint[]    NOT NULL,
    ask_px       bigint[]    NOT NULL,
    ask_sz       bigint[]    NOT NULL,
    ask_ct       bigint[]    NOT NULL,
    crossed      boolean     NOT NULL,
    duplicate    boolean     NOT NULL,
    CONSTRAINT mbp10_key UNIQUE (instrument_id, ts, publisher_id, ts_recv_ns, sequence)
);
COMMENT ON TABLE mbp10 IS 'Ten aggregated levels per side, best first, as parallel arrays (topic book.mbp10)';

CREATE TABLE book_trades (
    ts           timestamptz NOT NULL,
    instrument_id bigint     NOT NULL,
    publisher_id integer     NOT NULL,
    sequence     bigint      NOT NULL,
    ts_recv_ns   bigint      NOT NULL,
    ts_event_ns  bigint      NOT NULL,
    price        bigint      NOT NULL,
    size         bigint      NOT NULL,
    side         text        NOT NULL,
    order_id     bigint      NOT NULL,  -- uint64 stored as two's complement; v_book_trades shows it as numeric
    synthetic    boolean     NOT NULL,
    duplicate    boolean     NOT NULL,
    -- several trades of one venue message share ts_recv and sequence: the trade's own fields complete the key
    CONSTRAINT book_trades_key UNIQUE (instrument_id, ts, publisher_id, ts_recv_ns, sequence, order_id, side, price,
                                       size, synthetic)
);
COMMENT ON TABLE book_trades IS 'Trades from the MBO feed and synthetic fills of the match policy (topic book.trades)';

CREATE TABLE book_anomalies (
    ts           timestamptz NOT NULL,
    instrument_id bigint     NOT NULL,
    publisher_id integer     NOT NULL,
    sequence     bigint      NOT NULL,
    ts_recv_ns   bigint      NOT NULL,
    ts_event_ns  bigint      NOT NULL,
    kind         text        NOT NULL,
    detail       text        NOT NULL,
    count        bigint      NOT NULL,
    CONSTRAINT book_anomalies_key UNIQUE (instrument_id, ts, publisher_id, ts_recv_ns, sequence, kind)
);
COMMENT ON TABLE book_anomalies IS 'Crossed books, unknown orders, gaps, bad-book flags (topic book.anomalies)';

CREATE TABLE exchange_trades (
    ts           timestamptz NOT NULL,  -- venue trade time
    venue        text        NOT NULL,
    symbol       text        NOT NULL,
    trade_id     text        NOT NULL,
    ts_event_ns  bigint      NOT NULL,
    ts_recv_ns   bigint      NOT NULL,
    price        bigint      NOT NULL,
    size         bigint      NOT NULL,  -- 1e-9 fixed point, base currency
    side         text        NOT NULL,
    CONSTRAINT exchange_trades_key UNIQUE (venue, symbol, trade_id, ts)
);
COMMENT ON TABLE exchange_trades IS 'Normalized crypto exchange trades (topic ticks.trades)';

CREATE TABLE exchange_quotes (
    ts           timestamptz NOT NULL,  -- venue quote time
    venue        text        NOT NULL,
    symbol       text        NOT NULL,
    ts_event_ns  bigint      NOT NULL,
    ts_recv_ns   bigint      NOT NULL,
    bid_px       bigint,
    bid_sz       bigint      NOT NULL,
    ask_px       bigint,
    ask_sz       bigint      NOT NULL,
    CONSTRAINT exchange_quotes_key UNIQUE (venue, symbol, ts, ts_event_ns, ts_recv_ns)
);
COMMENT ON TABLE exchange_quotes IS 'Normalized exchange best bid/offer (topic ticks.quotes)';

-- Long form: one row per (instrument, bar, feature). New features need no migration, Grafana picks a feature
-- with a template variable, and a NULL (warming up) costs one row instead of a sparse column.
CREATE TABLE feature_bars (
    ts           timestamptz NOT NULL,  -- bar end (exclusive)
    instrument   text        NOT NULL,  -- instrument_id for MBO books, venue:symbol for exchange ticks
    interval_ns  bigint      NOT NULL,
    name         text        NOT NULL,
    value        double precision,
    CONSTRAINT feature_bars_key UNIQUE (instrument, interval_ns, name, ts)
);
COMMENT ON TABLE feature_bars IS 'Feature values per instrument per bar, long form (topic features.bars)';

CREATE TABLE regime_signals (
    ts           timestamptz NOT NULL,  -- bar end
    instrument   text        NOT NULL,
    interval_ns  bigint      NOT NULL,
    kind         text        NOT NULL,
    state        text        NOT NULL,
    probability  double precision NOT NULL,
    changed      boolean     NOT NULL,
    CONSTRAINT regime_signals_key UNIQUE (instrument, kind, interval_ns, ts)
);
COMMENT ON TABLE regime_signals IS 'Regime states per instrument per bar (topic signals.regime)';
