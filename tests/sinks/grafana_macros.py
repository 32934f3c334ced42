"""Grafana's PostgreSQL macros and template variables, expanded the way Grafana does before it sends a panel's
SQL (non-TimescaleDB datasource mode), so that tests can run every panel against the schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MACRO = re.compile(r"\$__(\w+)\(")


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"'?(\d+(?:\.\d+)?)(ms|s|m|h|d|w)'?", text.strip())
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _args(sql: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the macro call whose '(' is at ``start``, and the index after ')'."""
    depth = 0
    args: list[str] = []
    current: list[str] = []
    for i in range(start, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return [a for a in args if a], i + 1
        elif ch == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    raise ValueError(f"unbalanced macro call at {start}: {sql[start:start + 40]!r}")


def _group(args: list[str]) -> str:
    seconds = interval_seconds(args[1])
    step = int(seconds) if seconds == int(seconds) else seconds
    return f"floor(extract(epoch from {args[0]})/{step})*{step}"


def expand(sql: str, start: datetime, end: datetime, interval: str,
           variables: Mapping[str, Sequence[str]]) -> str:
    """``sql`` with ``$__interval``, template variables and the ``$__*()`` macros replaced."""
    frm, to = f"'{start.isoformat()}'", f"'{end.isoformat()}'"
    sql = sql.replace("$__interval_ms", str(int(interval_seconds(interval) * 1000)))
    sql = sql.replace("$__interval", interval)
    for name, values in variables.items():
        text = ",".join("'" + v.replace("'", "''") + "'" for v in values)
        pattern = rf"\$\{{{name}(?::\w+)?\}}|\[\[{name}\]\]|\${name}\b"
        sql = re.sub(pattern, text.replace("\\", "\\\\"), sql)
    macros: dict[str, Callable[[list[str]], str]] = {
        "timeFilter": lambda a: f"{a[0]} BETWEEN {frm} AND {to}",
        "timeFrom": lambda a: frm,
        "timeTo": lambda a: to,
        "time": lambda a: f'{a[0]} AS "time"',
        "timeEpoch": lambda a: f'extract(epoch from {a[0]}) AS "time"',
        "timeGroup": _group,
        "timeGroupAlias": lambda a: f'{_group(a)} AS "time"',
    }
    while (match := _MACRO.search(sql)) is not None:
        name = match.group(1)
        if name not in macros:
            raise ValueError(f"macro $__{name} is not supported by this expander")
        args, end_at = _args(sql, match.end() - 1)
        sql = sql[: match.start()] + macros[name](args) + sql[end_at:]
    if "$" in re.sub(r"\$\d+|'[^']*'", "", sql):
        raise ValueError(f"unexpanded variable left in: {sql}")
    return sql
