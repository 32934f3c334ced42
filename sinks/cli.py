"""``orderflow db migrate|status|refresh`` and ``orderflow sink``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from sinks import migrate, schema
from sinks.errors import SinkError, StoreUnavailable
from sinks.pgstore import PgStore
from sinks.runner import Sink, SinkConfig
from sinks.tables import BY_NAME, BY_TOPIC, TABLES, TableSpec
from topics import catalog, settings

logger = logging.getLogger(__name__)

RENAMED = {"feature_bars": "feature_vectors"}  # tables stored under a new name (the old one is now a view)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``db`` and ``sink`` on the ``orderflow`` command's subparsers."""
    _add_db(subparsers)
    _add_sink(subparsers)


def _add_db(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="the PostgreSQL/TimescaleDB schema: migrate, status, refresh",
                               description="Schema migrations and maintenance of the orderflow database.")
    db.set_defaults(func=lambda a: _usage(db))
    sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    p = sub.add_parser("migrate", help="apply pending migrations (idempotent) and the TimescaleDB policies")
    p.set_defaults(func=run_migrate)
    p = sub.add_parser("status", help="mode (TimescaleDB or plain PostgreSQL), migrations, row counts")
    p.set_defaults(func=run_status)
    p = sub.add_parser("refresh", help="refresh the aggregates (materialized views in plain mode)")
    p.add_argument("--every", type=float, metavar="SECONDS", help="keep refreshing at this interval")
    p.set_defaults(func=run_refresh)
    for parser in sub.choices.values():
        parser.add_argument("--dsn", help="libpq connection string (default: from ORDERFLOW_PG_*)")


