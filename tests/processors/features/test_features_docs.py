"""docs/features.md is the generated catalog of the current code, one row per feature."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.features import FeatureEngine
from processors.features.docs import catalog_markdown

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "features.md"


def test_features_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == catalog_markdown(), "run: .venv/bin/python bench/make_docs.py --no-plot"


def test_every_feature_has_a_row_with_formula_inputs_window_and_warmup() -> None:
    rows = [line for line in catalog_markdown().splitlines() if line.startswith("| `")]
    names = FeatureEngine().names()
    assert [r.split("`")[1] for r in rows] == list(names)
    assert all(len(r.split(" | ")) == 6 and all(c.strip() for c in r.split(" | ")) for r in rows)
