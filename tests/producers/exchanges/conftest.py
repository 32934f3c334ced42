"""Fixtures of the exchange connector tests: the recorded captures folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def captures(shared_data: Path) -> Path:
    """``shared/data/exchanges``: the recorded raw WebSocket/HTTP captures (skips when absent)."""
    path = shared_data / "exchanges"
    if not path.is_dir():
        pytest.skip(f"exchange captures folder {path} is absent")
    return path
