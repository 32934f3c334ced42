"""The replay loop in-process, frames into a list: windows, loops, invalid records, pacing maths, time parsing."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard

from producers.errors import ProducerError
from producers.kafka_out import DeliveryStats
from producers.pacing import Pacer, format_ts, parse_speed, parse_ts
from producers.replay import Replay, ReplayOptions
from producers.replay_source import MBO_SIZE, DbnChunks, InvalidRecordError, SourceError
from tests.producers.conftest import row_of
from topics.records import F_LAST, MboFrame

pytestmark = pytest.mark.unit


class ListSink:
    """A FrameSink that keeps frames in memory."""

    def __init__(self) -> None:
        self.frames: list[MboFrame] = []
        self.stats = DeliveryStats()
        self.fatal: str | None = None

    def send(self, frame: MboFrame) -> None:
        self.frames.append(frame)
        self.stats.frames_sent += 1
        self.stats.records_sent += len(frame)
        self.stats.records_delivered += len(frame)

    def poll(self) -> None:
        pass

    def flush(self, timeout_s: float) -> int:
        return 0

    def queue_depth(self) -> int:
        return 0

    def rows(self) -> list[tuple[Any, ...]]:
        return [row_of(r) for f in self.frames for r in f.records()]


def replay(files: list[str], **options: Any) -> tuple[Replay, ListSink]:
    sink = ListSink()
    r = Replay(ReplayOptions(files=files, progress=False, **options), sink)
    r.run()
    return r, sink


def test_whole_file_in_order_with_frames_ending_on_f_last(esh4: Path, esh4_rows: tuple[Any, ...]) -> None:
    r, sink = replay([str(esh4)], max_records=100, chunk_records=1000)
    assert sink.rows() == list(esh4_rows)
    assert all(f.flags[-1] & F_LAST for f in sink.frames)
    assert r.st.state == "finished" and r.st.records_read == len(esh4_rows) and r.percent() == 100.0


def test_window_and_loops(esh4: Path, esh4_rows: tuple[Any, ...]) -> None:
    start, end = parse_ts("2023-12-25T23:10:00Z"), parse_ts("2023-12-25T23:20:00.5Z")
    _, sink = replay([str(esh4)], start_ns=start, end_ns=end, loops=2)
    window = [row for row in esh4_rows if start <= row[0] <= end]
    assert window and sink.rows() == window + window


def corrupt_copy(src: Path, dst: Path, rows: list[int], byte: int = 38, value: bytes = b"X") -> None:
    """An uncompressed copy of the DBN file ``src`` with one byte of some MBO records replaced."""
    with open(src, "rb") as f:
        data = bytearray(zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read())
    (length,) = struct.unpack_from("<I", data, 4)
    for row in rows:
        pos = 8 + length + row * MBO_SIZE + byte
        data[pos : pos + 1] = value
    dst.write_bytes(bytes(data))


def test_an_invalid_record_stops_the_replay_after_sending_what_came_before(
    esh4: Path, esh4_rows: tuple[Any, ...], tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.dbn"
    corrupt_copy(esh4, bad, [9000])
    sink = ListSink()
    r = Replay(ReplayOptions(files=[str(bad)], progress=False), sink)
    with pytest.raises(InvalidRecordError) as err:
        r.run()
    assert err.value.row == 9000 and err.value.path == str(bad) and "'X'" in str(err.value)
    assert err.value.offset is not None and str(err.value.offset) in str(err.value)
    assert sink.rows() == list(esh4_rows[:9000])
    assert r.st.state == "failed"


def test_skip_invalid_drops_and_counts_bad_records(esh4: Path, esh4_rows: tuple[Any, ...], tmp_path: Path) -> None:
    bad = tmp_path / "bad.dbn"
    corrupt_copy(esh4, bad, [5, 20_000], byte=39, value=b"?")  # side
    r, sink = replay([str(bad)], skip_invalid=True)
    assert r.st.rejected == 2
    assert sink.rows() == [row for i, row in enumerate(esh4_rows) if i not in (5, 20_000)]


def test_not_a_dbn_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.dbn"
    path.write_bytes(b"hello world")
    with pytest.raises(SourceError, match="not a DBN file"):
        DbnChunks(path)


def test_truncated_dbn_file_is_reported(esh4: Path, tmp_path: Path) -> None:
    with open(esh4, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    path = tmp_path / "cut.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(data[:-10]))
    with pytest.raises(SourceError, match="truncated"):
        list(DbnChunks(path))


def test_pacer_follows_recorded_time_times_speed() -> None:
    pacer = Pacer(speed=2.0)
    ts = [0, 1_000_000_000, 2_000_000_000, 4_000_000_000]
    assert pacer.due(ts, 0, now=10.0) == 1  # anchors on the first record
    assert pacer.wait_s(ts[1], now=10.0) == pytest.approx(0.5)
    assert pacer.due(ts, 1, now=10.5) == 2
    assert pacer.due(ts, 2, now=11.0) == 3
    pacer.set_speed(4.0, position_ns=2_000_000_000, now=20.0)  # no jump in session time
    assert pacer.wait_s(ts[3], now=20.0) == pytest.approx(0.5)
    pacer.set_speed(None, position_ns=None, now=21.0)
    assert not pacer.active and pacer.due(ts, 0, now=21.0) == 4
    with pytest.raises(ProducerError):
        Pacer(speed=0)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1703545200000000000", 1703545200000000000),
        ("2023-12-25T23:00:00Z", 1703545200000000000),
        ("2023-12-25T23:00:00.123456789Z", 1703545200123456789),
        ("2023-12-25 23:00:00.5", 1703545200500000000),
        ("2023-12-26T00:00:00+01:00", 1703545200000000000),
        ("2023-12-25", 1703462400000000000),
    ],
)
def test_parse_ts(text: str, ns: int) -> None:
    assert parse_ts(text) == ns


def test_time_and_speed_errors_and_formatting() -> None:
    with pytest.raises(ProducerError, match="ISO 8601"):
        parse_ts("yesterday")
    with pytest.raises(ProducerError, match="positive"):
        parse_speed("-3")
    assert parse_speed("max") is None and parse_speed("2.5") == 2.5
    assert format_ts(1703545200123456789) == "2023-12-25T23:00:00.123456789Z"


def test_progress_line_names_position_rate_and_percent(esh4: Path) -> None:
    out = io.StringIO()
    sink = ListSink()
    Replay(ReplayOptions(files=[str(esh4)]), sink, progress_out=out).run()
    last = out.getvalue().strip().splitlines()[-1]
    assert "finished" in last and "68,792 records" in last and "2023-12-25T23:59:59.446821072Z" in last
    assert "100.00%" in last


def test_csv_files_replay_through_the_readers(tmp_path: Path) -> None:
    from producers.simulator.generator import SimConfig, SimEvent, Simulator
    from producers.simulator.output import StreamWriter

    sim = Simulator(SimConfig(instruments=4, seed=11))
    events = [item for item in sim.take(records=5_000) if isinstance(item, SimEvent)]
    path = tmp_path / "sim.csv"
    with StreamWriter(path, sim.symbols, sim.config.start_ns) as writer:
        for event in events:
            writer.write(event.records)
    _, sink = replay([str(path)], chunk_records=700)
    assert sorted(sink.rows()) == sorted(row_of(r) for e in events for r in e.records)
    assert {f.symbol for f in sink.frames} == set(sim.symbols.values())

    lines = path.read_text().splitlines(keepends=True)
    lines[100] = lines[100].replace(",A,", ",Q,", 1).replace(",C,", ",Q,", 1)
    path.write_text("".join(lines))
    with pytest.raises(InvalidRecordError, match=r"sim\.csv"):
        replay([str(path)], chunk_records=700)
    r, sink = replay([str(path)], skip_invalid=True)
    assert r.st.rejected == 1 and len(sink.rows()) == 4_999
