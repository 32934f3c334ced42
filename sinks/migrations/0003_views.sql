-- Views for humans and Grafana: numeric prices (fixed point / 1e9), mids and spreads, levels one per row.
-- The base tables keep the exact BIGINT fixed-point values; these views cost nothing to keep.

CREATE VIEW v_bbo AS
SELECT ts, instrument_id, publisher_id, sequence,
       bid_px / 1e9 AS bid, bid_sz, bid_ct,
       ask_px / 1e9 AS ask, ask_sz, ask_ct,
       (bid_px + ask_px) / 2e9 AS mid,
       (ask_px - bid_px) / 1e9 AS spread,
       crossed, duplicate, ts_recv_ns, ts_event_ns
FROM bbo;

CREATE VIEW v_mbp10_levels AS
SELECT m.ts, m.instrument_id, m.publisher_id, m.sequence, 'B'::text AS side, l.level::int AS level,
       l.px / 1e9 AS price, l.sz AS size, l.ct AS orders
FROM mbp10 m, unnest(m.bid_px, m.bid_sz, m.bid_ct) WITH ORDINALITY AS l(px, sz, ct, level)
UNION ALL
SELECT m.ts, m.instrument_id, m.publisher_id, m.sequence, 'A'::text, l.level::int,
       l.px / 1e9, l.sz, l.ct
FROM mbp10 m, unnest(m.ask_px, m.ask_sz, m.ask_ct) WITH ORDINALITY AS l(px, sz, ct, level);

CREATE VIEW v_book_trades AS
SELECT ts, instrument_id, publisher_id, sequence, price / 1e9 AS price, size, side,
       CASE WHEN order_id < 0 THEN order_id::numeric + 18446744073709551616 ELSE order_id::numeric END AS order_id,
       synthetic, duplicate, ts_recv_ns, ts_event_ns
FROM book_trades;

CREATE VIEW v_exchange_trades AS
SELECT ts, venue, symbol, trade_id, price / 1e9 AS price, size / 1e9 AS size, side, ts_event_ns, ts_recv_ns
FROM exchange_trades;

CREATE VIEW v_exchange_quotes AS
SELECT ts, venue, symbol, bid_px / 1e9 AS bid, bid_sz / 1e9 AS bid_sz, ask_px / 1e9 AS ask, ask_sz / 1e9 AS ask_sz,
       (bid_px + ask_px) / 2e9 AS mid, (ask_px - bid_px) / 1e9 AS spread, ts_event_ns, ts_recv_ns
FROM exchange_quotes;
