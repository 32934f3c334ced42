"""Where the local stack keeps its files under ``settings.home``; one place, so nothing guesses a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from topics.settings import Settings


@dataclass(frozen=True)
class Layout:
    """The folders and files of one local stack, all below ``home``."""

    home: Path

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        return cls(Path(settings.home))

    # Kafka
    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def kafka_config(self) -> Path:
        return self.kafka_dir / "config" / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka_dir / "config" / "log4j2.properties"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_cluster_id(self) -> Path:
        return self.kafka_dir / "cluster.id"

    @property
    def kafka_pid(self) -> Path:
        return self.home / "run" / "kafka.pid"

    @property
    def kafka_log(self) -> Path:
        return self.home / "logs" / "kafka.log"

    # PostgreSQL (the pg folder belongs to the postgres OS user when the stack runs as root)
    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgresql.log"

    @property
    def pg_pid(self) -> Path:
        return self.pg_data / "postmaster.pid"

    def logs(self) -> dict[str, Path]:
        """Log file of each service, by service name."""
        return {"kafka": self.kafka_log, "postgres": self.pg_log}
