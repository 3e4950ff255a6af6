"""The compiled GeoJSON fix points against the Python formatter they replaced (the oracle below),
parsed value for value, and their boundary: typed errors for bad columns."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.analytics.common import iso_times
from cython_ext.errors import SampleError
from cython_ext.geojson import fix_points

_FIX_POINT = ('{"type":"Feature","geometry":{"type":"Point","coordinates":[%r,%r]},'
              '"properties":{"kind":"fix","time":"%s","speed_kmh":%s}}')


def oracle(lon: np.ndarray, lat: np.ndarray, time_us: np.ndarray, speed: np.ndarray) -> bytes:
    """What cloud/analytics/track.py wrote before, in Python (non-finite speeds as null)."""
    lon, lat = np.round(lon, 6), np.round(lat, 6)
    times = iso_times(time_us.astype(np.int64) * 1000)
    out = []
    for x, y, t, v in zip(lon.tolist(), lat.tolist(), times, speed.astype(np.float32).tolist(), strict=True):
        shown = "null" if not math.isfinite(v) else repr(round(v, 1))
        out.append(_FIX_POINT % (x, y, t, shown))
    return ",".join(out).encode()


def compiled(lon: np.ndarray, lat: np.ndarray, time_us: np.ndarray, speed: np.ndarray) -> bytes:
    return fix_points(lon, lat, time_us, speed, millis=bool(np.any(time_us % 1_000_000)))


def parsed(text: bytes) -> list[Any]:
    features: list[Any] = orjson.loads(b"[" + text + b"]")
    return features


def test_a_month_of_fixes_parses_to_the_oracles_values() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    lon = 8.0 + np.cumsum(rng.normal(0, 1e-3, n))
    lat = 47.5 + np.cumsum(rng.normal(0, 1e-3, n))
    time_us = 1_780_000_000_000_000 + np.arange(n, dtype=np.int64) * 60_000_000
    speed = rng.uniform(0, 140, n).astype(np.float32)
    speed[::7] = np.nan
    assert parsed(compiled(lon, lat, time_us, speed)) == parsed(oracle(lon, lat, time_us, speed))


def test_edge_values_match_the_oracle() -> None:
    lon = np.array([180.0, -180.0, 0.0, -0.0, -1e-7, 5e-5, 0.0000005, 179.9999995, -12.3456785])
    lat = np.array([90.0, -90.0, 0.0, -0.0, 1e-7, -5e-5, -0.0000005, 89.9999995, 47.0000015])
    # the oracle works in nanoseconds (as the API's columns are): years 1678 to 2261
    time_us = np.array([0, -1_000_000, 951_782_400_000_000, 9_200_000_000_000_000, -9_200_000_000_000_000,
                        1_709_164_800_000_000, 1_000_000, 86_399_000_000, 86_400_000_000], dtype=np.int64)
    speed = np.array([0.0, -0.04, 0.25, 0.35, 12.349, np.inf, -np.inf, np.nan, 300.05], dtype=np.float32)
    ours, theirs = parsed(compiled(lon, lat, time_us, speed)), parsed(oracle(lon, lat, time_us, speed))
    assert ours == theirs
    # -0.0 stays negative zero where the oracle wrote one (JSON parsers compare it equal to 0.0)
    assert [math.copysign(1, p["geometry"]["coordinates"][0]) for p in ours] == \
        [math.copysign(1, p["geometry"]["coordinates"][0]) for p in theirs]


def test_speeds_round_half_to_even_on_the_exact_value_as_round_does() -> None:
    speed = np.array([0.25, 0.75, 2.25, 0.05, -0.05, 0.35, 12.45, 99.95, -0.04, 1e15, 3.4e38, -1e16,
                      16777215.0], dtype=np.float32)
    n = len(speed)
    ours = parsed(fix_points(np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64), speed))
    assert [p["properties"]["speed_kmh"] for p in ours] == [round(float(v), 1) for v in speed]
    assert [math.copysign(1, p["properties"]["speed_kmh"]) for p in ours][8] == -1  # -0.0 as round gives


def test_times_to_the_millisecond_when_asked() -> None:
    time_us = np.array([1_780_000_000_123_456, 1_780_000_001_000_000], dtype=np.int64)
    text = fix_points([8.0, 8.1], [47.0, 47.1], time_us, [1.0, 2.0], millis=True)
    times = [feature["properties"]["time"] for feature in parsed(text)]
    assert times == iso_times(time_us * 1000) == ["2026-05-28T20:26:40.123Z", "2026-05-28T20:26:41.000Z"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-180, 180), st.floats(-90, 90),
                          st.integers(-9_200_000_000_000_000, 9_200_000_000_000_000),
                          st.floats(width=32, allow_nan=True, allow_infinity=True)), max_size=40))
def test_any_fixes_match_the_oracle(rows: list[tuple[float, float, int, float]]) -> None:
    lon = np.array([r[0] for r in rows], dtype=np.float64)
    lat = np.array([r[1] for r in rows], dtype=np.float64)
    time_us = np.array([r[2] for r in rows], dtype=np.int64)
    speed = np.array([r[3] for r in rows], dtype=np.float32)
    assert parsed(compiled(lon, lat, time_us, speed)) == parsed(oracle(lon, lat, time_us, speed))


def test_times_outside_the_nanosecond_range_are_written_too() -> None:
    text = fix_points([1.0, 2.0], [1.0, 2.0], [-62_135_596_800_000_000, 253_402_300_799_000_000], [1.0, 2.0])
    times = [feature["properties"]["time"] for feature in parsed(text)]
    assert times == ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]


def test_no_fixes_is_empty_text() -> None:
    assert fix_points([], [], np.zeros(0, dtype=np.int64), []) == b""


@pytest.mark.parametrize(("columns", "match"), [
    (([1.0, 2.0], [1.0], [0, 0], [1.0, 1.0]), "unequal length"),
    (([math.nan], [1.0], [0], [1.0]), "outside ±180"),
    (([1.0], [math.inf], [0], [1.0]), "outside ±180"),
    (([181.0], [1.0], [0], [1.0]), "outside ±180"),
    (([1.0], [1.0], [253_402_300_800_000_000], [1.0]), "outside years 1 to 9999"),
    (([1.0], [1.0], [-62_135_596_800_000_001], [1.0]), "outside years 1 to 9999"),
])
def test_bad_columns_are_refused(columns: tuple[list[float], list[float], list[int], list[float]],
                                 match: str) -> None:
    with pytest.raises(SampleError, match=match):
        fix_points(columns[0], columns[1], columns[2], columns[3])


def test_columns_of_the_wrong_shape_or_type_are_refused() -> None:
    with pytest.raises((ValueError, TypeError)):
        fix_points([[1.0]], [[1.0]], [[0]], [[1.0]])
    with pytest.raises((ValueError, TypeError)):
        fix_points(["a"], [1.0], [0], [1.0])
