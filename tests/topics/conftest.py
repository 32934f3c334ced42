"""Real MBO records from the shared Databento files, read with databento-dbn directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from topics.records import MboRecord


def read_dbn_mbo(path: Path) -> list[MboRecord]:
    """Every MBO record of a DBN file (plain or .zst), as our record type."""
    import databento_dbn
    import zstandard

    with path.open("rb") as f:
        raw = (
            zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
            if path.suffix == ".zst"
            else f.read()
        )
    policy = databento_dbn.VersionUpgradePolicy.UPGRADE_TO_V3
    decoder = databento_dbn.DBNDecoder(upgrade_policy=policy)  # type: ignore[arg-type]
    decoder.write(raw)
    return [
        MboRecord(
            ts_recv=m.ts_recv, ts_event=m.ts_event, publisher_id=int(m.publisher_id),
            instrument_id=m.instrument_id, action=str(m.action), side=str(m.side),  # type: ignore[arg-type]
            price=m.price, size=m.size, channel_id=m.channel_id, order_id=m.order_id, flags=int(m.flags),
            ts_in_delta=m.ts_in_delta, sequence=m.sequence,
        )
        for m in decoder.decode()
        if isinstance(m, databento_dbn.MBOMsg)
    ]


@pytest.fixture(scope="session")
def esh4_records(shared_data: Path) -> list[MboRecord]:
    return read_dbn_mbo(shared_data / "databento" / "nautilus" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")
