"""The one exception family of :mod:`ops.stack`: every failure the user can fix says what to do."""

from __future__ import annotations


class StackError(Exception):
    """A local-stack failure with a message meant for the user; the CLI prints it and exits non-zero.

    ``hint`` says what to do about it; ``str(error)`` contains both.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)


class PortInUseError(StackError):
    """A port the stack needs is taken by a process that is not ours."""


class CorruptDataError(StackError):
    """A data folder exists but does not hold what the service expects."""


class MissingToolError(StackError):
    """Java, Maven or the PostgreSQL server binaries are not installed."""


class ResolveError(StackError):
    """The Kafka jars could not be resolved from the Maven repository."""


class StartError(StackError):
    """A service was launched but did not become ready."""
