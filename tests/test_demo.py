"""`lienwatch demo` (= `make demo`): the lender's view of a night tow, end to end through the API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.services
@pytest.mark.slow
def test_demo_shows_the_lender_a_night_tow(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lienwatch", "demo", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "what the lender sees for demo-car-1" in out
    tow = re.search(r"EMERGENCY\s+tow/\S+ at [\d.]+, [\d.]+, detected (\d+) s after it began", out)
    assert tow is not None, out
    assert int(tow.group(1)) <= 60
    assert re.search(r"API: http://127\.0\.0\.1:\d+", out)
    assert f"report: {tmp_path.resolve()}" in out
    assert (tmp_path / "night_tow.png").exists() and (tmp_path / "junit.xml").exists()
