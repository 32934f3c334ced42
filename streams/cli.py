"""The ``orderflow`` command: one entry point, subcommands contributed by each stage.

This module is the composition root. Each stage's ``cli`` module exposes ``add_commands(subparsers)`` and
registers its subcommands with ``set_defaults(func=...)``; a handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from topics import logs, settings

COMMAND_MODULES = (
    "ops.cli",
    "producers.cli",
    "producers.publish_cli",
    "producers.live.cli",
    "producers.exchanges.cli",
    "streams.commands",
    "streams.features_cli",
    "sinks.cli",
)
OUR_PACKAGES = frozenset({"topics", "processors", "producers", "streams", "sinks", "ops"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow",
        description="Real-time market data: MBO order books and exchange ticks on Kafka, Faust and TimescaleDB.",
        epilog="Settings come from ORDERFLOW_* environment variables (see docs/settings.md).",
    )
    parser.add_argument("--log-format", choices=("json", "text"), help="log line format (default: text on a tty)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: ORDERFLOW_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise  # a module that exists failed to import something else: a real error
            continue
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        conf = settings.load()
        fmt = args.log_format or ("text" if sys.stderr.isatty() else conf.log_format)
        logs.configure(args.log_level or conf.log_level, fmt)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if type(e).__module__.split(".")[0] not in OUR_PACKAGES:
            raise
        print(f"orderflow {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
