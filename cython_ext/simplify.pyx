# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Douglas-Peucker significance of a track, compiled (cloud/analytics/simplify.py uses it).

The same definition as the numpy version `cloud.analytics.simplify.significance_numpy`: the line
is first cut at its ends, at `forced` points and at every `cut_every`-th point (value inf); each
segment is then split at its FIRST farthest point while that point is farther than `floor_m`,
and a split point's value is min(its distance, its segment's ends' values); points never split
at are 0. Here the split tree is grown one segment at a time from a stack, in C without the GIL.

The arithmetic follows `cloud.analytics.geo.segment_distance_m` operation by operation (the
same unit vectors, computed by numpy at the boundary; the cross-track angle as the arcsin of the
normalised triple product; chord angles to the ends; `length < 1e-15` degenerate; the same
`inside` test), built with -ffp-contract=off, so the distances are those numpy computes up to
the last bit of the arcsin implementation.
"""

import math

import numpy as np

from cython_ext.errors import SampleError
from cython_ext.status import EARTH_RADIUS_M as _EARTH_RADIUS_M

from libc.math cimport asin, fabs, sqrt, INFINITY

cdef double EARTH_RADIUS_M = _EARTH_RADIUS_M


cdef inline double _chord_angle(double px, double py, double pz,
                                double qx, double qy, double qz) noexcept nogil:
    cdef double dx = px - qx
    cdef double dy = py - qy
    cdef double dz = pz - qz
    cdef double half = sqrt(dx * dx + dy * dy + dz * dz) / 2.0
    if half > 1.0:
        half = 1.0
    return 2.0 * asin(half)


cdef inline double _squared_chord(double px, double py, double pz,
                                  double qx, double qy, double qz) noexcept nogil:
    cdef double dx = px - qx
    cdef double dy = py - qy
    cdef double dz = pz - qz
    return dx * dx + dy * dy + dz * dz


cdef inline double _asin_bound(double s) noexcept nogil:
    """An upper bound of the computed asin(s) for s in [0, 1]: asin(s) = s + s^3/6 + 3s^5/40 + ...
    <= s + 0.2 s^3 for s <= 0.5, with a margin far above the rounding of asin and of this."""
    if s > 0.5:
        return 2.0
    return (s + 0.2 * s * s * s) * (1.0 + 1e-13)


cdef void _grow(const double* x, const double* y, const double* z, const unsigned char* forced,
                double* value, Py_ssize_t* stack, Py_ssize_t n, Py_ssize_t cut_every,
                double floor_m) noexcept nogil:
    """Fill `value` (n >= 3); `stack` has room for n segment bounds."""
    cdef Py_ssize_t top = 0, i, a, b, at, previous = 0
    cdef double ax, ay, az, bx, by, bz, nx, ny, nz, length, ab, px, py, pz, pa, pb, t, d, e, best
    cdef bint degenerate
    for i in range(n):
        if i % cut_every == 0 or i == n - 1 or forced[i]:
            value[i] = INFINITY
            if i - previous >= 2:
                stack[top] = previous
                stack[top + 1] = i
                top += 2
            previous = i
    while top:
        top -= 2
        a = stack[top]
        b = stack[top + 1]
        ax, ay, az = x[a], y[a], z[a]
        bx, by, bz = x[b], y[b], z[b]
        nx = ay * bz - az * by
        ny = az * bx - ax * bz
        nz = ax * by - ay * bx
        length = sqrt(nx * nx + ny * ny + nz * nz)
        degenerate = length < 1e-15  # a == b (a parked car, a closing loop): distance to the point
        ab = ax * bx + ay * by + az * bz
        best = -1.0
        at = -1
        for i in range(a + 1, b):
            px, py, pz = x[i], y[i], z[i]
            pa = px * ax + py * ay + pz * az
            pb = px * bx + py * by + pz * bz
            # A point is measured exactly (the arcsin) only if it may be farther than the best so
            # far: a cheap upper bound of its distance decides that for almost every point.
            if not degenerate and pb - ab * pa >= 0 and pa - ab * pb >= 0:
                t = (px * nx + py * ny + pz * nz) / length
                if t > 1.0:
                    t = 1.0
                elif t < -1.0:
                    t = -1.0
                if _asin_bound(fabs(t)) * EARTH_RADIUS_M < best:
                    continue
                d = fabs(asin(t)) * EARTH_RADIUS_M
            else:
                d = _squared_chord(px, py, pz, ax, ay, az)
                e = _squared_chord(px, py, pz, bx, by, bz)
                if 2.0 * _asin_bound(sqrt(e if e < d else d) / 2.0) * EARTH_RADIUS_M < best:
                    continue
                d = _chord_angle(px, py, pz, ax, ay, az)
                e = _chord_angle(px, py, pz, bx, by, bz)
                d = (e if e < d else d) * EARTH_RADIUS_M
            if d > best:  # strictly: the first farthest point
                best = d
                at = i
        if not best > floor_m:
            continue
        d = value[a] if value[a] < value[b] else value[b]
        value[at] = best if best < d else d
        if at - a >= 2:
            stack[top] = a
            stack[top + 1] = at
            top += 2
        if b - at >= 2:
            stack[top] = at
            stack[top + 1] = b
            top += 2


def _column(values, what):
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise SampleError(f"{what} must be a 1-D array of numbers: {error}") from error
    if array.ndim != 1:
        raise SampleError(f"{what} must be 1-D, got shape {array.shape}")
    if array.size and array.dtype.kind not in "fiu":
        raise SampleError(f"{what} must be real numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def checked(lat_deg, lon_deg, forced=None, *, floor_m=0.0, cut_every=256):
    """The inputs of `significance` as (lat, lon, forced) contiguous float64, float64 and bool
    arrays, or SampleError saying what is wrong: arrays of different lengths, non-finite or
    out-of-range coordinates, a `forced` that is not a boolean mask of the same length, a
    negative or NaN floor, a cut_every below 1."""
    lat = _column(lat_deg, "lat_deg")
    lon = _column(lon_deg, "lon_deg")
    n = lat.shape[0]
    if lon.shape[0] != n:
        raise SampleError(f"lon_deg has {lon.shape[0]} entries but lat_deg has {n}")
    if forced is None:
        mask = np.zeros(n, dtype=np.bool_)
    else:
        mask = np.asarray(forced)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise SampleError(f"forced must be a boolean mask of {n} entries, got {mask.dtype} {mask.shape}")
        mask = np.ascontiguousarray(mask)
    if isinstance(floor_m, bool) or not isinstance(floor_m, (int, float)) or math.isnan(floor_m) \
            or floor_m < 0:
        raise SampleError(f"floor_m must be a number >= 0, got {floor_m!r}")
    if isinstance(cut_every, bool) or not isinstance(cut_every, int) or cut_every < 1:
        raise SampleError(f"cut_every must be an int >= 1, got {cut_every!r}")
    if n and not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise SampleError("coordinates must be finite (a NaN or inf lat_deg/lon_deg)")
    if n and (np.abs(lat).max() > 90.0 or np.abs(lon).max() > 180.0):
        raise SampleError("coordinates out of range (|lat_deg| > 90 or |lon_deg| > 180)")
    return lat, lon, mask


def significance(lat_deg, lon_deg, forced=None, *, floor_m=0.0, cut_every=256):
    """Each point's Douglas-Peucker significance (metres): kept at tolerance t iff > t, exact for
    every t >= `floor_m`. Inputs are refused as `checked` refuses them."""
    lat, lon, mask = checked(lat_deg, lon_deg, forced, floor_m=floor_m, cut_every=cut_every)
    cdef Py_ssize_t n = lat.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    if n <= 2:
        out[:] = np.inf
        return out
    # Unit vectors exactly as cloud.analytics.geo.unit_vectors computes them.
    lat_r, lon_r = np.radians(lat), np.radians(lon)
    cos_lat = np.cos(lat_r)
    cdef const double[::1] x = np.ascontiguousarray(cos_lat * np.cos(lon_r))
    cdef const double[::1] y = np.ascontiguousarray(cos_lat * np.sin(lon_r))
    cdef const double[::1] z = np.ascontiguousarray(np.sin(lat_r))
    cdef const unsigned char[::1] keep = mask.view(np.uint8)
    cdef double[::1] value = out
    cdef Py_ssize_t[::1] stack = np.empty(n + 2, dtype=np.intp)
    cdef double floor = floor_m
    cdef Py_ssize_t cut = cut_every
    with nogil:
        _grow(&x[0], &y[0], &z[0], &keep[0], &value[0], &stack[0], n, cut, floor)
    return out
