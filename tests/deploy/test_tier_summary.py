"""The pytest summary counts outcomes per tier (unit, integration, e2e, browser; unmarked tests apart), from the
hook in tests/conftest.py, on a real pytest run of a small suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.references import REPO

pytestmark = pytest.mark.unit

SUITE = '''
import pytest

@pytest.mark.unit
def test_passes(): pass

@pytest.mark.unit
def test_fails(): assert False

@pytest.mark.integration
def test_skips(): pytest.skip("no broker")

@pytest.mark.integration
@pytest.mark.e2e
def test_two_tiers(): pass

def test_unmarked(): pass
'''


def test_summary_shows_each_tier_with_its_outcomes(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                          str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    lines = out.stdout.split("tests per tier", 1)[1].splitlines()
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.split() and line[0].isalpha()}
    assert out.returncode == 1
    assert rows["unit"] == "1 passed, 1 failed"
    assert rows["integration"] == "1 passed, 1 skipped"
    assert rows["e2e"] == "1 passed"
    assert rows["browser"] == "none run"
    assert rows["unmarked"] == "1 passed"
