"""bench/wire.py keeps its output contract (a table, then the JSON line the issue specifies).

Only the shape is checked here; the numbers and goals are the benchmark's business.
"""

from __future__ import annotations

import itertools
import json

import pytest

import protocol
from bench import wire


def test_bench_prints_the_specified_json_line_last(capsys: pytest.CaptureFixture[str]):
    wire.main(n_batches=2, rounds=1)
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert set(figures) == {"bytes_per_fix", "decode_fixes_per_s"}
    assert set(figures["bytes_per_fix"]) == {"json", "cbor_map", "lienwatch", "lienwatch_deflate"}
    assert set(figures["decode_fixes_per_s"]) == {"json", "lienwatch"}
    assert any(line.startswith("lienwatch ") for line in lines)


def test_simulated_drive_is_plausible_and_lossless():
    fixes = wire.city_drive(seed=3)
    assert len(fixes) == wire.FIXES_PER_BATCH
    speeds = [f.speed_kmh for f in fixes]
    assert min(speeds) >= 0 and max(speeds) < 130
    steps = [abs(b.lat_deg - a.lat_deg) + abs(b.lon_deg - a.lon_deg) for a, b in itertools.pairwise(fixes)]
    assert max(steps) < 0.001  # under ~100 m per second
    batch = wire.batch_of(fixes, 1)
    assert protocol.decode(protocol.encode(batch)) == batch
