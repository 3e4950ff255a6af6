# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Streaming feature extractors over one window, updated together from one push.

Every kernel is O(1) amortized per sample (the rolling median is O(log n) search plus one
memmove of the values between the old and new rank) and allocates nothing per sample.
Numerical care (docs/cython_ext.md):
- mean/variance: Welford updates with removal on shifted data (x - shift, the shift being the
  window mean at the last recompute, so 1e9 + small keeps the small part's digits); the window
  is recomputed exactly (corrected two-pass with compensated sums) every max(4 * size, 64)
  accepted samples, or at once when the second moment falls below 2**-20 of its peak (cancellation), so
  rounding drift never accumulates past one window; variance is clamped at 0;
- slope: the same scheme on (seconds since a time origin, value), the origin rebased to the
  oldest sample at each recompute so ns timestamps never cancel catastrophically;
- time-weighted mean / integral: trapezoid areas of (v - shift) added and removed, recomputed
  with the others and at once when the window's sum of |areas| falls below 2**-20 of its peak
  (a long segment left the window);
- min/max: monotonic deques; median/MAD: a sorted array, MAD by a k-th order statistic search
  over the two distance sequences either side of the median (O(log n) per read).
"""

import math

import numpy as np

from cython_ext import spec as _spec
from cython_ext.batch import as_output, as_timestamps_ns, as_values
from cython_ext.errors import SampleError

cimport cython
from cpython.number cimport PyIndex_Check
from libc.math cimport INFINITY, NAN, expm1, fabs, sqrt
from libc.stdint cimport INT64_MIN, int64_t, uint64_t
from libc.string cimport memmove

from cython_ext.ring cimport (
    PUSH_ACCEPTED, RingBuffer, ring_t, ring_check, ring_oldest, ring_newest, ring_append,
)

cdef enum:
    NEED_WELFORD = 1
    NEED_MIN = 2
    NEED_MAX = 4
    NEED_EWMA = 8
    NEED_SLOPE = 16
    NEED_TRAPZ = 32
    NEED_CUM = 64
    NEED_CROSS = 128
    NEED_SORTED = 256
    NEED_RECOMPUTE = NEED_WELFORD | NEED_SLOPE | NEED_TRAPZ

cdef double NS = 1e-9
cdef Py_ssize_t RECOMPUTE_MIN_OPS = 64
# Exact recompute after this many window lengths of updates (amortized cost: 1/4 pass per sample).
cdef Py_ssize_t RECOMPUTE_WINDOWS = 4
# A second moment that fell below 2**-20 of its peak since the last recompute has lost ~20 bits
# to cancellation (large samples left the window): recompute the window exactly at once.
cdef double CANCELLATION = 2.0 ** -20

_KINDS = {
    _spec.Mean: K_MEAN, _spec.Variance: K_VARIANCE, _spec.Std: K_STD, _spec.Min: K_MIN,
    _spec.Max: K_MAX, _spec.EWMA: K_EWMA, _spec.Slope: K_SLOPE, _spec.RateOfChange: K_RATE,
    _spec.TimeWeightedMean: K_TWMEAN, _spec.Crossings: K_CROSSINGS, _spec.Median: K_MEDIAN,
    _spec.MAD: K_MAD, _spec.Count: K_COUNT,
}
_NEEDS = {
    K_MEAN: NEED_WELFORD, K_VARIANCE: NEED_WELFORD, K_STD: NEED_WELFORD, K_MIN: NEED_MIN,
    K_MAX: NEED_MAX, K_EWMA: NEED_EWMA, K_SLOPE: NEED_SLOPE, K_RATE: 0, K_TWMEAN: NEED_TRAPZ,
    K_INTEGRAL: NEED_TRAPZ, K_INTEGRAL_TOTAL: NEED_CUM, K_CROSSINGS: NEED_CROSS,
    K_MEDIAN: NEED_SORTED, K_MAD: NEED_SORTED, K_COUNT: 0,
}


# ---------------------------------------------------------------- Welford mean / variance

cdef inline void welford_add(welford_t* w, Py_ssize_t n_after, double x) noexcept nogil:
    cdef double y, d
    if n_after == 1:
        w.shift = x
        w.mean = 0.0
        w.m2 = 0.0
        return
    y = x - w.shift
    d = y - w.mean
    w.mean += d / n_after
    w.m2 += d * (y - w.mean)
    if w.m2 > w.m2_peak:
        w.m2_peak = w.m2


cdef inline void welford_remove(welford_t* w, Py_ssize_t n_after, double x) noexcept nogil:
    cdef double y, d
    if n_after == 0:
        w.mean = 0.0
        w.m2 = 0.0
        return
    y = x - w.shift
    d = y - w.mean
    w.mean -= d / n_after
    w.m2 -= d * (y - w.mean)
    if w.m2 < 0.0:
        w.m2 = 0.0


cdef inline void welford_replace(welford_t* w, double inv_n, double old, double x) noexcept nogil:
    """Swap `old` for `x` in a full window of constant n: one multiply, no division on the
    loop-carried chain (M2' = M2 + (x - old)(x - mean' + old - mean))."""
    cdef double d = x - old
    cdef double mean = w.mean
    w.mean = mean + d * inv_n
    w.m2 += d * (((x - w.shift) - w.mean) + ((old - w.shift) - mean))
    if w.m2 < 0.0:
        w.m2 = 0.0
    elif w.m2 > w.m2_peak:
        w.m2_peak = w.m2


cdef inline void welford_recompute(welford_t* w, const double* v, Py_ssize_t n) noexcept nogil:
    """Shift to the window's (compensated) mean, then a corrected two-pass over v[0:n]."""
    cdef Py_ssize_t i
    cdef double s = 0.0, c = 0.0, t, x, d, sd = 0.0, sdd = 0.0
    if n == 0:
        w.mean = 0.0
        w.m2 = 0.0
        w.m2_peak = 0.0
        return
    for i in range(n):
        x = v[i]
        t = s + x
        if fabs(s) >= fabs(x):
            c += (s - t) + x
        else:
            c += (x - t) + s
        s = t
    w.shift = (s + c) / n
    for i in range(n):
        d = v[i] - w.shift
        sd += d
        sdd += d * d
    w.mean = sd / n
    w.m2 = sdd - sd * sd / n
    if w.m2 < 0.0 or n == 1:
        w.m2 = 0.0
    w.m2_peak = w.m2