def _add_sink(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sink", help="store the output topics in PostgreSQL (COPY batches, idempotent, backpressure)",
        description="Consume the output topics and write them to PostgreSQL/TimescaleDB in batches. Offsets are "
        "committed after the database commit; replays insert nothing (natural keys).",
        epilog="Tables and topics: " + ", ".join(f"{t.name} <- {t.topic}" for t in TABLES),
    )
    p.add_argument("--topic", action="append", dest="topics", metavar="TOPIC|TABLE=TOPIC",
                   help="a catalog topic, or TABLE=TOPIC to feed a table from another topic; repeatable "
                   "(default: every topic above)")
    p.add_argument("--group", help="consumer group (default: ORDERFLOW_SINK_GROUP)")
    p.add_argument("--batch-rows", type=int, help="rows per batch (default: ORDERFLOW_SINK_BATCH_ROWS)")
    p.add_argument("--batch-ms", type=float, help="longest wait of a batch (default: ORDERFLOW_SINK_BATCH_MS)")
    p.add_argument("--max-pending-rows", type=int,
                   help="rows held in memory before the consumer pauses (default: ORDERFLOW_SINK_MAX_PENDING_ROWS)")
    p.add_argument("--metrics-port", type=int,
                   help="port of /metrics and /health on 127.0.0.1, 0: any free port, -1: none "
                   "(default: ORDERFLOW_SINK_METRICS_PORT)")
    p.add_argument("--dead-letter-topic", default=catalog.DEAD_LETTER.name, help="(default: %(default)s)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="stop once nothing arrived for this long and everything is stored")
    p.add_argument("-X", dest="kafka", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka consumer setting, e.g. -X session.timeout.ms=6000")
    p.add_argument("--dsn", help="libpq connection string (default: from ORDERFLOW_PG_*)")
    p.set_defaults(func=run_sink)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _dsn(args: argparse.Namespace) -> str:
    return args.dsn or settings.load().pg_dsn


def _connect(args: argparse.Namespace) -> psycopg.Connection:
    try:
        return psycopg.connect(_dsn(args), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {str(e).strip()}") from e


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    """psycopg errors of a db command become one SinkError naming what was being done."""
    try:
        yield
    except psycopg.Error as e:
        raise SinkError(f"{doing} failed: {str(e).strip()}") from e


def run_migrate(args: argparse.Namespace) -> int:
    conf = settings.load()
    with _connect(args) as conn, _translated("migrate"):
        report = migrate.migrate(conn, timescaledb=conf.pg_timescaledb != "off")
        print(f"mode: {schema.mode_text(conn, report.mode)}")
        for m in report.applied:
            print(f"applied {m.name}")
        print(f"{len(report.applied)} applied, {report.already} already applied")
        if report.mode == migrate.TIMESCALE:
            with _translated("setting the TimescaleDB policies"):
                for line in schema.apply_policies(conn, conf):
                    print(f"policy: {line}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    conf = settings.load()
    with _connect(args) as conn, _translated("status"):
        st = schema.status(conn, timescaledb=conf.pg_timescaledb != "off")
    print(f"mode: {st.mode}")
    for a in st.applied:
        print(f"  applied  {a.name:32} {a.applied_at[:19]}  sha256 {a.checksum[:12]}")
    for name in st.pending:
        print(f"  pending  {name}")
    for problem in st.problems:
        print(f"  ERROR    {problem}")
    if st.rows:
        print("rows:")
        for name, n in st.rows.items():
            print(f"  {name:20} {n:>14,}")
    return 1 if st.problems else 0


def run_refresh(args: argparse.Namespace) -> int:
    conf = settings.load()
    with _connect(args) as conn:
        while True:
            started = time.monotonic()
            with _translated("refresh"):
                done = schema.refresh(conn, conf)
            logger.info("refresh done in %.2f s: %s", time.monotonic() - started, "; ".join(done))
            if not args.every:
                print("\n".join(done))
                return 0
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))


def parse_topics(items: list[str] | None) -> dict[str, TableSpec]:
    """``--topic`` values -> Kafka topic -> table; default every sink table's catalog topic."""
    if not items:
        return {t.topic: t for t in TABLES}
    out: dict[str, TableSpec] = {}
    for item in items:
        table_name, sep, topic = item.partition("=")
        if sep:
            table_name = RENAMED.get(table_name, table_name)
            if table_name not in BY_NAME:
                raise SinkError(f"--topic {item}: unknown table {table_name!r}; known: {', '.join(BY_NAME)}")
            out[topic] = BY_NAME[table_name]
        elif item in BY_TOPIC:
            out[item] = BY_TOPIC[item]
        else:
            raise SinkError(f"--topic {item}: not a sink topic ({', '.join(BY_TOPIC)}); use TABLE=TOPIC")
    return out


def _kafka_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SinkError(f"-X {item}: expected KEY=VALUE")
        out[key] = value
    return out


def build_sink(args: argparse.Namespace) -> Sink:
    conf = settings.load()
    dsn = _dsn(args)
    port = conf.sink_metrics_port if args.metrics_port is None else args.metrics_port
    config = SinkConfig(
        bootstrap_servers=conf.bootstrap_servers, topics=parse_topics(args.topics),
        group_id=args.group or conf.sink_group,
        batch_rows=args.batch_rows or conf.sink_batch_rows, batch_ms=args.batch_ms or conf.sink_batch_ms,
        max_pending_rows=args.max_pending_rows or conf.sink_max_pending_rows,
        dead_letter_topic=args.dead_letter_topic, metrics_port=None if port < 0 else port,
        idle_exit_s=args.idle_exit, consumer_config=_kafka_overrides(args.kafka), bind_host=conf.bind_host,
    )
    if config.max_pending_rows < 2 * config.batch_rows:
        raise SinkError(f"--max-pending-rows ({config.max_pending_rows}) must be at least twice --batch-rows "
                        f"({config.batch_rows})")
    return Sink(config, lambda: PgStore(dsn))


def run_sink(args: argparse.Namespace) -> int:
    sink = build_sink(args)

    def stop(signum: int, frame: Any) -> None:
        logger.info("signal %d: finishing the current batches, then stopping", signum)
        sink.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return sink.run()
