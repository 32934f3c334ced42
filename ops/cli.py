"""``orderflow stack up|down|status|logs``: the local Kafka and PostgreSQL without Docker.

``streams.cli`` (the ``orderflow`` command) calls :func:`add_commands`; ``python -m ops.cli stack up`` works on
its own too. Every :class:`~ops.stack.StackError` becomes one message on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaException

from ops.stack import kafka, stack
from ops.stack.errors import StackError
from topics import logs as topic_logs
from topics import settings as topic_settings
from topics.errors import SettingsError

EXIT_ERROR = 1
EXIT_UNHEALTHY = 3

_HELP = {
    "up": "start Kafka and PostgreSQL if they are not running (idempotent), create the catalog topics",
    "down": "stop the Kafka and PostgreSQL this stack started (checked by PID file and command line)",
    "status": "show each service: state, address, PID, health and PostgreSQL mode (exit 3 if one is not healthy)",
    "logs": "print the last lines of the services' log files",
    "topics": "create the missing catalog topics on the broker of ORDERFLOW_KAFKA_BOOTSTRAP (a broker started "
    "elsewhere: Docker, Kubernetes); existing topics are left as they are",
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``stack`` and its subcommands on the ``orderflow`` command's subparsers."""
    parser = subparsers.add_parser(
        "stack",
        help="run the local Kafka and PostgreSQL (no Docker needed)",
        description="The local stack: Apache Kafka in KRaft mode (jars from Maven Central) and a private "
        "PostgreSQL cluster, on 127.0.0.1, with every file under ORDERFLOW_HOME (default .orderflow/).",
        epilog="Ports: ORDERFLOW_KAFKA_PORT, ORDERFLOW_KAFKA_CONTROLLER_PORT, ORDERFLOW_PG_PORT. See docs/stack.md.",
    )
    parser.set_defaults(func=run_stack, stack_command=None)
    sub = parser.add_subparsers(dest="stack_command", metavar="ACTION")
    for name in ("up", "down", "status", "topics"):
        sub.add_parser(name, help=_HELP[name], description=_HELP[name] + ".")
    logs = sub.add_parser("logs", help=_HELP["logs"], description=_HELP["logs"] + ".")
    logs.add_argument("service", nargs="?", choices=stack.SERVICES, help="only this service (default: all)")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="lines per log (default: 50)")


def run_stack(args: argparse.Namespace) -> int:
    """Run the chosen ``stack`` action; returns the process exit code."""
    action = args.stack_command
    if action is None:
        print("orderflow stack: choose an action: up, down, status, logs or topics (see `orderflow stack --help`)",
              file=sys.stderr)
        return 2
    try:
        settings = topic_settings.load()
        return int(_ACTIONS[action](settings, args))
    except (StackError, SettingsError) as e:
        print(f"orderflow stack {action}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


def _up(settings: topic_settings.Settings, args: argparse.Namespace) -> int:
    report = stack.up(settings)
    for line in report.lines:
        print(line)
    if report.already_running:
        print("the stack is already running; nothing to do")
    return 0


def _down(settings: topic_settings.Settings, args: argparse.Namespace) -> int:
    for service, outcome in stack.down(settings):
        print(f"{service}: {outcome}")
    return 0


def _status(settings: topic_settings.Settings, args: argparse.Namespace) -> int:
    rows = stack.status(settings)
    table = [("SERVICE", "STATE", "ADDRESS", "PID", "HEALTH", "DETAIL")]
    table += [(r.name, r.state, r.address, str(r.pid or "-"), r.health, r.detail) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"home: {settings.home}")
    return 0 if all(r.healthy for r in rows) else EXIT_UNHEALTHY


def _logs(settings: topic_settings.Settings, args: argparse.Namespace) -> int:
    for name, (path, text) in stack.logs(settings, args.service, args.lines).items():
        print(f"==> {name}: {path} <==")
        print(text if text else "(no log yet)")
    return 0


def _topics(settings: topic_settings.Settings, args: argparse.Namespace) -> int:
    try:
        created, present = kafka.ensure_topics(settings)
    except KafkaException as e:
        raise StackError(f"cannot reach the Kafka broker at {settings.bootstrap_servers}: {e.args[0].str()}",
                         "check ORDERFLOW_KAFKA_BOOTSTRAP and that the broker is up") from None
    print(f"{settings.bootstrap_servers}: created {', '.join(created) or 'none'}; "
          f"already present {', '.join(present) or 'none'}")
    return 0


_ACTIONS = {"up": _up, "down": _down, "status": _status, "logs": _logs, "topics": _topics}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ops.cli stack ...`` until the ``orderflow`` command is installed."""
    parser = argparse.ArgumentParser(prog="orderflow", description="orderflow local stack")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        conf = topic_settings.load()
        topic_logs.configure(conf.log_level, "text")
    except SettingsError as e:
        print(f"orderflow: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return run_stack(args)


if __name__ == "__main__":
    sys.exit(main())
