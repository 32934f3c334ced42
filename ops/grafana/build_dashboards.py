"""Writes the Grafana dashboards in ``ops/grafana/dashboards/`` from the panel lists below.

Run ``python ops/grafana/build_dashboards.py`` after editing; ``tests/sinks/test_grafana.py`` checks that the JSON
files are what this script writes, and runs every PostgreSQL panel's SQL against the schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
PG = {"type": "postgres", "uid": "orderflow-pg"}
PROM = {"type": "prometheus", "uid": "orderflow-prom"}

INSTRUMENT = "instrument_id IN ($instrument)"


def sql(title: str, query: str, kind: str = "timeseries", fmt: str = "time_series", unit: str = "",
        w: int = 12, h: int = 8) -> dict[str, Any]:
    return {"title": title, "type": kind, "datasource": PG, "w": w, "h": h, "unit": unit,
            "targets": [{"refId": "A", "datasource": PG, "editorMode": "code", "rawQuery": True, "format": fmt,
                         "rawSql": " ".join(query.split())}]}


def prom(title: str, exprs: dict[str, str], unit: str = "", kind: str = "timeseries", w: int = 12,
         h: int = 8) -> dict[str, Any]:
    targets = [{"refId": chr(65 + i), "datasource": PROM, "expr": expr, "legendFormat": legend}
               for i, (legend, expr) in enumerate(exprs.items())]
    return {"title": title, "type": kind, "datasource": PROM, "w": w, "h": h, "unit": unit, "targets": targets}


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": PG, "query": query,
            "definition": query, "refresh": 2, "multi": True, "includeAll": True, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


INSTRUMENT_VAR = variable("instrument", "SELECT DISTINCT instrument_id FROM bbo_1m ORDER BY 1", "Instrument")
SYMBOL_VAR = variable("symbol", "SELECT DISTINCT venue || ':' || symbol FROM exchange_ohlcv_1m ORDER BY 1",
                      "Exchange symbol")
# feature names from the few stored name lists, not from the vectors (the view feature_bars would unnest them all)
FEATURE_VAR = variable("feature", "SELECT DISTINCT unnest(names) FROM feature_sets ORDER BY 1", "Feature")

PRICE = [
    sql("Mid price (1 s bars)", f"""
        SELECT $__timeGroupAlias(bucket, $__interval), instrument_id::text AS metric,
               (array_agg(mid_close ORDER BY bucket DESC))[1] AS mid
        FROM bbo_1s WHERE $__timeFilter(bucket) AND {INSTRUMENT} GROUP BY 1, 2 ORDER BY 1"""),
    sql("Spread: average, min, max (1 s bars)", f"""
        SELECT $__timeGroupAlias(bucket, $__interval), avg(spread_avg) AS "avg spread",
               min(spread_min) AS "min spread", max(spread_max) AS "max spread"
        FROM bbo_1s WHERE $__timeFilter(bucket) AND {INSTRUMENT} GROUP BY 1 ORDER BY 1"""),
    sql("Bid and ask (raw BBO updates)", f"""
        SELECT ts AS "time", instrument_id::text || ' bid' AS metric, bid AS value FROM v_bbo
        WHERE $__timeFilter(ts) AND {INSTRUMENT} AND bid IS NOT NULL
        UNION ALL
        SELECT ts, instrument_id::text || ' ask', ask FROM v_bbo
        WHERE $__timeFilter(ts) AND {INSTRUMENT} AND ask IS NOT NULL
        ORDER BY 1 LIMIT 20000"""),
    sql("BBO updates per minute", f"""
        SELECT bucket AS "time", instrument_id::text AS metric, updates FROM bbo_1m
        WHERE $__timeFilter(bucket) AND {INSTRUMENT} ORDER BY 1"""),
    sql("Last BBO per instrument", f"""
        SELECT DISTINCT ON (instrument_id) instrument_id, ts, bid, bid_sz, ask, ask_sz, spread, crossed
        FROM v_bbo WHERE $__timeFilter(ts) AND {INSTRUMENT} ORDER BY instrument_id, ts DESC""",
        kind="table", fmt="table", w=24),
    # each chosen feature's position is looked up once per feature set, then read as vals[i] from every vector
    sql("Features", """
        SELECT v.ts AS "time", v.instrument || ' ' || f.name AS metric, v.vals[f.i] AS value
        FROM feature_vectors v
        JOIN (SELECT s.set_id, n.name, n.i FROM feature_sets s, unnest(s.names) WITH ORDINALITY AS n(name, i)
              WHERE n.name IN ($feature)) f ON f.set_id = v.set_id
        WHERE $__timeFilter(v.ts) AND v.vals[f.i] IS NOT NULL ORDER BY 1"""),
    sql("Regime changes", """
        SELECT ts, instrument, kind, state, probability FROM regime_signals
        WHERE $__timeFilter(ts) AND changed ORDER BY ts DESC LIMIT 200""", kind="table", fmt="table"),
]

DEPTH = [
    sql("Latest ten levels (selected instruments)", f"""
        SELECT l.instrument_id, l.side, l.level, l.price, l.size, l.orders FROM v_mbp10_levels l
        JOIN (SELECT instrument_id, max(ts) AS ts FROM mbp10 WHERE $__timeFilter(ts) AND {INSTRUMENT}
              GROUP BY 1) last USING (instrument_id, ts)
        ORDER BY l.instrument_id, l.side DESC, l.level""", kind="table", fmt="table", w=12, h=12),
    sql("Resting size within ten levels", f"""
        SELECT $__timeGroupAlias(ts, $__interval),
               avg((SELECT sum(s) FROM unnest(bid_sz) s)) AS "bid size (10 levels)",
               avg((SELECT sum(s) FROM unnest(ask_sz) s)) AS "ask size (10 levels)"
        FROM mbp10 WHERE $__timeFilter(ts) AND {INSTRUMENT} GROUP BY 1 ORDER BY 1""", w=12, h=12),
    sql("Top-of-book imbalance (bid - ask) / (bid + ask)", f"""
        SELECT $__timeGroupAlias(ts, $__interval), instrument_id::text AS metric,
               avg((bid_sz - ask_sz)::float8 / nullif(bid_sz + ask_sz, 0)) AS imbalance
        FROM bbo WHERE $__timeFilter(ts) AND {INSTRUMENT} GROUP BY 1, 2 ORDER BY 1"""),
    sql("Orders at the best levels", f"""
        SELECT $__timeGroupAlias(ts, $__interval), avg(bid_ct) AS "bid orders", avg(ask_ct) AS "ask orders"
        FROM bbo WHERE $__timeFilter(ts) AND {INSTRUMENT} GROUP BY 1 ORDER BY 1"""),
]

TRADES = [
    sql("Close and VWAP (MBO trades, 1 min)", f"""
        SELECT bucket AS "time", instrument_id::text || ' close' AS metric, close AS value FROM book_ohlcv_1m
        WHERE $__timeFilter(bucket) AND {INSTRUMENT}
        UNION ALL
        SELECT bucket, instrument_id::text || ' vwap', vwap FROM book_ohlcv_1m
        WHERE $__timeFilter(bucket) AND {INSTRUMENT} ORDER BY 1"""),
    sql("Volume per minute (MBO trades)", f"""
        SELECT bucket AS "time", instrument_id::text AS metric, volume FROM book_ohlcv_1m
        WHERE $__timeFilter(bucket) AND {INSTRUMENT} ORDER BY 1""", kind="barchart"),
    sql("Exchange trades: close (1 min)", """
        SELECT bucket AS "time", venue || ':' || symbol AS metric, close FROM exchange_ohlcv_1m
        WHERE $__timeFilter(bucket) AND venue || ':' || symbol IN ($symbol) ORDER BY 1"""),
    sql("Exchange trades: volume per minute", """
        SELECT bucket AS "time", venue || ':' || symbol AS metric, volume FROM exchange_ohlcv_1m
        WHERE $__timeFilter(bucket) AND venue || ':' || symbol IN ($symbol) ORDER BY 1"""),
    sql("Trades per interval by aggressor side", f"""
        SELECT $__timeGroupAlias(ts, $__interval), side AS metric, count(*) AS trades FROM book_trades
        WHERE $__timeFilter(ts) AND {INSTRUMENT} AND NOT synthetic GROUP BY 1, 2 ORDER BY 1"""),
    sql("Latest trades", f"""
        SELECT ts, instrument_id, price, size, side, synthetic FROM v_book_trades
        WHERE $__timeFilter(ts) AND {INSTRUMENT} ORDER BY ts DESC LIMIT 100""", kind="table", fmt="table"),
]

ANOMALIES = [
    sql("Anomalies per interval by kind", """
        SELECT $__timeGroupAlias(ts, $__interval), kind AS metric, sum(count) AS occurrences FROM book_anomalies
        WHERE $__timeFilter(ts) AND instrument_id IN ($instrument) GROUP BY 1, 2 ORDER BY 1""", kind="barchart"),
    sql("Crossed BBO updates per minute", f"""
        SELECT bucket AS "time", instrument_id::text AS metric, crossed_updates FROM bbo_1m
        WHERE $__timeFilter(bucket) AND {INSTRUMENT} ORDER BY 1"""),
    sql("Anomalies in range", """
        SELECT kind, count(*) AS records, sum(count) AS occurrences FROM book_anomalies
        WHERE $__timeFilter(ts) GROUP BY 1 ORDER BY 3 DESC""", kind="table", fmt="table"),
    sql("Latest anomalies", """
        SELECT ts, instrument_id, publisher_id, sequence, kind, detail, count FROM book_anomalies
        WHERE $__timeFilter(ts) ORDER BY ts DESC LIMIT 200""", kind="table", fmt="table"),
]

PIPELINE = [
    prom("Sink: rows stored per second by table",
         {"{{table}}": "sum by (table) (rate(orderflow_sink_rows_written_total[1m]))"}, unit="rowsps"),
    prom("Sink: batch write latency", {
        "p50": "histogram_quantile(0.5, sum by (le) (rate(orderflow_sink_batch_seconds_bucket[1m])))",
        "p99": "histogram_quantile(0.99, sum by (le) (rate(orderflow_sink_batch_seconds_bucket[1m])))",
    }, unit="s"),
    prom("Sink: lag per partition (messages not yet stored)",
         {"{{topic}}[{{partition}}]": "orderflow_sink_lag_messages"}),
    prom("Sink: paused, retries, dead letters", {
        "paused": "max(orderflow_sink_paused)",
        "retries/s": "sum(rate(orderflow_sink_retries_total[1m]))",
        "dead letters/s": "sum(rate(orderflow_sink_dead_letters_total[1m]))",
        "pending rows": "sum(orderflow_sink_pending_rows)",
    }),
    prom("Book workers: MBO records applied per second",
         {"{{instance}}": "sum by (instance) (rate(orderflow_book_records_applied_total[1m]))"}, unit="ops"),
    prom("Book workers: frames lag per partition",
         {"{{instance}} p{{partition}}": "orderflow_book_consumer_lag"}),
    prom("Producers: MBO records sent per second",
         {"{{source}} {{topic}}": "sum by (source, topic) (rate(orderflow_producer_records_sent_total[1m]))"},
         unit="ops"),
    prom("Exchange ingest: records published per second",
         {"{{venue}}": "sum by (venue) (rate(orderflow_exchange_published_total[1m]))"}, unit="ops"),
    prom("Targets up", {"{{job}} {{instance}}": "up{job=~\"orderflow.*\"}"}, kind="stat", w=24, h=4),
]

DASHBOARDS = {
    "orderflow-price-spread": ("orderflow: price and spread", PRICE, [INSTRUMENT_VAR, FEATURE_VAR]),
    "orderflow-depth": ("orderflow: depth", DEPTH, [INSTRUMENT_VAR]),
    "orderflow-trades-volume": ("orderflow: trades and volume", TRADES, [INSTRUMENT_VAR, SYMBOL_VAR]),
    "orderflow-anomalies": ("orderflow: anomalies", ANOMALIES, [INSTRUMENT_VAR]),
    "orderflow-pipeline": ("orderflow: pipeline throughput and lag", PIPELINE, []),
}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    out, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(panels, start=1):
        w, h = p["w"], p["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        body = {k: v for k, v in p.items() if k not in ("w", "h", "unit")}
        body |= {"id": i, "gridPos": {"x": x, "y": y, "w": w, "h": h},
                 "fieldConfig": {"defaults": {"unit": p["unit"]} if p["unit"] else {}, "overrides": []},
                 "options": {}}
        out.append(body)
        x, row_h = x + w, max(row_h, h)
    return {
        "uid": uid, "title": title, "tags": ["orderflow"], "timezone": "utc", "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "5s" if uid == "orderflow-pipeline" else "30s",
        "time": {"from": "now-6h", "to": "now"}, "panels": out, "templating": {"list": variables},
        "annotations": {"list": []},
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{uid}.json": json.dumps(dashboard(uid, *spec), indent=2) + "\n" for uid, spec in DASHBOARDS.items()}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
