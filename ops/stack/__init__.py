"""The local stack for machines without Docker: Apache Kafka (KRaft, jars from Maven Central) and a private
PostgreSQL cluster (TimescaleDB when installed), both on loopback, all files under ``settings.home``."""

from ops.stack.errors import StackError
from ops.stack.stack import ServiceStatus, UpReport, down, logs, status, up

__all__ = ["ServiceStatus", "StackError", "UpReport", "down", "logs", "status", "up"]
