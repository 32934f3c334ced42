"""Producer throughput: replay a DBN file (looped) into Kafka through the real replay path; print the figures.

    python bench/produce.py                       # broker of ORDERFLOW_* settings (orderflow stack up)
    python bench/produce.py --bootstrap host:port --seconds 10 --max-records 1000
    python bench/produce.py --no-kafka            # read + frame + encode only, no broker

Prints records/s, frames/s, MB/s (JSON values), and the average, p50 and p99 records per frame. The clock runs from
the first record read to the last delivery report (``--no-kafka``: to the last frame encoded). The bench creates
a throw-away topic shaped like mbo.frames and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from producers.kafka_out import DeliveryStats, KafkaFrameSink
from producers.replay import Replay, ReplayOptions
from topics import catalog, codec, settings
from topics.records import MboFrame

ESH4 = Path(__file__).resolve().parents[2] / "shared/data/databento/nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
FILE_RECORDS = 68_792  # records in the ESH4 file


class Recorder:
    """Wraps a sink to note every frame's size; with no inner sink it only encodes (``--no-kafka``)."""

    def __init__(self, inner: KafkaFrameSink | None) -> None:
        self.inner = inner
        self.sizes: list[int] = []
        self.stats = inner.stats if inner is not None else DeliveryStats()
        self.fatal: str | None = None

    def send(self, frame: MboFrame) -> None:
        self.sizes.append(len(frame))
        if self.inner is not None:
            self.inner.send(frame)
            return
        value = codec.encode(frame)
        self.stats.frames_sent += 1
        self.stats.records_sent += len(frame)
        self.stats.bytes_sent += len(value)

    def poll(self) -> None:
        if self.inner is not None:
            self.inner.poll()

    def flush(self, timeout_s: float) -> int:
        return self.inner.flush(timeout_s) if self.inner is not None else 0

    def queue_depth(self) -> int:
        return self.inner.queue_depth() if self.inner is not None else 0


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def admin_client(bootstrap: str) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": logging.getLogger("bench.rdkafka")}
    return AdminClient(config)


def reachable(bootstrap: str) -> bool:
    try:
        admin_client(bootstrap).list_topics(timeout=5)
    except KafkaException:
        return False
    return True


def make_topic(bootstrap: str) -> str:
    name = f"bench.produce.{os.getpid()}.{int(time.time())}"
    admin = admin_client(bootstrap)
    spec = catalog.MBO_FRAMES
    admin.create_topics([NewTopic(name, spec.partitions, 1, config=dict(spec.extra_config))])[name].result(30)
    time.sleep(1.0)  # let the partition leaders settle
    return name


def drop_topic(bootstrap: str, name: str) -> None:
    admin = admin_client(bootstrap)  # keep the client alive until the future resolves
    admin.delete_topics([name])[name].result(30)


def run(args: argparse.Namespace) -> dict[str, Any]:
    loops = args.loops or max(1, math.ceil(args.seconds * 1_000_000 / FILE_RECORDS))
    topic = sink = None
    if not args.no_kafka:
        topic = make_topic(args.bootstrap)
        sink = KafkaFrameSink(args.bootstrap, topic, args.compression, linger_ms=args.kafka_linger_ms)
        sink.require_topic()
        sink._producer.produce(topic, b"{}", b"warmup")  # idempotent producer id before the clock starts
        sink._producer.flush(30)
    recorder = Recorder(sink)
    options = ReplayOptions(files=[str(args.file)], loops=loops, max_records=args.max_records,
                            linger_s=args.linger_ms / 1000.0, progress=False)
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        Replay(options, recorder).run()
        read_s = time.perf_counter() - started
        left = recorder.flush(120)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        if topic is not None and not args.keep_topic:
            drop_topic(args.bootstrap, topic)
    stats = recorder.stats
    sizes = sorted(recorder.sizes)
    return {
        "records": stats.records_sent, "frames": stats.frames_sent, "bytes": stats.bytes_sent,
        "delivered": stats.records_delivered if sink else None, "failed": stats.frames_failed, "left": left,
        "elapsed_s": elapsed, "records_per_s": stats.records_sent / elapsed,
        "frames_per_s": stats.frames_sent / elapsed,
        "mb_per_s": stats.bytes_sent / elapsed / 1e6, "avg": stats.records_sent / max(1, stats.frames_sent),
        "p50": percentile(sizes, 0.50), "p99": percentile(sizes, 0.99), "loops": loops,
        "read_s": read_s, "cpu_s": cpu,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=settings.load().bootstrap_servers)
    p.add_argument("--file", type=Path, default=ESH4)
    p.add_argument("--seconds", type=float, default=8.0, help="aim for this long at 1M records/s (sets --loops)")
    p.add_argument("--loops", type=int, default=0, help="replay the file this many times (overrides --seconds)")
    p.add_argument("--max-records", type=int, default=250, help="records per frame (default: %(default)s)")
    p.add_argument("--linger-ms", type=float, default=5.0, help="framer linger (default: %(default)s)")
    p.add_argument("--kafka-linger-ms", type=float, default=20.0, help="librdkafka linger.ms (default: %(default)s)")
    p.add_argument("--compression", default="lz4")
    p.add_argument("--no-kafka", action="store_true", help="read, frame and encode only")
    p.add_argument("--keep-topic", action="store_true")
    p.add_argument("--stack", action="store_true",
                   help="start a private local stack (ops.stack.testing, free ports) for the bench and stop it after")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.file.is_file():
        print(f"bench: {args.file} is absent", file=sys.stderr)
        return 2
    local = None
    if args.stack and not args.no_kafka:
        from ops.stack.testing import start_local_stack

        local = start_local_stack()
        args.bootstrap = local.bootstrap_servers
    elif not args.no_kafka and not reachable(args.bootstrap):
        print(f"bench: no Kafka broker at {args.bootstrap}: start one (python -m ops.cli stack up), "
              "pass --bootstrap, --stack or --no-kafka", file=sys.stderr)
        return 2
    try:
        r = run(args)
    finally:
        if local is not None:
            from ops.stack.testing import stop_local_stack

            stop_local_stack(local)
    target = "no Kafka (read + frame + encode)" if args.no_kafka else f"{args.bootstrap}, {args.compression}"
    print(f"produce bench: {args.file.name} x{r['loops']}, frames <= {args.max_records} records, {target}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"records   {r['records']:>12,}   {r['records_per_s']:>12,.0f} records/s   in {r['elapsed_s']:.2f} s "
          f"(last record handed over after {r['read_s']:.2f} s; producer process CPU {r['cpu_s']:.2f} s)")
    print(f"frames    {r['frames']:>12,}   {r['frames_per_s']:>12,.0f} frames/s")
    print(f"bytes     {r['bytes']:>12,}   {r['mb_per_s']:>12,.1f} MB/s (JSON values, before compression)")
    print(f"per frame avg {r['avg']:.1f}  p50 {r['p50']}  p99 {r['p99']} records")
    if not args.no_kafka:
        print(f"delivered {r['delivered']:,}  failed {r['failed']}  undelivered {r['left']}")
    return 0 if not r["failed"] and not r["left"] else 1


if __name__ == "__main__":
    sys.exit(main())
