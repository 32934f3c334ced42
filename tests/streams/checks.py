"""What a downstream consumer checks: no gap, repeats only where marked; books equal to the offline engine."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from streams.publisher import Output
from topics.codec import decode_records


def records_of(outputs: list[Output], kind: type) -> list[Any]:
    """The records of ``outputs`` in order, frames (JSON arrays) opened, as a downstream consumer reads them."""
    return [record for _, _, value in outputs for record in decode_records(kind, value)]


def check_stream(reference: list[Output], delivered: list[Output], key: Callable[[Any], Any], kind: type) -> int:
    """Drop repeats as a downstream consumer does; what is left must be the reference, in order, per instrument.

    Returns how many repeats (all marked duplicate) were dropped."""
    expected: dict[int, list[Any]] = defaultdict(list)
    for record in records_of(reference, kind):
        expected[record.instrument_id].append(key(record))
    position: dict[int, int] = defaultdict(int)
    repeats = 0
    for record in records_of(delivered, kind):
        inst, k, i = record.instrument_id, key(record), position[record.instrument_id]
        if i < len(expected[inst]) and expected[inst][i] == k:
            position[inst] += 1
            continue
        assert k in expected[inst][:i], f"gap or foreign output at {i} of {len(expected[inst])}: {record}"
        assert record.duplicate, f"repeat not marked duplicate: {record}"
        repeats += 1
    assert {inst: position[inst] for inst in expected} == {inst: len(v) for inst, v in expected.items()}
    return repeats
