-- TimescaleDB continuous aggregates: 1-second and 1-minute BBO bars (mid OHLC, spread), 1-minute OHLCV from
-- the MBO trades and from exchange trades. Real-time aggregation is on (materialized_only = false), so the
-- newest bucket is always current. Prices are numeric (fixed point / 1e9). Refresh policies are applied by
-- `orderflow db migrate` from the settings. The plain-PostgreSQL stand-ins (0004_aggregates.plain.sql) return
-- the same rows after `orderflow db refresh`.

CREATE MATERIALIZED VIEW bbo_1s WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 second', ts) AS bucket, instrument_id, publisher_id,
       count(*) AS updates,
       first(bid_px + ask_px, ts_recv_ns) / 2e9 AS mid_open,
       max(bid_px + ask_px) / 2e9 AS mid_high,
       min(bid_px + ask_px) / 2e9 AS mid_low,
       last(bid_px + ask_px, ts_recv_ns) / 2e9 AS mid_close,
       last(bid_px, ts_recv_ns) / 1e9 AS bid_close,
       last(ask_px, ts_recv_ns) / 1e9 AS ask_close,
       avg(ask_px - bid_px) / 1e9 AS spread_avg,
       min(ask_px - bid_px) / 1e9 AS spread_min,
       max(ask_px - bid_px) / 1e9 AS spread_max,
       sum(crossed::int) AS crossed_updates
FROM bbo
WHERE bid_px IS NOT NULL AND ask_px IS NOT NULL
GROUP BY bucket, instrument_id, publisher_id
WITH NO DATA;

CREATE MATERIALIZED VIEW bbo_1m WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, instrument_id, publisher_id,
       count(*) AS updates,
       first(bid_px + ask_px, ts_recv_ns) / 2e9 AS mid_open,
       max(bid_px + ask_px) / 2e9 AS mid_high,
       min(bid_px + ask_px) / 2e9 AS mid_low,
       last(bid_px + ask_px, ts_recv_ns) / 2e9 AS mid_close,
       last(bid_px, ts_recv_ns) / 1e9 AS bid_close,
       last(ask_px, ts_recv_ns) / 1e9 AS ask_close,
       avg(ask_px - bid_px) / 1e9 AS spread_avg,
       min(ask_px - bid_px) / 1e9 AS spread_min,
       max(ask_px - bid_px) / 1e9 AS spread_max,
       sum(crossed::int) AS crossed_updates
FROM bbo
WHERE bid_px IS NOT NULL AND ask_px IS NOT NULL
GROUP BY bucket, instrument_id, publisher_id
WITH NO DATA;

CREATE MATERIALIZED VIEW book_ohlcv_1m WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, instrument_id, publisher_id,
       first(price, ts_recv_ns) / 1e9 AS open,
       max(price) / 1e9 AS high,
       min(price) / 1e9 AS low,
       last(price, ts_recv_ns) / 1e9 AS close,
       sum(size) AS volume,
       count(*) AS trades,
       sum(price::numeric * size) / nullif(sum(size), 0) / 1e9 AS vwap
FROM book_trades
WHERE NOT synthetic
GROUP BY bucket, instrument_id, publisher_id
WITH NO DATA;

CREATE MATERIALIZED VIEW exchange_ohlcv_1m WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, venue, symbol,
       first(price, ts_recv_ns) / 1e9 AS open,
       max(price) / 1e9 AS high,
       min(price) / 1e9 AS low,
       last(price, ts_recv_ns) / 1e9 AS close,
       sum(size) / 1e9 AS volume,
       count(*) AS trades,
       sum(price::numeric * size) / nullif(sum(size), 0) / 1e9 AS vwap
FROM exchange_trades
GROUP BY bucket, venue, symbol
WITH NO DATA;
