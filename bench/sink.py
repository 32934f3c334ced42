"""Sink throughput: rows/s stored by the sink end to end from a Kafka topic, against the raw COPY rate of the same
rows into the same table, measured in the same run (alternating rounds, medians).

    .venv/bin/python bench/sink.py                     # uses the running stack (orderflow stack up)
    .venv/bin/python bench/sink.py --local-stack       # starts a throw-away stack on free ports
    .venv/bin/python bench/sink.py --rows 500000 --partitions 8 --rounds 3
    .venv/bin/python bench/sink.py --table feature_vectors --rows 5000 --batch-rows 200000   # 1,483-value bars

Everything happens in a private schema (dropped at the end) and a private topic. Figures printed:
  produce    BBO updates/s produced to the topic (confluent-kafka, lz4, idempotent)
  raw COPY   pre-encoded binary COPY of the rows, committed every --batch-rows: the database's ceiling
  sink       the sink (consume, decode, batch, COPY, commit, offsets) from the first message to the last commit
  replay     the sink re-reading the same topic into the full table: every batch takes the merge path
  formats    text vs binary COPY from Python tuples, encoding included
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops.stack import proc
from ops.stack.layout import Layout
from ops.stack.testing import LocalStack, create_topic, delete_topics, start_local_stack, stop_local_stack
from sinks import copybin, migrate, samples, schema, tables
from sinks.pgstore import PgStore
from sinks.runner import Sink, SinkConfig
from topics.settings import Settings, load

Row = tuple


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=("bbo", "feature_vectors"), default="bbo",
                   help="bbo: BBO updates; feature_vectors: feature bars of 1,483 values (default %(default)s)")
    p.add_argument("--rows", type=int, default=400_000, help="records (default %(default)s)")
    p.add_argument("--partitions", type=int, default=8, help="topic partitions (default %(default)s)")
    p.add_argument("--instruments", type=int, default=16, help="instruments (default %(default)s)")
    p.add_argument("--batch-rows", type=int, default=20_000,
                   help="sink batch size in row units (a feature vector counts for 100) and raw COPY commit size")
    p.add_argument("--rounds", type=int, default=3, help="alternating raw/sink rounds (default %(default)s)")
    p.add_argument("--local-stack", action="store_true", help="start a throw-away Kafka + PostgreSQL")
    return p.parse_args()


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (0 when unknown or gone)."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MeteredStore(PgStore):
    """A PgStore that adds its server backend's CPU seconds to ``server_cpu`` when it closes."""

    server_cpu = 0.0

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self._pid = self.conn.info.backend_pid
        self._cpu0 = proc_cpu(self._pid)

    def close(self) -> None:
        MeteredStore.server_cpu += proc_cpu(self._pid) - self._cpu0
        super().close()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def truncate(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")
        conn.execute(f"VACUUM ANALYZE {table}")


def copy_batches(dsn: str, spec: tables.TableSpec, payloads: list[bytes], cpu: dict[str, float],
                 merge: bool = False) -> float:
    """Seconds to write the pre-encoded batches, one transaction each; server and client CPU seconds are added to
    ``cpu``. ``merge``: through a staging table and INSERT ... ON CONFLICT DO NOTHING (the alternative to the
    sink's fast path: idempotent for every batch, replay or not) instead of COPY straight into the table."""
    cols = ", ".join(spec.column_names)
    with psycopg.connect(dsn) as conn:
        if merge:
            conn.execute(f"CREATE TEMP TABLE stage (LIKE {spec.name}) ON COMMIT DELETE ROWS")
            conn.commit()
        pid = conn.info.backend_pid
        server0, client0 = proc_cpu(pid), self_cpu()
        started = time.perf_counter()
        for payload in payloads:
            target = "stage" if merge else spec.name
            with conn.cursor().copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT binary)") as cp:
                cp.write(payload)
            if merge:
                conn.execute(f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM stage ON CONFLICT DO NOTHING")
            conn.commit()
        elapsed = time.perf_counter() - started
        cpu["server"] = cpu.get("server", 0.0) + proc_cpu(pid) - server0
        cpu["client"] = cpu.get("client", 0.0) + self_cpu() - client0
        return elapsed


def run_sink(settings: Settings, dsn: str, spec: tables.TableSpec, topic: str, batch_rows: int, group: str,
             cpu: dict[str, float] | None = None) -> tuple[int, float]:
    """(rows committed, seconds from the first message to the last database commit); CPU seconds of the sink
    process, its database backend and the Kafka broker are added to ``cpu``."""
    config = SinkConfig(bootstrap_servers=settings.bootstrap_servers, topics={topic: spec}, group_id=group,
                        batch_rows=batch_rows, max_pending_rows=10 * batch_rows, idle_exit_s=1.0,
                        dead_letter_topic=topic + ".dead")
    sink = Sink(config, lambda: MeteredStore(dsn))
    broker = proc.read_pid(Layout.of(settings).kafka_pid)
    server0, sink0, broker0 = MeteredStore.server_cpu, self_cpu(), proc_cpu(broker)
    if sink.run() != 0:
        raise SystemExit("the sink failed")
    if cpu is not None:
        cpu["server"] = cpu.get("server", 0.0) + MeteredStore.server_cpu - server0
        cpu["sink"] = cpu.get("sink", 0.0) + self_cpu() - sink0
        cpu["broker"] = cpu.get("broker", 0.0) + proc_cpu(broker) - broker0
    if sink.first_message_at is None or sink.writer.last_commit_mono is None:
        raise SystemExit("the sink stored nothing")
    return sink.rows_committed, sink.writer.last_commit_mono - sink.first_message_at


def sample_records(args: argparse.Namespace) -> list[Any]:
    if args.table == "bbo":
        return list(samples.bbo_updates(args.rows, instruments=args.instruments, step_ns=100_000))
    return list(samples.feature_bars(args.rows, instruments=args.instruments))


def register_feature_sets(dsn: str, rows: list[Row]) -> None:
    """The ``feature_sets`` rows the vectors refer to (the sink's store inserts them itself)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for row in {row[tables.FEATURE_SET_COLUMN]: row for row in rows}.values():
            names = cast(tables.FeatureRow, row).names
            conn.execute("INSERT INTO feature_sets (set_id, names) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (row[tables.FEATURE_SET_COLUMN], list(names)))


def copy_formats(dsn: str, rows: list[Row]) -> dict[str, float]:
    """rows/s of text and binary COPY from the same tuples, encoding included (psycopg write_row vs copybin)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    cols = ", ".join(tables.BBO.column_names)
    out = {}
    with psycopg.connect(dsn) as conn:
        def text() -> None:
            with conn.cursor().copy(f"COPY bbo ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row((epoch + timedelta(microseconds=r[0] // 1000), *r[1:]))

        def binary() -> None:
            with conn.cursor().copy(f"COPY bbo ({cols}) FROM STDIN (FORMAT binary)") as copy:
                for chunk in copybin.chunks(tables.BBO, rows):
                    copy.write(chunk)

        for name, fn in (("text (psycopg write_row)", text), ("binary (sinks.copybin)", binary)):
            conn.execute("TRUNCATE bbo")
            conn.commit()
            started = time.perf_counter()
            fn()
            conn.commit()
            out[name] = len(rows) / (time.perf_counter() - started)
    return out


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    local: LocalStack | None = start_local_stack() if args.local_stack else None
    settings = local.settings if local else load()
    schema_name = f"bench_{os.getpid()}"
    topic = ""
    try:
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema_name}")
            version = conn.execute("SHOW server_version").fetchone()
        dsn = schema.schema_dsn(settings.pg_dsn, schema_name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            mode = migrate.migrate(conn, timescaledb=settings.pg_timescaledb != "off").mode
        spec = tables.BY_NAME[args.table]
        records = sample_records(args)
        rows = [spec.row(spec.items_of(r)[0]) for r in records]
        per_commit = max(1, args.batch_rows // spec.weight)  # raw COPY commits as often as the sink's batches
        payloads = [b"".join(copybin.chunks(spec, rows[i:i + per_commit])) for i in range(0, len(rows), per_commit)]
        if spec is tables.FEATURE_BARS:
            register_feature_sets(dsn, rows)  # raw COPY bypasses the store, which records the sets
        topic = create_topic(settings, f"bench.sink.{os.getpid()}", args.partitions)
        create_topic(settings, topic + ".dead", 1)
        produce_s = timed(lambda: samples.produce(settings.bootstrap_servers, topic, samples.encoded(records)))
        print(f"machine: {machine()}; PostgreSQL {version[0] if version else '?'} ({mode})")
        print(f"rows: {args.rows:,} {type(records[0]).__name__} into {spec.name}, {args.instruments} instruments, "
              f"{args.partitions} partitions, batches of {args.batch_rows:,} row units ({per_commit:,} rows)")
        print(f"produce: {args.rows / produce_s:,.0f} msg/s")
        raw_rates, sink_rates = [], []
        raw_cpu: dict[str, float] = {}
        sink_cpu: dict[str, float] = {}
        for r in range(args.rounds):
            truncate(dsn, spec.name)
            raw_rates.append(args.rows / copy_batches(dsn, spec, payloads, raw_cpu))
            truncate(dsn, spec.name)
            stored, seconds = run_sink(settings, dsn, spec, topic, args.batch_rows, f"bench-{os.getpid()}-{r}",
                                       sink_cpu)
            if stored != args.rows:
                raise SystemExit(f"the sink stored {stored} rows, expected {args.rows}")
            sink_rates.append(stored / seconds)
            print(f"round {r + 1}: raw COPY {raw_rates[-1]:>9,.0f} rows/s   sink {sink_rates[-1]:>9,.0f} rows/s   "
                  f"sink/raw {sink_rates[-1] / raw_rates[-1]:.0%}", flush=True)
        stored, seconds = run_sink(settings, dsn, spec, topic, args.batch_rows,
                                   f"bench-{os.getpid()}-replay")  # table full
        truncate(dsn, spec.name)
        merge_cpu: dict[str, float] = {}
        merge_rate = args.rows / copy_batches(dsn, spec, payloads, merge_cpu, merge=True)
        raw, sink = statistics.median(raw_rates), statistics.median(sink_rates)
        print(f"median: raw COPY {raw:,.0f} rows/s, sink {sink:,.0f} rows/s, sink/raw {sink / raw:.0%}")
        per_row = args.rows * args.rounds / 1e6
        print("CPU per row (us): raw COPY " + ", ".join(f"{k} {v / per_row:.2f}" for k, v in raw_cpu.items())
              + "; sink " + ", ".join(f"{k} {v / per_row:.2f}" for k, v in sink_cpu.items()))
        print(f"replay (every batch merged, nothing inserted): {stored / seconds:,.0f} rows/s")
        print(f"staging + ON CONFLICT for every batch (new rows): {merge_rate:,.0f} rows/s "
              f"({merge_rate / raw:.0%} of raw COPY), server CPU {merge_cpu['server'] / args.rows * 1e6:.2f} us/row")
        if spec is not tables.BBO:
            return 0
        for name, rate in copy_formats(dsn, rows[: min(len(rows), 200_000)]).items():
            print(f"COPY {name}: {rate:,.0f} rows/s")
    finally:
        if topic:
            delete_topics(settings, [topic, topic + ".dead"])
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
        if local:
            stop_local_stack(local)
    return 0


if __name__ == "__main__":
    sys.exit(main())
