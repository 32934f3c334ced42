"""What the deployment files may name: orderflow commands (checked against the real argparse parser), the ports
those commands listen on (from their options and the settings' defaults), ORDERFLOW_* variables (checked by loading
them through topics/settings.py) and the image the project builds."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from streams.cli import build_parser
from topics import settings

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = "/opt/orderflow/expose.py"
SETTINGS_VARS = frozenset(settings.PREFIX + f.name.upper() for f in fields(settings.Settings))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@functools.cache
def parser() -> argparse.ArgumentParser:
    return build_parser()


@dataclass(frozen=True)
class Command:
    """An orderflow command line of a container: the ports its launcher publishes and the parsed arguments."""

    exposed: frozenset[int]
    args: argparse.Namespace
    argv: tuple[str, ...]


def orderflow_command(command: Sequence[str], where: str) -> Command | None:
    """The orderflow command in ``command`` (``orderflow ...`` or the launcher running it); None for others.

    Fails naming ``where`` when the launcher's port list is malformed or argparse refuses the arguments."""
    argv = list(command)
    exposed: frozenset[int] = frozenset()
    if argv[:2] == ["python", LAUNCHER]:
        assert len(argv) > 4 and argv[3] == "--", f"{where}: launcher usage is PORT[,PORT] -- COMMAND: {argv}"
        exposed = frozenset(int(p) for p in argv[2].split(","))
        argv = argv[4:]
    if not argv or argv[0] != "orderflow":
        return None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser().parse_args(argv[1:])
    except SystemExit:
        raise AssertionError(f"{where}: `{' '.join(argv)}` is refused by orderflow's parser: "
                             f"{stderr.getvalue().strip()}") from None
    assert getattr(args, "func", None), f"{where}: `{' '.join(argv)}` names no orderflow subcommand"
    return Command(exposed, args, tuple(argv))


def listening_ports(command: Command, env: Mapping[str, str]) -> set[int]:
    """TCP ports the command serves, from its options and the settings the container's environment gives."""
    conf = settings.load(env)
    args = command.args
    name = args.command
    if name == "worker":
        return {args.web_port or conf.streams_web_port}
    if name == "sink":
        port = args.metrics_port if args.metrics_port is not None else conf.sink_metrics_port
        return {port} if port > 0 else set()
    if name == "ingest":
        return {args.metrics_port} if args.metrics_port else set()
    if name == "fake-exchange":
        return {args.port}
    if name in ("simulate", "replay"):
        ports = {args.metrics_port} if args.metrics_port else set()
        if name == "replay" and not args.no_control:
            ports.add(args.control_port)
        return ports
    return set()


def check_environment(env: Mapping[str, str], where: str) -> None:
    """Every ORDERFLOW_* variable is a setting, and the values load (types and choices validated)."""
    unknown = sorted(k for k in env if k.startswith(settings.PREFIX) and k not in SETTINGS_VARS)
    assert not unknown, f"{where}: not settings of topics/settings.py: {unknown}"
    settings.load(env)


def is_our_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0] == "orderflow"


def check_our_image(image: str, where: str) -> None:
    name, _, tag = image.rsplit("/", 1)[-1].partition(":")
    assert (name, tag) == ("orderflow", VERSION), f"{where}: image {image} is not orderflow:{VERSION} (pyproject)"


def check_pinned(image: str, where: str) -> None:
    """A third-party image names an exact version: a tag with digits (not latest) or a digest."""
    if "@sha256:" in image:
        return
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    assert tag and tag != "latest" and any(c.isdigit() for c in tag), f"{where}: image {image} is not pinned"
