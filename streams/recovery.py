"""Which partitions of a Faust table are fully recovered, from Faust's own recovery state.

Faust sends ``on_rebalance_complete`` when a round of table recovery ends, but before it checks that no newer
rebalance began during the round (``Recovery.on_recovery_completed``). By then the consumer's assignment may hold
partitions of a newer generation whose changelog was not read, or only partly: their table holds older state than
the committed offsets, and restoring from it would lose the records in between. Workers restore a partition only
when this says its changelog partition was read to the highwater of the current round (docs/streams.md).
"""

from __future__ import annotations

from typing import Any

from faust.types import TP


def recovered_partitions(table: Any, partitions: set[int]) -> set[int]:
    """Those of ``partitions`` whose changelog partition of ``table`` is read to the end in the current round."""
    recovery = table.app.tables.recovery
    if recovery.signal_recovery_start.is_set():  # a newer round began: it will complete and signal again
        return set()
    topic = table.changelog_topic.get_topic_name()
    if not any(tp.topic == topic for tp in table.app.assignor.assigned_actives()):
        # the assignment has no partition of the changelog at all: the assignor ignored the topic because the
        # consumer's metadata did not have it yet, which happens only when it was just created: empty
        return set(partitions)
    done = set()
    for partition in partitions:
        tp = TP(topic, partition)
        highwater = recovery.active_highwaters.get(tp)  # last offset in the changelog when the round began
        offset = recovery.active_offsets.get(tp)  # last offset read (or persisted locally)
        if tp not in recovery.active_tps or highwater is None:
            continue
        if highwater < 0 or (offset is not None and offset >= highwater):
            done.add(partition)
    return done
