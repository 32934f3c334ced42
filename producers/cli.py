"""Commands of the producers stage.

``add_commands`` registers every entry of :data:`COMMANDS` (one function per top-level command, each adding its
parser with ``set_defaults(func=handler)``); the ``book`` group does the same with :data:`BOOK_COMMANDS`. A new
command is one function appended to the right tuple.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processors.book import POLICIES
from producers.mbp10 import LAYOUTS
from producers.readers import FORMATS
from producers.readers.base import ON_ERROR_CHOICES

Adder = Callable[[Any], None]  # receives the subparsers action of its group


def add_commands(subparsers: Any) -> None:
    """Register the producers' commands on the ``orderflow`` command line."""
    for add in COMMANDS:
        add(subparsers)


# ---------------------------------------------------------------------------------------------------- book group


def add_book_group(subparsers: Any) -> None:
    book = subparsers.add_parser("book", help="order book tools on MBO files", description="Order book tools.")
    sub = book.add_subparsers(dest="book_command", metavar="SUBCOMMAND")
    for add in BOOK_COMMANDS:
        add(sub)
    book.set_defaults(func=lambda args: _group_help(book))


def _group_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_book_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay", help="replay MBO files through the book engine",
        description="Replay MBO files (Databento DBN or CSV, LOBSTER) in order through the book engine; "
        "optionally write the book after each consistency point in Databento's MBP-10 CSV layout.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="input files, replayed in the order given")
    p.add_argument("--format", choices=(*FORMATS, "csv"), help="input format (default: detected per file)")
    p.add_argument("--mbp10-csv", metavar="OUT", help="write MBP-10 rows to OUT ('-' for stdout)")
    p.add_argument("--every-record", action="store_true", help="an MBP-10 row after every record, not per event")
    p.add_argument("--summary", action="store_true", help="print the final BBO, resting orders and book stats")
    p.add_argument("--crossed-policy", choices=POLICIES, default="keep", help="crossed book handling (keep)")
    p.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="stop", help="malformed records (stop)")
    p.add_argument("--layout", choices=LAYOUTS, default="by-side",
                   help="MBP-10 columns: by-side (bid px/sz/ct, ask px/sz/ct per level; symbol, order_id) or "
                   "dbn (Databento's CSV encoder order)")
    p.add_argument("--update-side", choices=("order", "none"), default="order",
                   help="side of A/C/M rows: the order's side, or N as some vendor files show (order)")
    p.add_argument("--all-depths", dest="top_only", action="store_false",
                   help="a row at every consistency point, also for events below the ten levels (by default, as "
                   "Databento's MBP-10, events that leave the top ten levels unchanged make no row)")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="progress on stderr (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    lob = p.add_argument_group("LOBSTER and CSV input")
    lob.add_argument("--instrument-id", type=int, help="instrument id of LOBSTER records (0)")
    lob.add_argument("--publisher-id", type=int, help="publisher id of LOBSTER records (0)")
    lob.add_argument("--date", help="trading date of a LOBSTER file whose name does not say it (YYYY-MM-DD)")
    lob.add_argument("--symbol", help="symbol of a LOBSTER file (default: from its name)")
    lob.add_argument("--price-format", choices=("auto", "decimal", "fixed"), help="CSV prices (auto)")
    p.set_defaults(func=run_book_replay)


def run_book_replay(args: argparse.Namespace) -> int:
    from producers.replay_book import ReplayOptions, replay, summary_lines

    opts = ReplayOptions(
        files=args.files, format=args.format, on_error=args.on_error, crossed_policy=args.crossed_policy,
        mbp10_csv=args.mbp10_csv, every_record=args.every_record, layout=args.layout,
        update_side=args.update_side, top_only=args.top_only,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        reader_opts=_reader_opts(args),
    )
    result = replay(opts)
    if args.summary:
        out = sys.stderr if args.mbp10_csv == "-" else sys.stdout
        print("\n".join(summary_lines(result)), file=out)
    return 0


def _reader_opts(args: argparse.Namespace) -> dict[str, Any]:
    names = {"instrument_id": "instrument_id", "publisher_id": "publisher_id", "date": "date", "symbol": "symbol",
             "price_format": "price_format"}
    return {opt: getattr(args, attr) for opt, attr in names.items() if getattr(args, attr) is not None}


BOOK_COMMANDS: tuple[Adder, ...] = (add_book_replay,)
COMMANDS: tuple[Adder, ...] = (add_book_group,)
