"""The compiled FeatureSet agrees with the exact pure-Python reference on hostile streams.

Streams are irregular, contain NaN/±inf, duplicates and out-of-order timestamps, and sit on
offsets up to 1e9; windows are count-only (block min/max) or count+time (deque min/max).
Tolerances are stated in tests/cython_ext/streams.py and docs/cython_ext.md.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cython_ext import reference
from cython_ext import spec as sp
from cython_ext.features import FeatureSet

from .streams import Scale, Stream, assert_features_agree, streams

ALL_FEATURES: tuple[sp.FeatureSpec, ...] = (
    sp.Mean(), sp.Variance(), sp.Std(ddof=0), sp.Min(), sp.Max(), sp.EWMA(alpha=0.25), sp.Slope(),
    sp.RateOfChange(), sp.TimeWeightedMean(), sp.Integral(scale=0.5), sp.Integral(cumulative=True),
    sp.Crossings(low=-0.5, high=0.5), sp.Median(), sp.MAD(), sp.Count(),
)

windows = st.integers(min_value=1, max_value=48)
window_seconds = st.one_of(st.none(), st.floats(min_value=1e-6, max_value=30.0))


def _span_s(ring: reference.RingBuffer) -> float:
    ts = ring.times_ns()
    return float(ts[-1] - ts[0]) * 1e-9 if ts.size else 0.0


@settings(max_examples=200, deadline=None)
@given(stream=streams(), window=windows, window_s=window_seconds)
def test_per_sample_push_matches_reference(stream: Stream, window: int, window_s: float | None) -> None:
    fast = FeatureSet(ALL_FEATURES, window, window_s)
    slow = reference.FeatureSet(ALL_FEATURES, window, window_s)
    scale = Scale.of(stream)
    for i, (t, v) in enumerate(zip(stream.ts_ns.tolist(), stream.values.tolist(), strict=True)):
        assert fast.push(t, v) == slow.push(t, v)
        assert fast.window.values().tolist() == slow.window.values().tolist()
        assert_features_agree(fast.names, fast.values(), slow.values(), scale, _span_s(slow.window),
                              f"sample {i}")
    assert (fast.accepted, fast.late, fast.nonfinite) == (slow.accepted, slow.late, slow.nonfinite)


@settings(max_examples=120, deadline=None)
@given(stream=streams(), window=windows, window_s=window_seconds)
def test_batch_rows_match_reference(stream: Stream, window: int, window_s: float | None) -> None:
    fast = FeatureSet(ALL_FEATURES, window, window_s)
    slow = reference.FeatureSet(ALL_FEATURES, window, window_s)
    n = stream.ts_ns.shape[0]
    got = np.empty((n, len(ALL_FEATURES)))
    accepted = fast.push_many(stream.ts_ns, stream.values, got)
    scale = Scale.of(stream)
    for i, (t, v) in enumerate(zip(stream.ts_ns.tolist(), stream.values.tolist(), strict=True)):
        slow.push(t, v)
        assert_features_agree(fast.names, got[i], slow.values(), scale, _span_s(slow.window), f"row {i}")
    assert (fast.accepted, fast.late, fast.nonfinite) == (slow.accepted, slow.late, slow.nonfinite)
    assert accepted == slow.accepted


@settings(max_examples=60, deadline=None)
@given(stream=streams(max_size=300), window=st.integers(min_value=1, max_value=8),
       cut=st.integers(min_value=0, max_value=300))
def test_batch_then_clear_then_per_sample_matches_reference(stream: Stream, window: int, cut: int) -> None:
    features = (sp.Min(), sp.Max(), sp.Median(), sp.Mean(), sp.Crossings(low=-1.0, high=1.0))
    fast = FeatureSet(features, window)
    slow = reference.FeatureSet(features, window)
    fast.push_many(stream.ts_ns[:cut], stream.values[:cut])
    slow.push_many(stream.ts_ns[:cut], stream.values[:cut])
    fast.clear()
    slow.clear()
    scale = Scale.of(stream)
    for t, v in zip(stream.ts_ns[cut:].tolist(), stream.values[cut:].tolist(), strict=True):
        assert fast.push(t, v) == slow.push(t, v)
        assert_features_agree(fast.names, fast.values(), slow.values(), scale, _span_s(slow.window),
                              "after clear")


@settings(max_examples=60, deadline=None)
@given(stream=streams(), halflife_s=st.floats(min_value=1e-3, max_value=100.0))
def test_time_based_ewma_matches_reference(stream: Stream, halflife_s: float) -> None:
    features = (sp.EWMA(halflife_s=halflife_s),)
    fast = FeatureSet(features, 4)
    slow = reference.FeatureSet(features, 4)
    got = np.empty((stream.ts_ns.shape[0], 1))
    fast.push_many(stream.ts_ns, stream.values, got)
    for i, (t, v) in enumerate(zip(stream.ts_ns.tolist(), stream.values.tolist(), strict=True)):
        slow.push(t, v)
        want = slow.values()[0]
        assert (np.isnan(want) and np.isnan(got[i, 0])) or got[i, 0] == want
