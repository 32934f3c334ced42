"""Run one book worker process: ``orderflow worker [--web-port P] [--workdir D]``.

The frames topic must exist (``orderflow stack up`` creates the catalog); its partition count sizes the checkpoint
table. On SIGINT/SIGTERM the worker checkpoints every partition before Faust commits and leaves the group, so the
next owner of its partitions replays nothing; after a kill -9 the next owner replays from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.app import create_app
from streams.config import WorkerConfig, freeze_heap, prepare_process
from streams.errors import StreamsError
from streams.gcwatch import GcPauses
from streams.metrics import NS
from streams.runtime import Runtime

logger = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 15.0


def topic_partitions(bootstrap: str, topic: str) -> int:
    """Partition count of ``topic``; StreamsError when the broker does not answer or the topic is missing."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        metadata = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except Exception as e:
        raise StreamsError(f"Kafka at {bootstrap} did not answer ({e}); is the stack up? `orderflow stack up`") from e
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise StreamsError(f"topic {topic!r} does not exist on {bootstrap}; `orderflow stack up` creates it")
    return len(found.partitions)


def committed_reader(config: WorkerConfig) -> Callable[[list[int]], Awaitable[dict[int, int]]]:
    """The group's committed offsets of frames partitions, read by a consumer that never joins the group."""
    consumer = Consumer({"bootstrap.servers": config.bootstrap, "group.id": config.app_id,
                         "enable.auto.commit": False})

    def read(partitions: list[int]) -> dict[int, int]:
        tps = [TopicPartition(config.topics.frames, p) for p in partitions]
        try:
            found = consumer.committed(tps, timeout=METADATA_TIMEOUT_S)
        except Exception:
            logger.warning("committed offsets not readable; lag is approximate until frames arrive",
                           exc_info=True)
            return {}
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    async def committed(partitions: list[int]) -> dict[int, int]:
        return await asyncio.get_running_loop().run_in_executor(None, read, partitions)

    return committed


class BookWorker(faust.Worker):
    """Faust's worker, with a last checkpoint of every partition before the app stops."""

    def __init__(self, app: faust.App, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.runtime = runtime
        if not self.stdout.isatty():
            self.spinner = None  # Faust's start-up spinner writes terminal escapes into the log otherwise

    async def on_stop(self) -> None:
        if self.runtime.fatal is None and self.runtime.ready:
            try:
                await asyncio.wait_for(self.runtime.checkpoint_all(), timeout=30.0)
            except Exception:
                logger.exception("last checkpoint failed; the next owner replays from the previous one")
        await self.runtime.sink.close()
        await super().on_stop()


def run(config: WorkerConfig, loglevel: str = "INFO") -> int:
    """Run a worker until it is stopped; the exit code is 1 when it stopped on an error."""
    prepare_process(config)
    app, runtime = create_app(config)
    runtime.on_ready = freeze_heap
    GcPauses(runtime.metrics.registry, NS)
    runtime.committed = committed_reader(config)
    logger.info("book worker %s: frames from %s (%d partitions), views on http://127.0.0.1:%d/books, data in %s",
                config.app_id, config.topics.frames, config.partitions, config.web_port, config.workdir)
    worker = BookWorker(app, runtime, loglevel=loglevel, override_logging=False, redirect_stdouts=False,
                        quiet=True, workdir=str(config.workdir))
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        return 1 if runtime.fatal is not None else code
    return 1 if runtime.fatal is not None else 0
