"""Reading a topic for latency figures: take what has arrived as soon as it has arrived.

``Consumer.consume(n, timeout)`` waits until it has ``n`` messages *or* the timeout has passed, so a reader that
asks for large batches with a timeout holds every message of a quiet stretch for up to that timeout: its read
times, and every latency computed from them, come out late by up to the timeout.
"""

from __future__ import annotations

from typing import Any

BATCH = 10_000


def arrived(consumer: Any, wait_s: float) -> list[Any]:
    """The messages already fetched (up to ``BATCH``), or else the next one within ``wait_s`` (or none)."""
    batch = consumer.consume(BATCH, timeout=0)
    if batch:
        return list(batch)
    one = consumer.poll(wait_s)
    return [one] if one is not None else []
