"""Paths of the shared Databento and LOBSTER files, and helpers to make damaged copies of them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import databento_dbn
import zstandard

ESH4 = "databento/nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESH4_SNAPSHOT = "databento/nautilus/esh4-glbx-mdp3-20231224.mbo.dbn.zst"
ESM4 = "databento/nautilus/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
ARL_CSV = "databento/blockhouse_arl/mbo.csv"
LIVE = "databento/databento-python/test_data.live.dbn.zst"
DBN_VERSIONS = (
    "databento/dbn/test_data.mbo.v1.dbn.zst",
    "databento/dbn/test_data.mbo.v2.dbn.zst",
    "databento/dbn/test_data.mbo.dbn",
    "databento/dbn/test_data.mbo.v3.dbn",
    "databento/dbn/test_data.mbo.v3.dbn.zst",
)
AAPL_DIR = "lobster/AAPL_2012-06-21_level10_first999rows"
AAPL_MESSAGES = f"{AAPL_DIR}/AAPL_2012-06-21_34200000_57600000_message_10.csv"
AAPL_BOOK = f"{AAPL_DIR}/AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"


dbn: Any = databento_dbn  # its stubs type enum members as plain ints and strings


def new_decoder() -> Any:
    """A databento_dbn decoder that upgrades to DBN v3, for reference decoding in tests."""
    return dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)


def decompressed(path: Path) -> bytes:
    """The file's bytes, zstd frames decompressed."""
    data = path.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return data


def transcode_csv(data: bytes, *, pretty: bool = True, schema: Any = None) -> str:
    """Databento's own CSV encoding of DBN bytes (databento_dbn.Transcoder); ``schema`` for mixed files."""
    out = io.BytesIO()
    transcoder = dbn.Transcoder(
        out, dbn.Encoding.CSV, dbn.Compression.NONE, pretty_px=pretty, pretty_ts=pretty, map_symbols=True,
        upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3, schema=schema,
    )
    transcoder.write(data)
    transcoder.flush()
    return out.getvalue().decode()
