-- TimescaleDB: feature_vectors (migration 0005) becomes a hypertable with compression segmented by instrument, like
-- the tables of 0002_time.timescale.sql. migrate_data moves the bars 0005 took over from the long table into chunks.
-- Dropping the long feature_bars hypertable in 0005 dropped its chunks (compressed ones too) and its compression
-- and retention jobs; `orderflow db migrate` then sets the policies on feature_vectors.

-- A row holds ~12 KB of values (1,483 doubles, stored out of line): at 2,500 instruments and 1 s bars an hour is
-- 9M rows, so hour chunks like the other high-rate tables. Every key column is a segmentby or orderby column.
SELECT create_hypertable('feature_vectors', 'ts', chunk_time_interval => INTERVAL '1 hour', if_not_exists => true,
                         migrate_data => true);
ALTER TABLE feature_vectors SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument',
                                 timescaledb.compress_orderby = 'ts, interval_ns');
