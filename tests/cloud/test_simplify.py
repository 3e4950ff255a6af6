"""Douglas-Peucker significance: the compiled version (cython_ext/simplify.pyx) computes what the
numpy version (`significance_numpy`, the oracle) computes, and both refuse the same garbage.

Values are compared to within 1e-9 relative and kept sets exactly. A near-tie in the oracle (two
candidates of one segment whose distances differ in the last bits of arcsin) could send the two
versions down different split trees; the compiled code uses the same unit vectors and the same
operations, built without fused multiply-adds, and on these tracks the two agree bit for bit
(`test_values_are_bit_identical_on_this_build` says so, and is the first place to look if an
arcsin implementation differing from numpy's ever breaks the others). Exact ties (duplicates,
collinear points) are broken the same way by both: the FIRST farthest point of a segment.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.simplify import CUT_EVERY, significance, significance_numpy, simplify

Floats = npt.NDArray[np.float64]
M_PER_DEG = 111_195.0
TOLERANCES = (0.0, 0.5, 2.0, 5.0, 10.0, 37.0, 200.0, 5000.0)


def _degrees(north: Floats, east: Floats, lat0: float = 48.1, lon0: float = 11.5) -> tuple[Floats, Floats]:
    return lat0 + north / M_PER_DEG, lon0 + east / (M_PER_DEG * math.cos(math.radians(lat0)))


def _random_walk(rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
    heading = np.cumsum(rng.normal(0, 0.4, n))
    step = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0, 30, n))
    return _degrees(np.cumsum(step * np.cos(heading)), np.cumsum(step * np.sin(heading)))


def _parked(rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
    return _degrees(rng.normal(0, 3, n), rng.normal(0, 3, n))


def _loop(rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
    angle = np.linspace(0, 2 * math.pi * int(rng.integers(1, 4)), n)
    lat, lon = _degrees(800 * np.sin(angle), 800 * (1 - np.cos(angle)))
    lat[-1], lon[-1] = lat[0], lon[0]  # closes exactly: a degenerate first segment
    return lat, lon


def _duplicates(rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
    lat, lon = _random_walk(rng, n)
    source = np.sort(rng.integers(0, n, n))  # runs of the same position, exact repeats
    return lat[source].copy(), lon[source].copy()


def _commute(rng: np.random.Generator, days: int) -> tuple[Floats, Floats]:
    """Days at one fix a minute: parked jitter at home and work, two wiggly 30-minute drives."""
    minutes = np.arange(1440)
    norths, easts = [], []
    for _ in range(days):
        north, east, moving = np.zeros(1440), np.zeros(1440), np.zeros(1440, dtype=bool)
        work = rng.uniform(3000, 15000, 2)
        leave, back = int(rng.integers(420, 540)), int(rng.integers(990, 1110))
        for start, a, b in ((leave, np.zeros(2), work), (back, work, np.zeros(2))):
            f = (minutes[start:start + 30] - start) / 30.0
            wiggle = 400 * np.sin(f * math.pi * 3)
            north[start:start + 30] = a[0] + (b[0] - a[0]) * f + wiggle
            east[start:start + 30] = a[1] + (b[1] - a[1]) * f - wiggle
            moving[start:start + 30] = True
        north[leave + 30:back], east[leave + 30:back] = work[0], work[1]
        north[~moving] += rng.normal(0, 3, (~moving).sum())
        east[~moving] += rng.normal(0, 3, (~moving).sum())
        norths.append(north)
        easts.append(east)
    return _degrees(np.concatenate(norths), np.concatenate(easts))


SHAPES = {"random_walk": _random_walk, "parked": _parked, "loop": _loop, "duplicates": _duplicates}


def _assert_same(lat: Floats, lon: Floats, forced: npt.NDArray[np.bool_] | None,
                 floor_m: float = 0.0) -> None:
    fast = significance(lat, lon, forced, floor_m=floor_m)
    slow = significance_numpy(lat, lon, forced, floor_m=floor_m)
    assert fast.dtype == np.float64 and fast.shape == slow.shape
    assert np.array_equal(np.isinf(fast), np.isinf(slow))
    finite = ~np.isinf(slow)
    np.testing.assert_allclose(fast[finite], slow[finite], rtol=1e-9, atol=0.0)
    for tolerance in TOLERANCES:
        if tolerance >= floor_m:
            assert np.array_equal(fast > tolerance, slow > tolerance), tolerance


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("seed", range(6))
def test_compiled_significance_equals_the_numpy_oracle(shape: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 2000))
    lat, lon = SHAPES[shape](rng, n)
    forced = rng.random(n) < 0.01 if seed % 2 else None
    _assert_same(lat, lon, forced)
    _assert_same(lat, lon, forced, floor_m=float(rng.uniform(0.5, 20.0)))


@pytest.mark.parametrize("floor_m", [0.0, 10.0])
def test_a_month_of_commutes_is_the_same(floor_m: float) -> None:
    lat, lon = _commute(np.random.default_rng(7), 30)
    _assert_same(lat, lon, None, floor_m)


def test_values_are_bit_identical_on_this_build() -> None:
    for shape, seed in ((s, k) for s in sorted(SHAPES) for k in range(3)):
        rng = np.random.default_rng(100 + seed)
        lat, lon = SHAPES[shape](rng, 1500)
        assert np.array_equal(significance(lat, lon), significance_numpy(lat, lon)), shape


def test_points_on_the_line_are_never_split_at_and_exact_ties_agree() -> None:
    # On the equator, a great circle: every distance 0.
    lat, lon = np.zeros(9), np.arange(9, dtype=np.float64) * 0.001
    for version in (significance, significance_numpy):
        assert version(lat, lon).tolist() == [math.inf] + [0.0] * 7 + [math.inf]
    # All one position: every distance 0.
    lat, lon = np.full(40, 48.0, dtype=np.float64), np.full(40, 11.0, dtype=np.float64)
    lat[[7, 21]] = 48.001  # two bumps exactly as far from the (degenerate) segment: the first wins
    fast, slow = significance(lat, lon), significance_numpy(lat, lon)
    assert np.array_equal(fast, slow)
    assert fast[7] == pytest.approx(111.2, abs=0.1) and fast[21] < 1e-3


def test_ends_forced_and_cut_points_are_infinite() -> None:
    lat, lon = _random_walk(np.random.default_rng(1), 1000)
    forced = np.zeros(1000, dtype=bool)
    forced[[10, 500]] = True
    value = significance(lat, lon, forced)
    assert set(np.flatnonzero(np.isinf(value)).tolist()) == {0, 10, 256, 500, 512, 768, 999}
    assert CUT_EVERY == 256
    assert np.array_equal(simplify(lat, lon, 5.0, forced), value > 5.0)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_empty_one_and_two_points(n: int) -> None:
    lat, lon = np.full(n, 48.0), np.full(n, 11.0)
    for version in (significance, significance_numpy):
        value = version(lat, lon, np.ones(n, dtype=bool))
        assert value.dtype == np.float64 and value.tolist() == [math.inf] * n
        assert version(lat, lon).tolist() == [math.inf] * n
    assert simplify(lat, lon, 1.0).tolist() == [True] * n


GOOD = np.array([48.0, 48.001, 48.002]), np.array([11.0, 11.001, 11.0])
GARBAGE = [
    pytest.param((GOOD[0], GOOD[1][:2]), {}, id="lengths"),
    pytest.param((GOOD[0], np.array([11.0])), {}, id="lon-broadcast"),
    pytest.param((np.array([48.0, math.nan, 48.0]), GOOD[1]), {}, id="nan-lat"),
    pytest.param((GOOD[0], np.array([11.0, math.inf, 11.0])), {}, id="inf-lon"),
    pytest.param((np.array([48.0, 91.0, 48.0]), GOOD[1]), {}, id="lat-range"),
    pytest.param((GOOD[0], np.array([11.0, -180.5, 11.0])), {}, id="lon-range"),
    pytest.param((GOOD[0].reshape(3, 1), GOOD[1].reshape(3, 1)), {}, id="2-d"),
    pytest.param((np.array(["48", "48", "48"]), GOOD[1]), {}, id="strings"),
    pytest.param((np.array([48 + 1j, 48, 48]), GOOD[1]), {}, id="complex"),
    pytest.param(GOOD, {"forced": np.array([1, 0, 0])}, id="forced-ints"),
    pytest.param(GOOD, {"forced": np.array([True, False])}, id="forced-length"),
    pytest.param(GOOD, {"floor_m": -1.0}, id="floor-negative"),
    pytest.param(GOOD, {"floor_m": math.nan}, id="floor-nan"),
    pytest.param(GOOD, {"floor_m": True}, id="floor-bool"),
    pytest.param(GOOD, {"floor_m": "5"}, id="floor-text"),
]


@pytest.mark.parametrize(("arrays", "options"), GARBAGE)
def test_garbage_is_refused_by_both_versions_alike(arrays: tuple[object, object],
                                                   options: dict[str, object]) -> None:
    messages = []
    for version in (significance, significance_numpy):
        with pytest.raises(AnalyticsError, match="cannot simplify the track") as error:
            version(*arrays, **options)  # type: ignore[arg-type]
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_an_infinite_floor_splits_nothing() -> None:
    lat, lon = _random_walk(np.random.default_rng(2), 600)
    for version in (significance, significance_numpy):
        value = version(lat, lon, floor_m=math.inf)
        assert set(np.flatnonzero(value).tolist()) == {0, 256, 512, 599}
