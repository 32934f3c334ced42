-- Plain PostgreSQL stand-ins for the TimescaleDB continuous aggregates (0004_aggregates.timescale.sql): the same
-- columns and rows, as materialized views refreshed by `orderflow db refresh` (REFRESH ... CONCURRENTLY, which
-- needs the unique indexes below). date_bin with TimescaleDB's default origin (2000-01-03) buckets exactly like
-- time_bucket; first()/last() become array_agg(... ORDER BY ts_recv_ns)[1]. Ties on ts_recv_ns within one bucket
-- may pick a different row than TimescaleDB's first()/last() would.

CREATE MATERIALIZED VIEW bbo_1s AS
SELECT date_bin(INTERVAL '1 second', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket, instrument_id, publisher_id,
       count(*) AS updates,
       (array_agg(bid_px + ask_px ORDER BY ts_recv_ns))[1] / 2e9 AS mid_open,
       max(bid_px + ask_px) / 2e9 AS mid_high,
       min(bid_px + ask_px) / 2e9 AS mid_low,
       (array_agg(bid_px + ask_px ORDER BY ts_recv_ns DESC))[1] / 2e9 AS mid_close,
       (array_agg(bid_px ORDER BY ts_recv_ns DESC))[1] / 1e9 AS bid_close,
       (array_agg(ask_px ORDER BY ts_recv_ns DESC))[1] / 1e9 AS ask_close,
       avg(ask_px - bid_px) / 1e9 AS spread_avg,
       min(ask_px - bid_px) / 1e9 AS spread_min,
       max(ask_px - bid_px) / 1e9 AS spread_max,
       sum(crossed::int) AS crossed_updates
FROM bbo
WHERE bid_px IS NOT NULL AND ask_px IS NOT NULL
GROUP BY 1, 2, 3
WITH DATA;

CREATE MATERIALIZED VIEW bbo_1m AS
SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket, instrument_id, publisher_id,
       count(*) AS updates,
       (array_agg(bid_px + ask_px ORDER BY ts_recv_ns))[1] / 2e9 AS mid_open,
       max(bid_px + ask_px) / 2e9 AS mid_high,
       min(bid_px + ask_px) / 2e9 AS mid_low,
       (array_agg(bid_px + ask_px ORDER BY ts_recv_ns DESC))[1] / 2e9 AS mid_close,
       (array_agg(bid_px ORDER BY ts_recv_ns DESC))[1] / 1e9 AS bid_close,
       (array_agg(ask_px ORDER BY ts_recv_ns DESC))[1] / 1e9 AS ask_close,
       avg(ask_px - bid_px) / 1e9 AS spread_avg,
       min(ask_px - bid_px) / 1e9 AS spread_min,
       max(ask_px - bid_px) / 1e9 AS spread_max,
       sum(crossed::int) AS crossed_updates
FROM bbo
WHERE bid_px IS NOT NULL AND ask_px IS NOT NULL
GROUP BY 1, 2, 3
WITH DATA;

CREATE MATERIALIZED VIEW book_ohlcv_1m AS
SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket, instrument_id, publisher_id,
       (array_agg(price ORDER BY ts_recv_ns))[1] / 1e9 AS open,
       max(price) / 1e9 AS high,
       min(price) / 1e9 AS low,
       (array_agg(price ORDER BY ts_recv_ns DESC))[1] / 1e9 AS close,
       sum(size) AS volume,
       count(*) AS trades,
       sum(price::numeric * size) / nullif(sum(size), 0) / 1e9 AS vwap
FROM book_trades
WHERE NOT synthetic
GROUP BY 1, 2, 3
WITH DATA;

CREATE MATERIALIZED VIEW exchange_ohlcv_1m AS
SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket, venue, symbol,
       (array_agg(price ORDER BY ts_recv_ns))[1] / 1e9 AS open,
       max(price) / 1e9 AS high,
       min(price) / 1e9 AS low,
       (array_agg(price ORDER BY ts_recv_ns DESC))[1] / 1e9 AS close,
       sum(size) / 1e9 AS volume,
       count(*) AS trades,
       sum(price::numeric * size) / nullif(sum(size), 0) / 1e9 AS vwap
FROM exchange_trades
GROUP BY 1, 2, 3
WITH DATA;

CREATE UNIQUE INDEX bbo_1s_key ON bbo_1s (bucket, instrument_id, publisher_id);
CREATE UNIQUE INDEX bbo_1m_key ON bbo_1m (bucket, instrument_id, publisher_id);
CREATE UNIQUE INDEX book_ohlcv_1m_key ON book_ohlcv_1m (bucket, instrument_id, publisher_id);
CREATE UNIQUE INDEX exchange_ohlcv_1m_key ON exchange_ohlcv_1m (bucket, venue, symbol);
