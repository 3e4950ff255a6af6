"""Pure-Python twins of the compiled ring buffer, feature set and position extractors.

The test oracle: the same constructors, methods and rules as `cython_ext.ring`,
`cython_ext.features` and `cython_ext.geo`, but every windowed feature is recomputed from the
window's contents on each read with careful two-pass arithmetic (`math.fsum`, exact sorting), so
it shares no streaming algorithm with the compiled code. Slow on purpose; never use it on a
gateway.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cython_ext import spec as sp
from cython_ext.batch import as_output, as_timestamps_ns, as_values
from cython_ext.errors import FeatureConfigError, SampleError
from cython_ext.status import EARTH_RADIUS_M, PushStatus

_NS = 1e-9
_Views = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


def _sample(t_ns: object, value: object) -> tuple[int, float]:
    if isinstance(t_ns, bool) or not isinstance(t_ns, (int, np.integer)):
        raise SampleError(f"timestamp must be an int of ns, got {t_ns!r}")
    if not -(2**63) <= int(t_ns) < 2**63:
        raise SampleError(f"timestamp {t_ns} does not fit in int64 ns")
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise SampleError(f"value must be a real number, got {value!r}")
    return int(t_ns), float(value)


class _ExactSum:
    """Shewchuk's exact running sum (the partials of `math.fsum`), for cumulative totals."""

    def __init__(self) -> None:
        self._partials: list[float] = []

    def add(self, x: float) -> None:
        partials: list[float] = []
        for y in self._partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials.append(lo)
            x = hi
        partials.append(x)
        self._partials = partials

    @property
    def value(self) -> float:
        return math.fsum(self._partials)


