"""Small test-local readers for the recorded Databento files (the real readers live in producers/readers).

DBN goes through databento_dbn directly; Databento's CSV layout gets a tiny parser. Both yield
topics.records.MboRecord. Decoded files are cached for the session: several tests replay the same day.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import databento_dbn
import zstandard

from topics.records import UNDEF_PRICE, MboRecord

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "databento"

ESH4_1225 = "nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESH4_1224 = "nautilus/esh4-glbx-mdp3-20231224.mbo.dbn.zst"
ESM4 = "nautilus/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
ARL_CSV = "blockhouse_arl/mbo.csv"
DBN_MBO_FILES = (
    ESH4_1225, ESH4_1224, ESM4,
    "dbn/test_data.mbo.dbn", "dbn/test_data.mbo.v1.dbn.zst", "dbn/test_data.mbo.v2.dbn.zst",
    "dbn/test_data.mbo.v3.dbn", "dbn/test_data.mbo.v3.dbn.zst",
    "databento-python/GLBX.MDP3/test_data.mbo.dbn.zst", "databento-python/XNAS.ITCH/test_data.mbo.dbn.zst",
    "databento-python/IFEU.IMPACT/test_data.mbo.dbn.zst", "databento-python/NDEX.IMPACT/test_data.mbo.dbn.zst",
    "databento-python/test_data.live.dbn.zst",
)
ALL_MBO_FILES = (*DBN_MBO_FILES, ARL_CSV)


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".zst":
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        data = reader.read()
    return data


@lru_cache(maxsize=32)
def dbn_records(name: str) -> tuple[Any, ...]:
    """Every record of a DBN file (metadata dropped), upgraded to DBN v3."""
    policy = databento_dbn.VersionUpgradePolicy.UPGRADE_TO_V3
    decoder = databento_dbn.DBNDecoder(upgrade_policy=policy)  # type: ignore[arg-type]  # the stub says int
    decoder.write(_raw_bytes(DATA / name))
    decoded = decoder.decode()
    return tuple(r for r in decoded if not isinstance(r, databento_dbn.Metadata))


def char(value: Any) -> str:
    """databento_dbn exposes action and side as str-valued enums (Action.ADD.value == "A")."""
    return str(getattr(value, "value", value))


def to_record(msg: Any) -> MboRecord:
    """A databento_dbn MBOMsg as a topics MboRecord."""
    return MboRecord(
        ts_recv=msg.ts_recv, ts_event=msg.ts_event, publisher_id=int(msg.publisher_id),
        instrument_id=msg.instrument_id, action=char(msg.action), side=char(msg.side),  # type: ignore[arg-type]
        price=msg.price, size=msg.size, channel_id=msg.channel_id, order_id=msg.order_id, flags=int(msg.flags),
        ts_in_delta=msg.ts_in_delta, sequence=msg.sequence,
    )


@lru_cache(maxsize=32)
def mbo_records(name: str) -> tuple[MboRecord, ...]:
    """The MBO records of a recorded file (DBN or Databento CSV), in file order."""
    if name.endswith(".csv"):
        return read_mbo_csv(DATA / name)
    return tuple(to_record(r) for r in dbn_records(name) if isinstance(r, databento_dbn.MBOMsg))


def parse_price(text: str) -> int:
    """Databento CSV decimal price ("5.510000000", "" when undefined) as 1e-9 fixed point."""
    if not text:
        return UNDEF_PRICE
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    value = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -value if negative else value


def parse_ts(text: str) -> int:
    """ISO UTC timestamp with nanoseconds ("2025-07-17T07:05:09.035793433Z") as ns since the epoch."""
    base, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9])


def read_mbo_csv(path: Path) -> tuple[MboRecord, ...]:
    with path.open(newline="") as f:
        return tuple(
            MboRecord(
                ts_recv=parse_ts(row["ts_recv"]), ts_event=parse_ts(row["ts_event"]),
                publisher_id=int(row["publisher_id"]), instrument_id=int(row["instrument_id"]),
                action=row["action"], side=row["side"], price=parse_price(row["price"]),  # type: ignore[arg-type]
                size=int(row["size"]), channel_id=int(row["channel_id"]), order_id=int(row["order_id"]),
                flags=int(row["flags"]), ts_in_delta=int(row["ts_in_delta"]), sequence=int(row["sequence"]),
            )
            for row in csv.DictReader(f)
        )
