-- TimescaleDB: every base table becomes a hypertable on `ts`, with compression segmented by instrument.
-- Chunk intervals aim at chunks that fit comfortably in memory at the rates the pipeline sustains (~100k BBO
-- updates/s peak): hot, high-rate tables get 1 hour, low-rate ones a day or a week. Compression, retention and
-- refresh policies are applied by `orderflow db migrate` from the settings (ORDERFLOW_DB_*), not here.
-- Every natural-key column is a segmentby or orderby column, so unique checks on compressed chunks (replays of
-- old data, TimescaleDB >= 2.11) can use the compressed batches' metadata.
SELECT create_hypertable('bbo',             'ts', chunk_time_interval => INTERVAL '1 hour', if_not_exists => true);
SELECT create_hypertable('mbp10',           'ts', chunk_time_interval => INTERVAL '1 hour', if_not_exists => true);
SELECT create_hypertable('book_trades',     'ts', chunk_time_interval => INTERVAL '1 day',  if_not_exists => true);
SELECT create_hypertable('book_anomalies',  'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => true);
SELECT create_hypertable('exchange_trades', 'ts', chunk_time_interval => INTERVAL '1 day',  if_not_exists => true);
SELECT create_hypertable('exchange_quotes', 'ts', chunk_time_interval => INTERVAL '1 hour', if_not_exists => true);
SELECT create_hypertable('feature_bars',    'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => true);
SELECT create_hypertable('regime_signals',  'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => true);

CREATE INDEX exchange_trades_symbol_ts ON exchange_trades (venue, symbol, ts DESC);

ALTER TABLE bbo SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument_id, publisher_id',
                     timescaledb.compress_orderby = 'ts, ts_recv_ns, sequence');
ALTER TABLE mbp10 SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument_id, publisher_id',
                       timescaledb.compress_orderby = 'ts, ts_recv_ns, sequence');
ALTER TABLE book_trades SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument_id, publisher_id',
                             timescaledb.compress_orderby =
                                 'ts, ts_recv_ns, sequence, order_id, side, price, size, synthetic');
ALTER TABLE book_anomalies SET (timescaledb.compress,
                                timescaledb.compress_segmentby = 'instrument_id, publisher_id',
                                timescaledb.compress_orderby = 'ts, ts_recv_ns, sequence, kind');
ALTER TABLE exchange_trades SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, symbol',
                                 timescaledb.compress_orderby = 'ts, trade_id');
ALTER TABLE exchange_quotes SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, symbol',
                                 timescaledb.compress_orderby = 'ts, ts_event_ns, ts_recv_ns');
ALTER TABLE feature_bars SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument, name',
                              timescaledb.compress_orderby = 'ts, interval_ns');
ALTER TABLE regime_signals SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument, kind',
                                timescaledb.compress_orderby = 'ts, interval_ns');
