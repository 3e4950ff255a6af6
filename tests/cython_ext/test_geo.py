"""Position extractors: haversine distance and dwell, against the reference and known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cython_ext import geo, reference
from cython_ext.errors import FeatureConfigError, SampleError
from cython_ext.status import EARTH_RADIUS_M, PushStatus

S = 1_000_000_000
DISTANCE = [geo.HaversineDistance, reference.HaversineDistance]
DWELL = [geo.Dwell, reference.Dwell]


@pytest.mark.parametrize("cls", DISTANCE)
def test_known_great_circle_distances(cls: type[geo.HaversineDistance]) -> None:
    d = cls()
    d.push(0, 0.0, 0.0)
    d.push(S, 1.0, 0.0)
    assert d.total_m == pytest.approx(2 * math.pi * EARTH_RADIUS_M / 360, rel=1e-12)
    q = cls()
    q.push(0, 0.0, 179.5)
    q.push(S, 0.0, -179.5)  # across the antimeridian: 1 degree, not 359
    assert q.total_m == pytest.approx(2 * math.pi * EARTH_RADIUS_M / 360, rel=1e-9)
    pole = cls()
    pole.push(0, 0.0, 0.0)
    pole.push(S, 90.0, 0.0)
    assert pole.total_m == pytest.approx(math.pi * EARTH_RADIUS_M / 2, rel=1e-12)


@pytest.mark.parametrize("cls", DISTANCE)
def test_min_step_keeps_parked_jitter_out_and_driving_in(cls: type[geo.HaversineDistance]) -> None:
    rng = np.random.default_rng(1)
    n = 600
    ts = np.arange(n, dtype=np.int64) * S
    m_per_deg = 2 * math.pi * EARTH_RADIUS_M / 360
    jitter = rng.normal(0, 2.0 / m_per_deg, (2, n))  # ~2 m GNSS noise
    parked = cls(min_step_m=15.0)
    parked.push_many(ts, 48.0 + jitter[0], 11.0 + jitter[1])
    raw = cls()
    raw.push_many(ts, 48.0 + jitter[0], 11.0 + jitter[1])
    assert parked.total_m < 30.0 < 1000.0 < raw.total_m
    driving = cls(min_step_m=15.0)
    driving.push_many(ts, 48.0 + np.arange(n) * (20.0 / m_per_deg), np.full(n, 11.0))  # 20 m/s north
    assert driving.total_m == pytest.approx(20.0 * (n - 1), rel=1e-6)


@pytest.mark.parametrize("cls", DWELL)
def test_dwell_grows_inside_the_radius_and_restarts_outside(cls: type[geo.Dwell]) -> None:
    m_per_deg = 2 * math.pi * EARTH_RADIUS_M / 360
    dwell = cls(radius_m=50.0)
    assert math.isnan(dwell.dwell_s) and dwell.anchor is None
    for i in range(301):
        dwell.push(i * S, 48.0 + (i % 5) * (5.0 / m_per_deg), 11.0)  # wanders within 20 m
    assert dwell.dwell_s == 300.0 and dwell.anchor == (48.0, 11.0) and dwell.anchor_t_ns == 0
    dwell.push(301 * S, 48.0 + 100.0 / m_per_deg, 11.0)  # 100 m away: a new anchor
    assert dwell.dwell_s == 0.0 and dwell.anchor_t_ns == 301 * S
    dwell.push(311 * S, 48.0 + 120.0 / m_per_deg, 11.0)
    assert dwell.dwell_s == 10.0


@pytest.mark.parametrize("cls", [*DISTANCE, *DWELL])
def test_position_rule_counts_nan_out_of_range_and_late(cls: type[geo.Dwell]) -> None:
    p = cls(10.0) if cls in DWELL else cls()  # type: ignore[call-arg]
    assert p.push(10 * S, 48.0, 11.0) == PushStatus.ACCEPTED
    assert p.push(11 * S, math.nan, 11.0) == PushStatus.NONFINITE
    assert p.push(12 * S, 48.0, math.inf) == PushStatus.NONFINITE
    assert p.push(13 * S, 91.0, 11.0) == PushStatus.OUT_OF_RANGE
    assert p.push(14 * S, 48.0, -180.5) == PushStatus.OUT_OF_RANGE
    assert p.push(9 * S, 48.0, 11.0) == PushStatus.LATE
    assert p.push(10 * S, 48.0, 11.0) == PushStatus.ACCEPTED
    assert (p.accepted, p.nonfinite, p.out_of_range, p.late) == (2, 2, 2, 1)


@pytest.mark.parametrize("cls", [*DISTANCE, *DWELL])
def test_garbage_fixes_are_sample_errors(cls: type[geo.Dwell]) -> None:
    p = cls(10.0) if cls in DWELL else cls()  # type: ignore[call-arg]
    for fix in [(1.5, 48.0, 11.0), (1, "48", 11.0), (1, 48.0, None), (2**63, 0.0, 0.0)]:
        with pytest.raises(SampleError):
            p.push(*fix)  # type: ignore[arg-type]
    with pytest.raises(SampleError):
        p.push_many([1, 2], [48.0], [11.0, 11.0])
    with pytest.raises(SampleError):
        p.push_many([1.0, 2.0], [48.0, 48.0], [11.0, 11.0])
    assert p.accepted == 0


@pytest.mark.parametrize("make", [
    lambda: geo.HaversineDistance(-1.0), lambda: geo.HaversineDistance(math.nan),
    lambda: geo.HaversineDistance("5"),  # type: ignore[arg-type]
    lambda: geo.Dwell(0.0), lambda: geo.Dwell(math.inf),
    lambda: geo.Dwell(True), lambda: reference.HaversineDistance(-1.0), lambda: reference.Dwell(-5.0),
])
def test_bad_parameters_are_config_errors(make: object) -> None:
    with pytest.raises(FeatureConfigError):
        make()  # type: ignore[operator]


_coord = st.one_of(
    st.floats(min_value=-0.01, max_value=0.01),
    st.sampled_from([math.nan, math.inf, 200.0, -95.0]),
)


@settings(max_examples=150, deadline=None)
@given(fixes=st.lists(st.tuples(st.integers(min_value=-3 * S, max_value=60 * S), _coord, _coord),
                      max_size=120),
       base=st.sampled_from([(0.0, 0.0), (48.1, 11.5), (-33.9, 151.2), (89.99, 179.99)]),
       min_step_m=st.sampled_from([0.0, 5.0, 200.0]), radius_m=st.sampled_from([1.0, 50.0, 500.0]))
def test_position_extractors_match_reference(fixes: list[tuple[int, float, float]], base: tuple[float, float],
                                             min_step_m: float, radius_m: float) -> None:
    ts = np.cumsum(np.array([f[0] for f in fixes], dtype=np.int64))
    lats = np.array([base[0] + f[1] for f in fixes])
    lons = np.array([base[1] + f[2] for f in fixes])
    fast_d, slow_d = geo.HaversineDistance(min_step_m), reference.HaversineDistance(min_step_m)
    fast_w, slow_w = geo.Dwell(radius_m), reference.Dwell(radius_m)
    assert fast_d.push_many(ts, lats, lons) == slow_d.push_many(ts, lats, lons)
    assert fast_d.total_m == pytest.approx(slow_d.total_m, rel=1e-12, abs=1e-9)
    for t, a, o in zip(ts.tolist(), lats.tolist(), lons.tolist(), strict=True):
        assert fast_w.push(t, a, o) == slow_w.push(t, a, o)
        assert fast_w.dwell_s == slow_w.dwell_s or (math.isnan(fast_w.dwell_s) and math.isnan(slow_w.dwell_s))
        assert fast_w.anchor == slow_w.anchor
    assert (fast_d.late, fast_d.nonfinite, fast_d.out_of_range) == \
        (slow_d.late, slow_d.nonfinite, slow_d.out_of_range)


@settings(max_examples=300, deadline=None)
@given(st.floats(-90, 90), st.floats(-180, 180), st.floats(-90, 90), st.floats(-180, 180))
def test_distance_m_is_the_reference_haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    expected = reference.haversine_m(lat1, lon1, lat2, lon2)
    assert geo.distance_m(lat1, lon1, lat2, lon2) == pytest.approx(expected, rel=1e-12, abs=1e-6)


def test_distance_m_refuses_garbage_and_flags_impossible_positions() -> None:
    assert geo.distance_m(0, 0, 0, 1) == pytest.approx(2 * math.pi * EARTH_RADIUS_M / 360, rel=1e-12)
    assert math.isnan(geo.distance_m(91.0, 0, 0, 0))
    assert math.isnan(geo.distance_m(0, float("nan"), 0, 0))
    assert math.isnan(geo.distance_m(0, 0, 0, 181.0))
    with pytest.raises(SampleError, match="four numbers"):
        geo.distance_m("47", 8, 47, 8)  # type: ignore[arg-type]
