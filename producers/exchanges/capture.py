"""Reading recorded raw WebSocket/HTTP captures into frames.

Two formats are understood (see ``shared/data/exchanges/SOURCES.md``):

- cryptofeed text captures, one line per frame::

      wss://host/path <-> 1618677816.84              connection opened
      wss://host/path <- 1618677817.02: {...}        a frame we sent (subscription)
      1618677817.06: {...}                           a frame received, local receive time in float seconds
      https://host/api?symbol=X -> 1633998512.32: {...}   a REST response (``*.http.*`` files)

- hftbacktest gzip captures: ``<receive time ns> <raw frame>`` per line; a line whose frame is a REST depth
  snapshot (``{"lastUpdateId":...``) is returned as an HTTP frame with an empty URL.
"""

from __future__ import annotations

import gzip
import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

from producers.exchanges.errors import CaptureError
from topics.fixed import parse_fixed

FrameKind = Literal["recv", "sent", "open", "http"]


class CaptureFrame(NamedTuple):
    ts_ns: int  # the capture's local receive (or send) time, ns since the epoch
    kind: FrameKind
    payload: bytes  # the raw frame or response body, exactly as recorded
    url: str = ""  # for sent/open/http lines: the URL the line names


def _seconds_ns(text: str) -> int:
    return parse_fixed(text, "capture timestamp")  # 1e-9 fixed point of seconds == ns


def parse_line(line: str) -> CaptureFrame:
    """One capture line -> a frame; raises :class:`CaptureError` for a line in no known format."""
    if line[:1].isdigit():
        head, _, rest = line.partition(" ")
        if head.endswith(":"):
            return CaptureFrame(_seconds_ns(head[:-1]), "recv", rest.encode())
        kind: FrameKind = "http" if rest.startswith('{"lastUpdateId"') else "recv"
        return CaptureFrame(int(head), kind, rest.encode())
    for marker, kind in ((" <-> ", "open"), (" <- ", "sent"), (" -> ", "http")):
        url, sep, rest = line.partition(marker)
        if sep:
            if kind == "open":
                return CaptureFrame(_seconds_ns(rest.strip()), "open", b"", url)
            ts, _, body = rest.partition(": ")
            return CaptureFrame(_seconds_ns(ts), kind, body.encode(), url)
    raise CaptureError(f"capture line in no known format: {line[:80]!r}")


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line:
                yield line


def read_capture(path: Path) -> list[CaptureFrame]:
    """Every frame of one capture file, in file order."""
    try:
        return [parse_line(line) for line in _lines(path)]
    except CaptureError as e:
        raise CaptureError(f"{path}: {e}") from None


def merge(files: Iterable[Path]) -> list[CaptureFrame]:
    """Frames of several files (a ws capture and its http snapshots) interleaved by receive time.

    Each file keeps its own order (receipt order, which the venue's sequence rules depend on); the files are
    merged like sorted runs.
    """
    return list(heapq.merge(*(read_capture(f) for f in files), key=lambda fr: fr.ts_ns))
