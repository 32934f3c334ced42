"""Grafana and Prometheus provisioning: every PostgreSQL panel's SQL runs against the schema (macros expanded)
and returns rows after a run; Prometheus panels name metrics that the services export; scrape ports match the
settings."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sinks import samples, schema, tables
from sinks.metrics import SinkMetrics
from sinks.pgstore import PgStore
from tests.sinks.grafana_macros import expand
from topics.records import BookAnomaly, FeatureBar, RegimeSignal
from topics.settings import load

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "ops" / "grafana"
PROMETHEUS_YML = REPO / "ops" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
START = datetime.fromtimestamp(samples.START_NS / 1e9, UTC)


def load_builder() -> Any:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panels(kind: str) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(dashboard file, panel, dashboard variables) of every panel whose datasource is of ``kind``."""
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            if panel["datasource"]["type"] == kind:
                out.append((path.name, panel, doc["templating"]["list"]))
    return out


def sample_rows() -> dict[str, list[tuple]]:
    def rows(table: tables.TableSpec, records: list) -> list[tuple]:
        return [row for rec in records for row in table.rows_of(rec)]

    anomalies = [BookAnomaly(publisher_id=1, instrument_id=1000 + i % 2, ts_event=samples.START_NS + i * 10**9,
                             ts_recv=samples.START_NS + i * 10**9, sequence=i, kind=("crossed", "gap")[i % 2],
                             detail=f"detail {i}", count=1 + i % 3) for i in range(40)]
    features = [FeatureBar(instrument="1000", ts_event=samples.START_NS + i * 10**9, interval_ns=10**9,
                           values={"ret": 0.001 * i, "vol": None if i < 2 else 0.5}) for i in range(60)]
    regimes = [RegimeSignal(instrument="1000", ts_event=samples.START_NS + i * 10**9, interval_ns=10**9,
                            kind="volatility", state=("calm", "turbulent")[i // 10 % 2], probability=0.8,
                            changed=i % 10 == 0) for i in range(60)]
    return {
        "bbo": rows(tables.BBO, samples.bbo_updates(3000, instruments=2, step_ns=40_000_000)),
        "mbp10": rows(tables.MBP10, samples.mbp10_snapshots(200)),
        "book_trades": rows(tables.BOOK_TRADES, samples.book_trades(500, step_ns=100_000_000)),
        "book_anomalies": rows(tables.BOOK_ANOMALIES, anomalies),
        "exchange_trades": rows(tables.EXCHANGE_TRADES, samples.exchange_trades(500, step_ns=100_000_000)),
        "exchange_quotes": rows(tables.EXCHANGE_QUOTES, samples.exchange_quotes(100)),
        "feature_vectors": rows(tables.FEATURE_BARS, features),
        "regime_signals": rows(tables.REGIME_SIGNALS, regimes),
    }


@pytest.fixture(scope="module")
def run_dsn(stack: Any) -> Iterator[str]:
    """A migrated schema after a run: every table holds rows and the aggregates are refreshed (module-wide)."""
    import os

    name = f"graf_{os.getpid()}"
    dsn = schema.schema_dsn(stack.pg_dsn, name)
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    from sinks import migrate

    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.migrate(conn, timescaledb=stack.settings.pg_timescaledb != "off")
    store = PgStore(dsn)
    store.write_batch(sample_rows())
    store.commit()
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.refresh(conn, load({}))
    yield dsn
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def variable_values(dsn: str, variables: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list]:
    values = {}
    with psycopg.connect(dsn) as conn:
        for var in variables:
            rows = conn.execute(expand(var["query"], start, end, "1m", {})).fetchall()
            values[var["name"]] = [str(r[0]) for r in rows]
    return values


@pytest.mark.unit
def test_the_dashboard_files_are_what_the_builder_writes() -> None:
    rendered = load_builder().render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], f"{path.name} is stale: run ops/grafana/build_dashboards.py"


@pytest.mark.unit
def test_panels_use_the_provisioned_datasources() -> None:
    provisioned = (GRAFANA / "provisioning" / "datasources" / "orderflow.yaml").read_text()
    uids = set(re.findall(r"uid: (\S+)", provisioned))
    for name, panel, _ in panels("postgres") + panels("prometheus"):
        assert panel["datasource"]["uid"] in uids, (name, panel["title"])
        assert panel["targets"], (name, panel["title"])


@pytest.mark.integration
@pytest.mark.parametrize(("name", "panel", "variables"), panels("postgres"),
                         ids=[f"{n}:{p['title']}" for n, p, _ in panels("postgres")])
def test_every_sql_panel_runs_and_returns_rows_after_a_run(run_dsn: str, name: str, panel: dict[str, Any],
                                                           variables: list[dict[str, Any]]) -> None:
    start, end = START - timedelta(minutes=1), START + timedelta(minutes=10)
    values = variable_values(run_dsn, variables, start, end)
    assert all(values.values()), f"a template variable of {name} has no values: {values}"
    with psycopg.connect(run_dsn) as conn:
        for target in panel["targets"]:
            for interval in ("1s", "1m"):
                sql = expand(target["rawSql"], start, end, interval, values)
                rows = conn.execute(sql).fetchall()
                assert rows, f"{name}: {panel['title']} returned no rows:\n{sql}"
                if target["format"] == "time_series":
                    cols = [d.name for d in conn.execute(sql).description or []]
                    assert cols[0] == "time", f"{panel['title']}: the first column must be the time"


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(orderflow_[a-z0-9_]+)", expr))


@pytest.mark.unit
def test_prometheus_panels_name_metrics_that_services_export() -> None:
    sink = SinkMetrics()
    sink.rows_written.labels("bbo").inc()
    sink.dead_letters.labels("t").inc()
    sink.lag.labels("t", "0").set(1)
    sink_text = sink.render().decode()
    sources = "\n".join(p.read_text() for p in (REPO / "streams").glob("*.py")) + "\n".join(
        p.read_text() for p in (REPO / "producers").rglob("*.py"))
    for _, panel, _ in panels("prometheus"):
        for target in panel["targets"]:
            for metric in metric_names(target["expr"]):
                base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
                if base.startswith("orderflow_sink_"):
                    assert re.search(rf"^{metric}[{{ ]", sink_text, re.M), (panel["title"], metric)
                else:
                    short = re.sub(r"^orderflow_(book|producer|exchange)_", "", base)
                    assert short in sources or base in sources, (panel["title"], metric)


@pytest.mark.unit
def test_prometheus_scrapes_the_ports_of_the_settings() -> None:
    text = PROMETHEUS_YML.read_text()
    conf = load({})
    for job, port in (("orderflow-worker", conf.streams_web_port), ("orderflow-sink", conf.sink_metrics_port),
                      ("orderflow-ingest", conf.exchange_metrics_port)):
        block = text.split(f"job_name: {job}", 1)[1].split("job_name:", 1)[0]
        assert f"127.0.0.1:{port}" in block, job
    assert not re.search(r"targets:.*\b(?!127\.0\.0\.1)\d+\.\d+\.\d+\.\d+:", text), "scrape loopback only"


@pytest.mark.unit
def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    out = subprocess.run([promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.integration
def test_every_query_of_docs_sql_md_runs_against_the_schema(run_dsn: str) -> None:
    text = (REPO / "docs" / "sql.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    assert len(blocks) >= 10
    with psycopg.connect(run_dsn, autocommit=True) as conn:
        for block in blocks:
            code = re.sub(r"--[^\n]*", "", block)
            for statement in (s.strip() for s in code.split(";")):
                if statement:
                    conn.execute(statement)  # raises on any SQL error