# ---------------------------------------------------------------- monotonic deques (min, max)

cdef inline void dq_evict(mono_deque_t* d, uint64_t seq) noexcept nogil:
    if d.size and d.seq[d.head] == seq:
        d.head = (d.head + 1) & d.mask
        d.size -= 1


cdef inline void dq_push_max(mono_deque_t* d, uint64_t seq, double x) noexcept nogil:
    cdef Py_ssize_t i
    while d.size and d.v[(d.head + d.size - 1) & d.mask] <= x:
        d.size -= 1
    i = (d.head + d.size) & d.mask
    d.seq[i] = seq
    d.v[i] = x
    d.size += 1


cdef inline void dq_push_min(mono_deque_t* d, uint64_t seq, double x) noexcept nogil:
    cdef Py_ssize_t i
    while d.size and d.v[(d.head + d.size - 1) & d.mask] >= x:
        d.size -= 1
    i = (d.head + d.size) & d.mask
    d.seq[i] = seq
    d.v[i] = x
    d.size += 1


# ---------------------------------------------------------------- least-squares slope

cdef inline void slope_add(slope_t* s, Py_ssize_t n_after, int64_t t_ns, double v) noexcept nogil:
    cdef double ts, dt
    if n_after == 1:
        s.origin_ns = t_ns
        s.mt = 0.0
        s.mv = v
        s.ctv = 0.0
        s.m2t = 0.0
        s.m2t_peak = 0.0
        return
    ts = <double>(t_ns - s.origin_ns) * NS
    dt = ts - s.mt
    s.mt += dt / n_after
    s.mv += (v - s.mv) / n_after
    s.ctv += dt * (v - s.mv)
    s.m2t += dt * (ts - s.mt)
    if s.m2t > s.m2t_peak:
        s.m2t_peak = s.m2t


cdef inline void slope_remove(slope_t* s, Py_ssize_t n_after, int64_t t_ns, double v) noexcept nogil:
    cdef double ts, dt
    if n_after == 0:
        s.mt = 0.0
        s.mv = 0.0
        s.ctv = 0.0
        s.m2t = 0.0
        return
    ts = <double>(t_ns - s.origin_ns) * NS
    dt = ts - s.mt
    s.mt -= dt / n_after
    s.mv -= (v - s.mv) / n_after
    s.ctv -= dt * (v - s.mv)
    s.m2t -= dt * (ts - s.mt)
    if s.m2t < 0.0:
        s.m2t = 0.0