class RingBuffer:
    """Fixed-capacity history of (int64 ns, float64) samples; the oldest is overwritten when full."""

    def __init__(self, capacity: int) -> None:
        self._capacity = sp.check_capacity(capacity)
        self._samples: deque[tuple[int, float]] = deque(maxlen=self._capacity)
        self._last_t_ns: int | None = None
        self.accepted = 0
        self.late = 0
        self.nonfinite = 0
        self._owned = False

    def _check_writable(self) -> None:
        if self._owned:
            raise SampleError("this RingBuffer is a FeatureSet's window: push to the FeatureSet, not to it")

    def _append(self, t_ns: int, value: float) -> int:
        t, v = _sample(t_ns, value)
        if not math.isfinite(v):
            self.nonfinite += 1
            return PushStatus.NONFINITE
        if self._last_t_ns is not None and t < self._last_t_ns:
            self.late += 1
            return PushStatus.LATE
        self._samples.append((t, v))
        self._last_t_ns = t
        self.accepted += 1
        return PushStatus.ACCEPTED

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def size(self) -> int:
        return len(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def last_t_ns(self) -> int | None:
        """Newest accepted timestamp (kept after `clear()`, so ordering survives a clear)."""
        return self._last_t_ns

    def push(self, t_ns: int, value: float) -> int:
        """Store one sample; return a `PushStatus` (non-finite first, then late)."""
        self._check_writable()
        return self._append(t_ns, value)

    def push_many(self, ts_ns: object, values: object) -> int:
        """Push every sample in order; return how many were accepted."""
        self._check_writable()
        ts = as_timestamps_ns(ts_ns)
        vs = as_values(values, ts.shape[0])
        return sum(self.push(int(t), float(v)) == PushStatus.ACCEPTED for t, v in zip(ts, vs, strict=True))

    def clear(self) -> None:
        """Forget the samples (counters and the newest timestamp stay)."""
        self._check_writable()
        self._samples.clear()

    def _arrays(self, samples: Sequence[tuple[int, float]]) -> _Views:
        ts = np.array([s[0] for s in samples], dtype=np.int64)
        vs = np.array([s[1] for s in samples], dtype=np.float64)
        return ts, vs

    def times_ns(self) -> npt.NDArray[np.int64]:
        return self._arrays(list(self._samples))[0]

    def values(self) -> npt.NDArray[np.float64]:
        return self._arrays(list(self._samples))[1]

    def last(self, n: int) -> _Views:
        """The newest min(n, size) samples, oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SampleError(f"n must be an int >= 0, got {n!r}")
        samples = list(self._samples)
        return self._arrays(samples[len(samples) - min(n, len(samples)):])

    def since(self, t_ns: int) -> _Views:
        """The samples with timestamp >= t_ns, oldest first."""
        t0, _ = _sample(t_ns, 0.0)
        return self._arrays([s for s in self._samples if s[0] >= t0])

    def within_ns(self, duration_ns: int) -> _Views:
        """The samples newer than (newest timestamp - duration_ns), oldest first."""
        d, _ = _sample(duration_ns, 0.0)
        if d < 0:
            raise SampleError(f"duration_ns must be >= 0, got {duration_ns}")
        if not self._samples:
            return self._arrays([])
        newest = self._samples[-1][0]
        return self._arrays([s for s in self._samples if s[0] > newest - d])


class FeatureSet:
    """Several features over one window, updated by one `push`; recomputed exactly on each read."""

    def __init__(
        self, features: Sequence[sp.FeatureSpec], window: int, window_s: float | None = None
    ) -> None:
        self._specs = sp.check_features(features)
        config = sp.check_window(window, window_s)
        self._duration_ns = config.duration_ns
        self._window = RingBuffer(config.capacity)
        self._window._owned = True
        self._names = tuple(s.name for s in self._specs)
        self._ewma: float | None = None
        self._prev: tuple[int, float] | None = None
        self._integral_total = _ExactSum()
        self._cross_state = 0  # 0 unknown, 1 low, 2 high
        self._cross_seqs: deque[int] = deque()

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def window(self) -> RingBuffer:
        return self._window

    @property
    def size(self) -> int:
        return len(self._window)

    @property
    def accepted(self) -> int:
        return self._window.accepted

    @property
    def late(self) -> int:
        return self._window.late

    @property
    def nonfinite(self) -> int:
        return self._window.nonfinite

    def push(self, t_ns: int, value: float) -> int:
        """Add one sample to every feature; return a `PushStatus`."""
        seq = self._window.accepted
        status = self._window._append(t_ns, value)
        if status != PushStatus.ACCEPTED:
            return status
        t, v = int(t_ns), float(value)
        if self._duration_ns:
            samples = self._window._samples
            while len(samples) > 1 and samples[0][0] <= t - self._duration_ns:
                samples.popleft()
        for spec in self._specs:
            if isinstance(spec, sp.EWMA):
                self._update_ewma(spec, t, v)
            elif isinstance(spec, sp.Integral) and spec.cumulative and self._prev is not None:
                self._integral_total.add((t - self._prev[0]) * _NS * (self._prev[1] + v) * 0.5)
            elif isinstance(spec, sp.Crossings):
                self._update_crossings(spec, seq, v)
        oldest_seq = self._window.accepted - len(self._window)
        while self._cross_seqs and self._cross_seqs[0] < oldest_seq:
            self._cross_seqs.popleft()
        self._prev = (t, v)
        return PushStatus.ACCEPTED

    def _update_ewma(self, spec: sp.EWMA, t: int, v: float) -> None:
        if self._ewma is None or self._prev is None:
            self._ewma = v
            return
        if spec.alpha is not None:
            alpha = spec.alpha
        else:
            assert spec.halflife_s is not None
            alpha = -math.expm1(-(math.log(2.0) / spec.halflife_s) * ((t - self._prev[0]) * _NS))
        self._ewma += alpha * (v - self._ewma)

    def _update_crossings(self, spec: sp.Crossings, seq: int, v: float) -> None:
        if v >= spec.high:
            if self._cross_state == 1:
                self._cross_seqs.append(seq)
            self._cross_state = 2
        elif v <= spec.low:
            if self._cross_state == 2:
                self._cross_seqs.append(seq)
            self._cross_state = 1

    def push_many(self, ts_ns: object, values: object, out: object = None) -> int:
        """Push every sample; if `out` (float64, shape (n, len(names))) is given, row i receives the
        features after sample i. Returns how many samples were accepted."""
        ts = as_timestamps_ns(ts_ns)
        vs = as_values(values, ts.shape[0])
        rows = None if out is None else as_output(out, ts.shape[0], len(self._names))
        accepted = 0
        for i in range(ts.shape[0]):
            accepted += self.push(int(ts[i]), float(vs[i])) == PushStatus.ACCEPTED
            if rows is not None:
                rows[i, :] = self.values()
        return accepted

    def values(self) -> npt.NDArray[np.float64]:
        """The current feature vector, in the order of `names`."""
        return np.array([self._calc(s) for s in self._specs], dtype=np.float64)

    def read_into(self, out: object) -> None:
        """Write the current feature vector into a float64 array of len(names)."""
        if not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != (len(self._names),):
            raise SampleError(f"out must be a float64 array of shape ({len(self._names)},)")
        out[:] = self.values()

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self._names, self.values().tolist(), strict=True))

    def __getitem__(self, name: str) -> float:
        if name not in self._names:
            raise KeyError(f"no feature {name!r}; this set has {self._names}")
        return float(self.values()[self._names.index(name)])

    def _calc(self, spec: sp.FeatureSpec) -> float:
        samples = list(self._window._samples)
        n = len(samples)
        vs = [s[1] for s in samples]
        if isinstance(spec, sp.Count):
            return float(n)
        if isinstance(spec, sp.EWMA):
            return math.nan if self._ewma is None else self._ewma
        if isinstance(spec, sp.Crossings):
            return float(len(self._cross_seqs))
        if isinstance(spec, sp.Integral) and spec.cumulative:
            return self._integral_total.value * spec.scale
        if isinstance(spec, sp.Integral):
            return _trapezoid(samples) * spec.scale
        if n == 0:
            return math.nan
        if isinstance(spec, sp.Mean):
            return math.fsum(vs) / n
        if isinstance(spec, (sp.Variance, sp.Std)):
            if n <= spec.ddof:
                return math.nan
            mean = math.fsum(vs) / n
            var = math.fsum((x - mean) ** 2 for x in vs) / (n - spec.ddof)
            return math.sqrt(var) if isinstance(spec, sp.Std) else var
        if isinstance(spec, sp.Min):
            return min(vs)
        if isinstance(spec, sp.Max):
            return max(vs)
        if isinstance(spec, sp.Median):
            return float(statistics.median(vs))
        if isinstance(spec, sp.MAD):
            centre = statistics.median(vs)
            return float(statistics.median([abs(x - centre) for x in vs]))
        span_ns = samples[-1][0] - samples[0][0]
        if span_ns == 0:
            return math.nan
        if isinstance(spec, sp.RateOfChange):
            return (vs[-1] - vs[0]) / (span_ns * _NS)
        if isinstance(spec, sp.TimeWeightedMean):
            return _trapezoid(samples) / (span_ns * _NS)
        assert isinstance(spec, sp.Slope)
        xs = [(s[0] - samples[0][0]) * _NS for s in samples]
        mx = math.fsum(xs) / n
        my = math.fsum(vs) / n
        sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, vs, strict=True))
        sxx = math.fsum((x - mx) ** 2 for x in xs)
        return sxy / sxx

    def clear(self) -> None:
        """Empty the window and every feature's state (counters and ordering stay)."""
        self._window._samples.clear()
        self._ewma = None
        self._prev = None
        self._integral_total = _ExactSum()
        self._cross_state = 0
        self._cross_seqs.clear()


def _trapezoid(samples: Sequence[tuple[int, float]]) -> float:
    return math.fsum(
        (b[0] - a[0]) * _NS * (a[1] + b[1]) * 0.5 for a, b in itertools.pairwise(samples)
    )


def haversine_m(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """Great-circle distance in metres on the mean Earth sphere."""
    phi1 = math.radians(lat1_deg)
    phi2 = math.radians(lat2_deg)
    s_lat = math.sin((phi2 - phi1) * 0.5)
    s_lon = math.sin(math.radians(lon2_deg - lon1_deg) * 0.5)
    a = s_lat * s_lat + math.cos(phi1) * math.cos(phi2) * s_lon * s_lon
    return 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class _PositionStream:
    """Shared ordering and validity rule of the position extractors."""

    def __init__(self) -> None:
        self.accepted = 0
        self.late = 0
        self.nonfinite = 0
        self.out_of_range = 0
        self._last_t_ns: int | None = None

    def _check(self, t_ns: object, lat_deg: object, lon_deg: object) -> tuple[int, float, float, int]:
        t, lat = _sample(t_ns, lat_deg)
        _, lon = _sample(t, lon_deg)
        if not (math.isfinite(lat) and math.isfinite(lon)):
            self.nonfinite += 1
            return t, lat, lon, PushStatus.NONFINITE
        if abs(lat) > 90.0 or abs(lon) > 180.0:
            self.out_of_range += 1
            return t, lat, lon, PushStatus.OUT_OF_RANGE
        if self._last_t_ns is not None and t < self._last_t_ns:
            self.late += 1
            return t, lat, lon, PushStatus.LATE
        self._last_t_ns = t
        self.accepted += 1
        return t, lat, lon, PushStatus.ACCEPTED

    def push(self, t_ns: int, lat_deg: float, lon_deg: float) -> int:
        raise NotImplementedError

    def push_many(self, ts_ns: object, lats_deg: object, lons_deg: object) -> int:
        """Push every fix in order; return how many were accepted."""
        ts = as_timestamps_ns(ts_ns)
        lats = as_values(lats_deg, ts.shape[0], "latitudes")
        lons = as_values(lons_deg, ts.shape[0], "longitudes")
        return sum(
            self.push(int(t), float(a), float(o)) == PushStatus.ACCEPTED
            for t, a, o in zip(ts, lats, lons, strict=True)
        )


class HaversineDistance(_PositionStream):
    """Distance travelled in metres, summed over great-circle steps between accepted fixes.

    A step shorter than `min_step_m` from the last counted fix is not counted (and does not move
    that fix), which keeps GNSS jitter of a parked car out of the total.
    """

    def __init__(self, min_step_m: float = 0.0) -> None:
        super().__init__()
        if not (isinstance(min_step_m, (int, float)) and not isinstance(min_step_m, bool)
                and math.isfinite(min_step_m) and min_step_m >= 0):
            raise FeatureConfigError(f"min_step_m must be a finite number >= 0, got {min_step_m!r}")
        self._min_step_m = float(min_step_m)
        self._total = _ExactSum()
        self._ref: tuple[float, float] | None = None

    @property
    def total_m(self) -> float:
        return self._total.value

    def push(self, t_ns: int, lat_deg: float, lon_deg: float) -> int:
        """Add one fix; return a `PushStatus`."""
        _, lat, lon, status = self._check(t_ns, lat_deg, lon_deg)
        if status != PushStatus.ACCEPTED:
            return status
        if self._ref is None:
            self._ref = (lat, lon)
        else:
            step = haversine_m(self._ref[0], self._ref[1], lat, lon)
            if step >= self._min_step_m:
                self._total.add(step)
                self._ref = (lat, lon)
        return PushStatus.ACCEPTED


class Dwell(_PositionStream):
    """Seconds the position has stayed within `radius_m` of an anchor fix (NaN before any fix).

    The first fix is the anchor; a fix farther than `radius_m` from the anchor becomes the new
    anchor and the dwell restarts at 0.
    """

    def __init__(self, radius_m: float) -> None:
        super().__init__()
        if not (isinstance(radius_m, (int, float)) and not isinstance(radius_m, bool)
                and math.isfinite(radius_m) and radius_m > 0):
            raise FeatureConfigError(f"radius_m must be a finite number > 0, got {radius_m!r}")
        self._radius_m = float(radius_m)
        self._anchor: tuple[int, float, float] | None = None
        self._dwell_s = math.nan

    @property
    def dwell_s(self) -> float:
        return self._dwell_s

    @property
    def anchor(self) -> tuple[float, float] | None:
        """(lat_deg, lon_deg) of the current anchor fix."""
        return None if self._anchor is None else (self._anchor[1], self._anchor[2])

    @property
    def anchor_t_ns(self) -> int | None:
        return None if self._anchor is None else self._anchor[0]

    def push(self, t_ns: int, lat_deg: float, lon_deg: float) -> int:
        """Add one fix; return a `PushStatus`."""
        t, lat, lon, status = self._check(t_ns, lat_deg, lon_deg)
        if status != PushStatus.ACCEPTED:
            return status
        if self._anchor is None or haversine_m(self._anchor[1], self._anchor[2], lat, lon) > self._radius_m:
            self._anchor = (t, lat, lon)
        self._dwell_s = (t - self._anchor[0]) * _NS
        return PushStatus.ACCEPTED
