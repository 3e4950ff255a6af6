"""`lienwatch demo` (= `make demo`): an emulated car's data reaches the database end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.services
@pytest.mark.slow
def test_demo_drives_data_end_to_end() -> None:
    result = subprocess.run([sys.executable, "-m", "lienwatch", "demo", "--seconds", "8"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "rejected messages: 0" in out
    assert "Vehicle.Speed" in out and "Vehicle.LowVoltageBattery.CurrentVoltage" in out
    fixes = int(out.split("positions: ", 1)[1].split(" fixes", 1)[0])
    assert fixes >= 3, out
