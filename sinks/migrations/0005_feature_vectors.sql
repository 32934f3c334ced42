-- Feature bars as arrays: one feature_vectors row per (instrument, interval, bar) holding every value in a
-- float8[] in the order of its feature set, instead of one feature_bars row per feature (1,483 rows per bar: 3.7M
-- rows/s at 2,500 instruments and 1 s bars). feature_sets maps a set_id to its ordered name list; the view
-- feature_bars gives the long form back with the same columns, so queries written for the table keep working.
-- See docs/sinks.md. The time layout of feature_vectors (BRIN, or a compressed hypertable) is migration 0006, as
-- 0002 is for the tables of 0001.

-- The set id: the first 16 hex digits of the md5 of the names joined by a line break, as a signed bigint;
-- sinks.tables.feature_set_id computes the same value in Python.
CREATE FUNCTION feature_set_id(names text[]) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ('x' || substr(md5(array_to_string(names, E'\n')), 1, 16))::bit(64)::bigint;

-- One feature without unnesting the vector: vals[array_position(names, name)] (NULL for an absent name).
CREATE FUNCTION feature_value(names text[], vals double precision[], name text) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN vals[array_position(names, name)];

CREATE TABLE feature_sets (
    set_id     bigint      PRIMARY KEY,
    names      text[]      NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    -- the id is the hash of exactly these names; a name never contains the separator (nor is NULL)
    CONSTRAINT feature_sets_id CHECK (set_id = feature_set_id(names)),
    CONSTRAINT feature_sets_names CHECK (array_position(names, NULL) IS NULL
                                         AND array_to_string(names, '') NOT LIKE E'%\n%')
);
COMMENT ON TABLE feature_sets IS 'Ordered feature name lists; feature_vectors.vals[i] is the value of names[i]';

CREATE TABLE feature_vectors (
    ts           timestamptz NOT NULL,  -- bar end (exclusive)
    instrument   text        NOT NULL,  -- instrument_id for MBO books, venue:symbol for exchange ticks
    interval_ns  bigint      NOT NULL,
    set_id       bigint      NOT NULL REFERENCES feature_sets,
    vals         double precision[] NOT NULL,  -- NULL elements for features still warming up
    CONSTRAINT feature_vectors_key UNIQUE (instrument, interval_ns, ts)
);
COMMENT ON TABLE feature_vectors IS 'Feature values per instrument per bar, one array per bar (topic features.bars)';
-- Out of line without pglz: feature values are high-entropy doubles that pglz barely shrinks, and compressing
-- every 12 KB vector cost the server most of its insert time (bench/sink.py --table feature_vectors).
ALTER TABLE feature_vectors ALTER COLUMN vals SET STORAGE EXTERNAL;

-- The long rows, one vector per bar with the names in byte order (COLLATE "C": the same order on every server).
CREATE TEMP TABLE feature_bars_grouped ON COMMIT DROP AS
SELECT ts, instrument, interval_ns,
       array_agg(name ORDER BY name COLLATE "C") AS names, array_agg(value ORDER BY name COLLATE "C") AS vals
FROM feature_bars
GROUP BY ts, instrument, interval_ns;

INSERT INTO feature_sets (set_id, names)
SELECT DISTINCT feature_set_id(names), names FROM feature_bars_grouped
ON CONFLICT DO NOTHING;

INSERT INTO feature_vectors (ts, instrument, interval_ns, set_id, vals)
SELECT ts, instrument, interval_ns, feature_set_id(names), vals FROM feature_bars_grouped
ORDER BY ts;

DROP TABLE feature_bars;

CREATE VIEW feature_bars AS
SELECT v.ts, v.instrument, v.interval_ns, f.name, f.value
FROM feature_vectors v
JOIN feature_sets s ON s.set_id = v.set_id
CROSS JOIN LATERAL unnest(s.names, v.vals) AS f(name, value);
COMMENT ON VIEW feature_bars IS 'Feature values one row per feature (the long form of feature_vectors)';
