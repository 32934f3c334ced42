"""The local stack for machines without Docker: Apache Kafka (KRaft, jars from Maven Central) and a private
PostgreSQL cluster (TimescaleDB when installed), both on loopback, all files under ``settings.home``.

Entry points: :mod:`ops.stack.stack` (``up``, ``down``, ``status``, ``logs``), :mod:`ops.stack.jars` (the Kafka
jars, ``python -m ops.stack.jars``). Every failure the user can fix is a :class:`StackError`.
"""

from ops.stack.errors import StackError

__all__ = ["StackError"]