cdef inline void slope_recompute(slope_t* s, const int64_t* t, const double* v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double st = 0.0, sv = 0.0, mt, mv, dt, dv, sdt = 0.0, sdv = 0.0, ctv = 0.0, m2t = 0.0
    if n == 0:
        s.mt = s.mv = s.ctv = s.m2t = 0.0
        return
    s.origin_ns = t[0]
    for i in range(n):
        st += <double>(t[i] - s.origin_ns) * NS
        sv += v[i]
    mt = st / n
    mv = sv / n
    for i in range(n):
        dt = <double>(t[i] - s.origin_ns) * NS - mt
        dv = v[i] - mv
        sdt += dt
        sdv += dv
        ctv += dt * dv
        m2t += dt * dt
    s.mt = mt + sdt / n
    s.mv = mv + sdv / n
    s.ctv = ctv - sdt * sdv / n
    s.m2t = m2t - sdt * sdt / n
    if s.m2t < 0.0:
        s.m2t = 0.0
    s.m2t_peak = s.m2t


# ---------------------------------------------------------------- trapezoids

cdef inline double trapezoid(int64_t t0, double v0, int64_t t1, double v1) noexcept nogil:
    return <double>(t1 - t0) * NS * (v0 + v1) * 0.5


cdef inline void trapz_add(trapz_t* z, int64_t t0, double v0, int64_t t1, double v1) noexcept nogil:
    cdef double a = trapezoid(t0, v0 - z.shift, t1, v1 - z.shift)
    z.area += a
    z.area_abs += fabs(a)
    if z.area_abs > z.area_abs_peak:
        z.area_abs_peak = z.area_abs


cdef inline void trapz_remove(trapz_t* z, int64_t t0, double v0, int64_t t1, double v1) noexcept nogil:
    cdef double a = trapezoid(t0, v0 - z.shift, t1, v1 - z.shift)
    z.area -= a
    z.area_abs -= fabs(a)


cdef inline void trapz_reset(trapz_t* z, double shift) noexcept nogil:
    z.shift = shift
    z.area = 0.0
    z.area_abs = 0.0
    z.area_abs_peak = 0.0


cdef inline void trapz_recompute(trapz_t* z, const int64_t* t, const double* v, Py_ssize_t n) noexcept nogil:
    """Shift to the window mean, then a Neumaier-compensated sum of the segment areas."""
    cdef Py_ssize_t i
    cdef double s = 0.0, c = 0.0, x, y, total = 0.0, absolute = 0.0
    if n == 0:
        trapz_reset(z, 0.0)
        return
    for i in range(n):
        total += v[i]
    z.shift = total / n
    for i in range(1, n):
        x = trapezoid(t[i - 1], v[i - 1] - z.shift, t[i], v[i] - z.shift)
        absolute += fabs(x)
        y = s + x
        if fabs(s) >= fabs(x):
            c += (s - y) + x
        else:
            c += (x - y) + s
        s = y
    z.area = s + c
    z.area_abs = absolute
    z.area_abs_peak = absolute


# ---------------------------------------------------------------- sorted window (median, MAD)

cdef inline Py_ssize_t lower_bound(const double* a, Py_ssize_t n, double x) noexcept nogil:
    """First index with a[i] >= x. Branch-free halving (a conditional move per step), so random
    data costs no branch mispredictions."""
    cdef Py_ssize_t base = 0, half
    if n == 0:
        return 0
    while n > 1:
        half = n >> 1
        base = base + half if a[base + half] < x else base
        n -= half
    return base + (a[base] < x)


cdef inline Py_ssize_t upper_bound(const double* a, Py_ssize_t n, double x) noexcept nogil:
    """First index with a[i] > x (branch-free, as lower_bound)."""
    cdef Py_ssize_t base = 0, half
    if n == 0:
        return 0
    while n > 1:
        half = n >> 1
        base = base + half if a[base + half] <= x else base
        n -= half
    return base + (a[base] <= x)


cdef inline void sorted_insert(sorted_t* s, double x) noexcept nogil:
    cdef Py_ssize_t i = upper_bound(s.a, s.n, x)
    memmove(s.a + i + 1, s.a + i, (s.n - i) * sizeof(double))
    s.a[i] = x
    s.n += 1


cdef inline void sorted_remove(sorted_t* s, double x) noexcept nogil:
    cdef Py_ssize_t i = lower_bound(s.a, s.n, x)
    memmove(s.a + i, s.a + i + 1, (s.n - i - 1) * sizeof(double))
    s.n -= 1


cdef inline void sorted_replace(sorted_t* s, double old, double x) noexcept nogil:
    """Remove `old` and insert `x` with one memmove of the values between their ranks."""
    cdef Py_ssize_t i = lower_bound(s.a, s.n, old), k
    if x >= old:
        k = upper_bound(s.a, s.n, x) - 1
        memmove(s.a + i, s.a + i + 1, (k - i) * sizeof(double))
    else:
        k = upper_bound(s.a, i, x)
        memmove(s.a + k + 1, s.a + k, (i - k) * sizeof(double))
    s.a[k] = x


cdef inline double sorted_median(const sorted_t* s) noexcept nogil:
    cdef Py_ssize_t h = s.n >> 1
    if s.n == 0:
        return NAN
    if s.n & 1:
        return s.a[h]
    return (s.a[h - 1] + s.a[h]) * 0.5


cdef inline double kth_distance(const double* a, Py_ssize_t n, Py_ssize_t split, double m,
                                Py_ssize_t k) noexcept nogil:
    """k-th smallest (0-based) |a[i] - m| for sorted a, where a[:split] < m <= a[split:].

    The distances left of `split` read backwards and those right of it read forwards are two
    ascending sequences; binary search for how many of the k+1 smallest come from the left.
    """
    cdef Py_ssize_t p = split, q = n - split, lo, hi, i, j
    cdef double result = -INFINITY
    lo = k + 1 - q
    if lo < 0:
        lo = 0
    hi = k + 1 if k + 1 < p else p
    cdef bint more_left
    while lo < hi:
        i = (lo + hi) >> 1
        j = k + 1 - i
        more_left = (m - a[split - 1 - i]) < (a[split + j - 1] - m)
        lo = i + 1 if more_left else lo
        hi = hi if more_left else i
    i = lo
    j = k + 1 - i
    if i > 0:
        result = m - a[split - i]
    if j > 0 and a[split + j - 1] - m > result:
        result = a[split + j - 1] - m
    return result


cdef inline double sorted_mad(const sorted_t* s) noexcept nogil:
    cdef double m = sorted_median(s)
    cdef Py_ssize_t split, h = s.n >> 1
    if s.n == 0:
        return NAN
    split = lower_bound(s.a, s.n, m)
    if s.n & 1:
        return kth_distance(s.a, s.n, split, m, h)
    return (kth_distance(s.a, s.n, split, m, h - 1) + kth_distance(s.a, s.n, split, m, h)) * 0.5


# ---------------------------------------------------------------- the feature set

cdef Py_ssize_t _pow2_at_least(Py_ssize_t n):
    cdef Py_ssize_t p = 1
    while p < n:
        p <<= 1
    return p


@cython.final
cdef class FeatureSet:
    """Several streaming features over one window, all updated by one `push` (or `push_many`).

    `features` is a sequence of specs from `cython_ext.spec` (`Mean()`, `Variance()`, ...); the
    window holds the last `window` accepted samples and, if `window_s` is given, only those newer
    than (newest timestamp - window_s). Ordering and NaN rule: see `cython_ext.ring`.
    """

    def __cinit__(self, features, window, window_s=None):
        specs = _spec.check_features(features)
        config = _spec.check_window(window, window_s)
        self._window = RingBuffer(config.capacity)
        self._window._owned = True
        self._r = &self._window.r
        self._duration_ns = config.duration_ns
        self._inv_capacity = 1.0 / config.capacity
        self._buffers = []
        self._ncols = len(specs)
        self._names = tuple(s.name for s in specs)
        self._need = 0
        cdef Py_ssize_t col
        cdef int kind
        for col, s in enumerate(specs):
            if isinstance(s, _spec.Integral):
                kind = K_INTEGRAL_TOTAL if s.cumulative else K_INTEGRAL
                self._scale[col] = s.scale
            else:
                kind = _KINDS[type(s)]
                self._scale[col] = 1.0
            self._kinds[col] = kind
            self._ddof[col] = s.ddof if isinstance(s, (_spec.Variance, _spec.Std)) else 0
            self._need |= _NEEDS[kind]
            if isinstance(s, _spec.EWMA):
                self._ewma.timed = s.halflife_s is not None
                self._ewma.alpha = s.alpha if s.alpha is not None else 0.0
                self._ewma.decay_per_s = math.log(2.0) / s.halflife_s if s.halflife_s is not None else 0.0
            elif isinstance(s, _spec.Crossings):
                self._cross.low = s.low
                self._cross.high = s.high
        cdef Py_ssize_t slots = _pow2_at_least(config.capacity)
        cdef uint64_t[::1] seq_mv
        cdef double[::1] v_mv
        self._block = self._duration_ns == 0
        if self._block:
            v_mv = self._keep(np.full(config.capacity + 1, np.inf))
            self._blk.suffix_min = &v_mv[0]
            v_mv = self._keep(np.full(config.capacity + 1, -np.inf))
            self._blk.suffix_max = &v_mv[0]
        else:
            if self._need & NEED_MIN:
                self._init_deque(&self._min, slots)
            if self._need & NEED_MAX:
                self._init_deque(&self._max, slots)
        if self._need & NEED_CROSS:
            seq_mv = self._keep(np.zeros(slots, dtype=np.uint64))
            self._cross.seq = &seq_mv[0]
            self._cross.mask = slots - 1
        if self._need & NEED_SORTED:
            v_mv = self._keep(np.zeros(config.capacity, dtype=np.float64))
            self._sorted.a = &v_mv[0]
        self._reset_state()

    cdef object _keep(self, object array):
        self._buffers.append(array)
        return array

    cdef void _init_deque(self, mono_deque_t* d, Py_ssize_t slots):
        cdef uint64_t[::1] seq_mv = self._keep(np.zeros(slots, dtype=np.uint64))
        cdef double[::1] v_mv = self._keep(np.zeros(slots, dtype=np.float64))
        d.seq = &seq_mv[0]
        d.v = &v_mv[0]
        d.mask = slots - 1

    cdef void _reset_state(self) noexcept nogil:
        self._ops = 0
        self._welford.shift = 0.0
        self._welford.mean = 0.0
        self._welford.m2 = 0.0
        self._welford.m2_peak = 0.0
        self._slope.m2t_peak = 0.0
        self._min.head = self._min.size = 0
        self._max.head = self._max.size = 0
        cdef Py_ssize_t i
        if self._block:
            for i in range(self._r.capacity + 1):
                self._blk.suffix_min[i] = INFINITY
                self._blk.suffix_max[i] = -INFINITY
        self._blk.prefix_min = INFINITY
        self._blk.prefix_max = -INFINITY
        self._ewma.has = False
        self._ewma.value = NAN
        self._slope.origin_ns = 0
        self._slope.mt = self._slope.mv = self._slope.ctv = self._slope.m2t = 0.0
        trapz_reset(&self._trapz, 0.0)
        self._cum.has_prev = False
        self._cum.sum = 0.0
        self._cum.comp = 0.0
        self._cross.state = 0
        self._cross.head = self._cross.size = 0
        self._sorted.n = 0

    # ------------------------------------------------------------ the C-level API

    cdef int push_sample(self, int64_t t_ns, double value) noexcept nogil:
        """Apply the ordering/NaN rule, then update every enabled kernel; return the PUSH_* status."""
        cdef ring_t* r = self._r
        cdef int status = ring_check(r, t_ns, value)
        cdef double old_value = 0.0
        cdef bint replacing = False
        if status != PUSH_ACCEPTED:
            return status
        if r.size == r.capacity:
            # Full: the new sample replaces the oldest. Kernels with a cheaper fused swap
            # (Welford, sorted array) skip the separate remove/add and swap here instead.
            replacing = r.capacity > 1
            old_value = r.v[ring_oldest(r)]
            self._evict_oldest(replacing)
            if replacing and (self._need & NEED_WELFORD):
                welford_replace(&self._welford, self._inv_capacity, old_value, value)
        self._add(t_ns, value, replacing, old_value)
        ring_append(r, t_ns, value)
        if self._block and r.head == 0 and (self._need & (NEED_MIN | NEED_MAX)):
            self._rebuild_suffix()
        if self._duration_ns and t_ns >= INT64_MIN + self._duration_ns:  # no underflow below
            while r.size > 1 and r.t_ns[ring_oldest(r)] <= t_ns - self._duration_ns:
                self._evict_oldest(False)
        if self._need & NEED_RECOMPUTE:
            self._ops += 1
            if (self._ops >= RECOMPUTE_WINDOWS * r.size and self._ops >= RECOMPUTE_MIN_OPS) \
                    or self._welford.m2 < self._welford.m2_peak * CANCELLATION \
                    or self._slope.m2t < self._slope.m2t_peak * CANCELLATION \
                    or self._trapz.area_abs < self._trapz.area_abs_peak * CANCELLATION:
                self._recompute()
        return PUSH_ACCEPTED

    cdef inline void _evict_oldest(self, bint replacing) noexcept nogil:
        """Remove the oldest window sample from every kernel, then from the ring.

        `replacing`: a new sample takes its place at once, and the Welford and sorted-array
        kernels will swap it in `push_sample` / `_add` instead."""
        cdef ring_t* r = self._r
        cdef Py_ssize_t o = ring_oldest(r)
        cdef Py_ssize_t n_after = r.size - 1
        cdef uint64_t seq = r.accepted - <uint64_t>r.size
        cdef double x = r.v[o]
        cdef unsigned int need = self._need
        if (need & NEED_WELFORD) and not replacing:
            if n_after == 1:
                welford_add(&self._welford, 1, r.v[o + 1])
            else:
                welford_remove(&self._welford, n_after, x)
        if not self._block:
            if need & NEED_MIN:
                dq_evict(&self._min, seq)
            if need & NEED_MAX:
                dq_evict(&self._max, seq)
        if need & NEED_SLOPE:
            if n_after == 1:
                slope_add(&self._slope, 1, r.t_ns[o + 1], r.v[o + 1])
            else:
                slope_remove(&self._slope, n_after, r.t_ns[o], x)
        if need & NEED_TRAPZ:
            if n_after <= 1:
                trapz_reset(&self._trapz, r.v[o + 1] if n_after == 1 else 0.0)
            else:
                trapz_remove(&self._trapz, r.t_ns[o], x, r.t_ns[o + 1], r.v[o + 1])
        if need & NEED_CROSS:
            if self._cross.size and self._cross.seq[self._cross.head] == seq:
                self._cross.head = (self._cross.head + 1) & self._cross.mask
                self._cross.size -= 1
        if (need & NEED_SORTED) and not replacing:
            sorted_remove(&self._sorted, x)
        r.size = n_after

    cdef inline void _add(self, int64_t t_ns, double x, bint replacing, double old_value) noexcept nogil:
        """Add an accepted sample to every kernel (called before it is appended to the ring)."""
        cdef ring_t* r = self._r
        cdef Py_ssize_t n_after = r.size + 1
        cdef uint64_t seq = r.accepted
        cdef unsigned int need = self._need
        cdef Py_ssize_t newest
        cdef double alpha
        if (need & NEED_WELFORD) and not replacing:
            welford_add(&self._welford, n_after, x)
        if self._block:
            if x < self._blk.prefix_min:
                self._blk.prefix_min = x
            if x > self._blk.prefix_max:
                self._blk.prefix_max = x
        else:
            if need & NEED_MIN:
                dq_push_min(&self._min, seq, x)
            if need & NEED_MAX:
                dq_push_max(&self._max, seq, x)
        if need & NEED_EWMA:
            if not self._ewma.has:
                self._ewma.has = True
                self._ewma.value = x
            else:
                if self._ewma.timed:
                    alpha = -expm1(-self._ewma.decay_per_s * (<double>(t_ns - self._ewma.prev_t_ns) * NS))
                else:
                    alpha = self._ewma.alpha
                self._ewma.value += alpha * (x - self._ewma.value)
            self._ewma.prev_t_ns = t_ns
        if need & NEED_SLOPE:
            slope_add(&self._slope, n_after, t_ns, x)
        if need & NEED_TRAPZ:
            if r.size:
                newest = ring_newest(r)
                trapz_add(&self._trapz, r.t_ns[newest], r.v[newest], t_ns, x)
            else:
                trapz_reset(&self._trapz, x)
        if need & NEED_CUM:
            if self._cum.has_prev:
                self._cumulative_add(trapezoid(self._cum.prev_t_ns, self._cum.prev_v, t_ns, x))
            self._cum.has_prev = True
            self._cum.prev_t_ns = t_ns
            self._cum.prev_v = x
        if need & NEED_CROSS:
            if x >= self._cross.high:
                if self._cross.state == 1:
                    self._cross.seq[(self._cross.head + self._cross.size) & self._cross.mask] = seq
                    self._cross.size += 1
                self._cross.state = 2
            elif x <= self._cross.low:
                if self._cross.state == 2:
                    self._cross.seq[(self._cross.head + self._cross.size) & self._cross.mask] = seq
                    self._cross.size += 1
                self._cross.state = 1
        if need & NEED_SORTED:
            if replacing:
                sorted_replace(&self._sorted, old_value, x)
            else:
                sorted_insert(&self._sorted, x)

    cdef void _cumulative_add(self, double x) noexcept nogil:
        cdef double s = self._cum.sum
        cdef double t = s + x
        if fabs(s) >= fabs(x):
            self._cum.comp += (s - t) + x
        else:
            self._cum.comp += (x - t) + s
        self._cum.sum = t

    cdef void _rebuild_suffix(self) noexcept nogil:
        """A ring cycle just completed: its slots become the old part of the window."""
        cdef Py_ssize_t i
        cdef double lo = INFINITY, hi = -INFINITY, x
        cdef const double* v = self._r.v
        for i in range(self._r.capacity - 1, -1, -1):
            x = v[i]
            if x < lo:
                lo = x
            if x > hi:
                hi = x
            self._blk.suffix_min[i] = lo
            self._blk.suffix_max[i] = hi
        self._blk.prefix_min = INFINITY
        self._blk.prefix_max = -INFINITY

    cdef void _recompute(self) noexcept nogil:
        """Recompute the running sums exactly from the window, wiping accumulated rounding drift."""
        cdef ring_t* r = self._r
        cdef Py_ssize_t o = ring_oldest(r)
        self._ops = 0
        if self._need & NEED_WELFORD:
            welford_recompute(&self._welford, r.v + o, r.size)
        if self._need & NEED_SLOPE:
            slope_recompute(&self._slope, r.t_ns + o, r.v + o, r.size)
        if self._need & NEED_TRAPZ:
            trapz_recompute(&self._trapz, r.t_ns + o, r.v + o, r.size)

    cdef inline double calc(self, Py_ssize_t column) noexcept nogil:
        """The current value of one feature column."""
        cdef ring_t* r = self._r
        cdef Py_ssize_t n = r.size
        cdef int kind = self._kinds[column]
        cdef int64_t span_ns
        cdef double var
        if kind == K_MEAN:
            return self._welford.shift + self._welford.mean if n else NAN
        if kind == K_VARIANCE or kind == K_STD:
            if n <= self._ddof[column]:
                return NAN
            var = self._welford.m2 / (n - self._ddof[column])
            return var if kind == K_VARIANCE else sqrt(var)
        if kind == K_MIN:
            if n == 0:
                return NAN
            if self._block:
                return self._blk.suffix_min[r.head] if self._blk.suffix_min[r.head] < self._blk.prefix_min \
                    else self._blk.prefix_min
            return self._min.v[self._min.head]
        if kind == K_MAX:
            if n == 0:
                return NAN
            if self._block:
                return self._blk.suffix_max[r.head] if self._blk.suffix_max[r.head] > self._blk.prefix_max \
                    else self._blk.prefix_max
            return self._max.v[self._max.head]
        if kind == K_EWMA:
            return self._ewma.value
        if kind == K_INTEGRAL:
            return (self._trapz.area + self._trapz.shift * self._window_span_s()) * self._scale[column]
        if kind == K_INTEGRAL_TOTAL:
            return (self._cum.sum + self._cum.comp) * self._scale[column]
        if kind == K_CROSSINGS:
            return <double>self._cross.size
        if kind == K_MEDIAN:
            return sorted_median(&self._sorted)
        if kind == K_MAD:
            return sorted_mad(&self._sorted)
        if kind == K_COUNT:
            return <double>n
        if n < 2:
            return NAN
        span_ns = r.t_ns[ring_newest(r)] - r.t_ns[ring_oldest(r)]
        if span_ns == 0:
            return NAN
        if kind == K_SLOPE:
            return self._slope.ctv / self._slope.m2t
        if kind == K_RATE:
            return (r.v[ring_newest(r)] - r.v[ring_oldest(r)]) / (<double>span_ns * NS)
        if kind == K_TWMEAN:
            return self._trapz.shift + self._trapz.area / (<double>span_ns * NS)
        return NAN

    cdef double _window_span_s(self) noexcept nogil:
        if self._r.size < 2:
            return 0.0
        return <double>(self._r.t_ns[ring_newest(self._r)] - self._r.t_ns[ring_oldest(self._r)]) * NS

    cdef inline void read_row(self, double* out) noexcept nogil:
        """Write every feature, in column order, to out[0:len(names)]."""
        cdef Py_ssize_t c
        for c in range(self._ncols):
            out[c] = self.calc(c)

    # ------------------------------------------------------------ the Python API

    @property
    def names(self):
        """Feature names, in column order."""
        return self._names

    @property
    def window(self):
        """The window's samples as a read-only RingBuffer (its push/push_many/clear refuse)."""
        return self._window

    @property
    def size(self):
        """Samples in the window."""
        return self._r.size

    @property
    def accepted(self):
        return self._r.accepted

    @property
    def late(self):
        return self._r.late

    @property
    def nonfinite(self):
        return self._r.nonfinite

    def push(self, t_ns, value):
        """Add one sample to every feature; return its PushStatus code (0 accepted, 1 late, 2 NaN/inf)."""
        cdef int64_t t
        cdef double v
        try:
            if not PyIndex_Check(t_ns):
                raise TypeError("timestamp must be an int")
            t = t_ns
            v = value
        except (TypeError, OverflowError) as error:
            raise SampleError(f"a sample is (int ns timestamp, real value), got ({t_ns!r}, {value!r})") from error
        return self.push_sample(t, v)

    def push_many(self, ts_ns, values, out=None):
        """Push every sample without the GIL; return how many were accepted.

        With `out` (C-contiguous float64 of shape (n, len(names))), row i receives the feature
        vector after sample i (unchanged from the previous row when sample i was rejected).
        """
        cdef const int64_t[::1] ts = as_timestamps_ns(ts_ns)
        cdef const double[::1] vs = as_values(values, ts.shape[0])
        cdef Py_ssize_t i, n = ts.shape[0], ncols = self._ncols
        cdef Py_ssize_t accepted = 0
        cdef double[:, ::1] out_mv
        cdef double* row = NULL
        if out is not None:
            out_mv = as_output(out, n, ncols)
            if n:
                row = &out_mv[0, 0]
        with nogil:
            if row == NULL:
                for i in range(n):
                    accepted += self.push_sample(ts[i], vs[i]) == PUSH_ACCEPTED
            else:
                for i in range(n):
                    accepted += self.push_sample(ts[i], vs[i]) == PUSH_ACCEPTED
                    self.read_row(row + i * ncols)
        return accepted

    def values(self):
        """The current feature vector (a new float64 array), in the order of `names`."""
        out = np.empty(self._ncols, dtype=np.float64)
        cdef double[::1] out_mv = out
        self.read_row(&out_mv[0])
        return out

    def read_into(self, out):
        """Write the current feature vector into a float64 array of shape (len(names),).

        The array last used is remembered (and kept alive), so reading into the same row buffer
        after every push costs no validation and no buffer acquisition."""
        cdef double[::1] out_mv
        if out is not self._row_obj:
            if not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != (self._ncols,) \
                    or not out.flags.writeable or not out.flags.c_contiguous:
                raise SampleError(f"out must be a writable, contiguous float64 array of shape ({self._ncols},)")
            out_mv = out
            self._row_obj = out
            self._row = &out_mv[0]
        self.read_row(self._row)

    def as_dict(self):
        """{name: value} of the current features."""
        return {name: self.calc(c) for c, name in enumerate(self._names)}

    def __getitem__(self, name):
        try:
            column = self._names.index(name)
        except ValueError:
            raise KeyError(f"no feature {name!r}; this set has {self._names}") from None
        return self.calc(column)

    def clear(self):
        """Empty the window and every feature's state (counters and ordering stay)."""
        self._r.size = 0
        self._r.head = 0
        self._reset_state()
