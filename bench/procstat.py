"""CPU time of the processes beside a benchmark (Linux ``/proc``): the broker of the local stack, workers, children."""

from __future__ import annotations

import os
from pathlib import Path

from ops.stack.layout import Layout
from topics.settings import Settings


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, its threads included (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_jit(pid: int | None) -> str:
    """How the running broker's JVM compiles (from its command line): "quick (C1 only)", "full" or "unknown"."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, TypeError):
        return "unknown"
    return "quick (C1 only)" if b"-XX:TieredStopAtLevel=1" in args else "full"


def stack_line(settings: Settings, intake: str) -> str:
    """What the figures depend on beside the code: the broker's JIT, who reads the worker's hot topics
    (``intake``), and the worker's GIL switch interval."""
    return (f"broker JIT: {broker_jit(broker_pid(settings).get('broker'))}; worker intake: {intake}; "
            f"GIL switch interval: {settings.streams_switch_interval_us} us")


def broker_pid(settings: Settings) -> dict[str, int]:
    """``{"broker": pid}`` of the local stack's broker of ``settings``, when its PID file is there."""
    path = Layout.of(settings).kafka_pid
    try:
        return {"broker": int(path.read_text().split()[0])}
    except (OSError, ValueError, IndexError):
        return {}
