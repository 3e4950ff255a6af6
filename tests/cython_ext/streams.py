"""Hypothesis strategies for sample streams and the stated tolerances of the compiled kernels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

EPS = float(np.finfo(np.float64).eps)
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

# Gaps between consecutive timestamps: regular, jittery, duplicates (0), out-of-order (< 0), long.
_gaps_ns = st.one_of(
    st.just(100_000_000),
    st.integers(min_value=1, max_value=3_000_000_000),
    st.just(0),
    st.integers(min_value=-2_000_000_000, max_value=-1),
    st.integers(min_value=1, max_value=10**4),
    st.integers(min_value=10**11, max_value=10**12),
)
_small = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
_values = st.one_of(
    _small,
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=-3, max_value=3).map(float),  # ties for median/MAD/min/max
)


@dataclass(frozen=True)
class Stream:
    ts_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def finite(self) -> npt.NDArray[np.float64]:
        return self.values[np.isfinite(self.values)]


@st.composite
def streams(draw: st.DrawFn, max_size: int = 160) -> Stream:
    """Irregular, NaN/inf-containing, out-of-order streams around an offset (0, 1e6 or 1e9)."""
    size = draw(st.integers(min_value=0, max_value=max_size))
    pairs = draw(st.lists(st.tuples(_gaps_ns, _values), min_size=size, max_size=size))
    offset = draw(st.sampled_from([0.0, 1e6, 1e9]))
    ts = T0_NS + np.cumsum(np.array([g for g, _ in pairs], dtype=np.int64))
    vs = np.array([v for _, v in pairs], dtype=np.float64) + offset
    return Stream(ts.astype(np.int64), vs)


@dataclass(frozen=True)
class Scale:
    """What the tolerances are relative to: the finite values and time span of the whole stream."""

    vmax: float
    vrange: float
    span_s: float

    @staticmethod
    def of(stream: Stream) -> Scale:
        finite = stream.finite()
        if finite.size == 0:
            return Scale(0.0, 0.0, 0.0)
        span_s = float(stream.ts_ns.max() - stream.ts_ns.min()) * 1e-9 if stream.ts_ns.size else 0.0
        return Scale(float(np.abs(finite).max()), float(np.ptp(finite)), span_s)


def tolerance(name: str, scale: Scale, window_span_s: float) -> float:
    """Stated absolute tolerance of feature `name` against the exact reference (docs/cython_ext.md)."""
    if name in {"min", "max", "median", "mad", "count", "crossings", "rate_of_change", "ewma"}:
        return 0.0
    if name == "mean":
        return 64 * EPS * scale.vmax
    if name == "variance":
        return 64 * EPS * scale.vmax * scale.vrange
    if name == "time_weighted_mean":
        return 256 * EPS * scale.vmax
    if name in {"integral", "integral_total"}:
        return 64 * EPS * scale.vmax * scale.span_s
    if name == "slope":
        if window_span_s <= 0:
            return 0.0
        return 2**14 * EPS * (scale.vmax + scale.vrange * scale.span_s / window_span_s) / window_span_s
    raise KeyError(name)


def assert_features_agree(names: tuple[str, ...], got: npt.NDArray[np.float64],
                          want: npt.NDArray[np.float64], scale: Scale, window_span_s: float,
                          where: str) -> None:
    """Every feature agrees within its tolerance; NaN exactly where the reference has NaN."""
    for name, g, w in zip(names, got.tolist(), want.tolist(), strict=True):
        if math.isnan(w) or math.isnan(g):
            assert math.isnan(w) and math.isnan(g), f"{where}: {name} = {g} but reference {w}"
            continue
        if name == "std":
            # Compare on the variance scale, where the tolerance is stated.
            g, w, name = g * g, w * w, "variance"
        tol = tolerance(name, scale, window_span_s)
        assert abs(g - w) <= tol, f"{where}: {name} = {g!r}, reference {w!r}, |diff| {abs(g - w)!r} > {tol!r}"
