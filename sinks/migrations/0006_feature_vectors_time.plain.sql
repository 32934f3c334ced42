-- Plain PostgreSQL: feature_vectors (migration 0005) stays a plain table, like the tables of 0002_time.plain.sql.
-- Bars arrive in time order: a tiny BRIN index serves time ranges, the key's btree per-instrument queries.
CREATE INDEX feature_vectors_ts_brin ON feature_vectors USING brin (ts) WITH (pages_per_range = 32);
