-- Plain PostgreSQL: the base tables stay plain tables. Rows arrive in time order, so a BRIN index on `ts` is
-- tiny and lets time-range scans skip most of the table; per-instrument queries use the natural-key index,
-- which leads with (instrument_id, ts) / (venue, symbol, trade_id, ts).
CREATE INDEX bbo_ts_brin             ON bbo             USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX mbp10_ts_brin           ON mbp10           USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX book_trades_ts_brin     ON book_trades     USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX book_anomalies_ts_brin  ON book_anomalies  USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX exchange_trades_ts_brin ON exchange_trades USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX exchange_quotes_ts_brin ON exchange_quotes USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX feature_bars_ts_brin    ON feature_bars    USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX regime_signals_ts_brin  ON regime_signals  USING brin (ts) WITH (pages_per_range = 32);
-- exchange trades are looked up by symbol and time (the key leads with trade_id after the symbol)
CREATE INDEX exchange_trades_symbol_ts ON exchange_trades (venue, symbol, ts);
