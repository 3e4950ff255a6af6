# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""GeoJSON Point features of a track's fixes, written as JSON text in C (cloud/analytics/track.py).

A 30-day track simplified at 10 m keeps a few thousand fixes; formatting each as a Python string
(three rounds, two reprs, a time string) was half of the API's CPU for the request. Here one loop
without the GIL writes them into a buffer. What orjson or json would need is a dict per point,
which is what costs; no library formats numpy columns as GeoJSON features.

The text is what `cloud.analytics.track` wrote before, value for value: coordinates rounded to 6
decimals as numpy rounds them (`rint(x * 1e6) / 1e6`), written as that integer of micro-degrees
with the point put in and trailing zeros dropped (the decimal that double is nearest to, which
is what `repr` shows, though never in exponent form); speeds rounded to one decimal as Python's `round` does (half to even on the exact
value), `null` when NaN or infinite; times as UTC ISO 8601
with a Z, to the second or, when `millis`, to the millisecond (`numpy.datetime_as_string`'s text).
"""

import numpy as np

from cython_ext.errors import SampleError

from libc.math cimport isfinite, rint, signbit
from libc.stdio cimport snprintf
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

cdef extern from "Python.h":
    object PyBytes_FromStringAndSize(const char* data, Py_ssize_t size)

cdef enum:
    POINT_MAX = 256  # bytes one feature can take (the longest is about 200)


cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline void _civil(int64_t days, int64_t* year, int* month, int* day) noexcept nogil:
    """The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's civil_from_days)."""
    cdef int64_t z = days + 719468
    cdef int64_t era = _floor_div(z, 146097)
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    day[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    month[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    year[0] = yoe + era * 400 + (1 if month[0] <= 2 else 0)


cdef inline Py_ssize_t _digits(char* out, int64_t value, int width) noexcept nogil:
    """`value` >= 0 in decimal, zero-padded to `width` digits; returns the length."""
    cdef char tmp[24]
    cdef int n = 0, i
    while value or n < width or n == 0:
        tmp[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline Py_ssize_t _scaled(char* out, double scaled, int decimals) noexcept nogil:
    """An integral `scaled` (|scaled| < 1e15) / 10^decimals as `repr` writes it, never in exponent
    form: the sign (a negative zero's too), the integer part, the point, the fraction less its
    trailing zeros (one digit kept)."""
    cdef Py_ssize_t at = 0
    cdef int64_t whole, unit = 1
    cdef int digits = decimals, i
    for i in range(decimals):
        unit *= 10
    if signbit(scaled):
        out[0] = b'-'
        at = 1
        scaled = -scaled
    whole = <int64_t>scaled
    at += _digits(out + at, whole // unit, 1)
    out[at] = b'.'
    at += 1
    whole %= unit
    while digits > 1 and whole % 10 == 0:
        whole //= 10
        digits -= 1
    return at + _digits(out + at, whole, digits)


cdef inline Py_ssize_t _micro_degrees(char* out, double value) noexcept nogil:
    """`value` (|value| <= 180) rounded to 6 decimals as numpy rounds, written as `repr` would."""
    return _scaled(out, rint(value * 1e6), 6)


cdef inline Py_ssize_t _tenths(char* out, float value) noexcept nogil:
    """A finite float32 rounded to one decimal as Python's `round(value, 1)` and written as its
    `repr`: value * 10 is exact in a double (24 + 4 bits), so `rint` (half to even) rounds the
    exact value as `round` does; beyond 1e15 (never a speed) glibc's `%.1f` does the same."""
    cdef double tenths = rint(<double>value * 10.0)
    if not -1e15 < tenths < 1e15:
        return snprintf(out, 48, b"%.1f", <double>value)
    return _scaled(out, tenths, 1)


cdef inline Py_ssize_t _text(char* out, const char* text) noexcept nogil:
    cdef Py_ssize_t n = 0
    while text[n]:
        out[n] = text[n]
        n += 1
    return n


cdef Py_ssize_t _write(const double* lon, const double* lat, const int64_t* time_us,
                       const float* speed, Py_ssize_t count, bint millis, char* out) noexcept nogil:
    cdef Py_ssize_t i, at = 0
    cdef int64_t seconds, day_s, year
    cdef int month, day
    cdef double v
    for i in range(count):
        if i:
            out[at] = b','
            at += 1
        at += _text(out + at, b'{"type":"Feature","geometry":{"type":"Point","coordinates":[')
        at += _micro_degrees(out + at, lon[i])
        out[at] = b','
        at += 1
        at += _micro_degrees(out + at, lat[i])
        at += _text(out + at, b']},"properties":{"kind":"fix","time":"')
        seconds = _floor_div(time_us[i], 1000000)
        day_s = seconds - _floor_div(seconds, 86400) * 86400
        _civil(_floor_div(seconds, 86400), &year, &month, &day)
        at += _digits(out + at, year, 4)
        out[at] = b'-'
        at += 1 + _digits(out + at + 1, month, 2)
        out[at] = b'-'
        at += 1 + _digits(out + at + 1, day, 2)
        out[at] = b'T'
        at += 1 + _digits(out + at + 1, day_s // 3600, 2)
        out[at] = b':'
        at += 1 + _digits(out + at + 1, day_s % 3600 // 60, 2)
        out[at] = b':'
        at += 1 + _digits(out + at + 1, day_s % 60, 2)
        if millis:
            out[at] = b'.'
            at += 1 + _digits(out + at + 1, (time_us[i] - seconds * 1000000) // 1000, 3)
        v = speed[i]
        if isfinite(v):
            at += _text(out + at, b'Z","speed_kmh":')
            at += _tenths(out + at, speed[i])
        else:
            at += _text(out + at, b'Z","speed_kmh":null')
        out[at] = b'}'
        out[at + 1] = b'}'
        at += 2
    return at


def fix_points(lon_deg, lat_deg, time_us, speed_kmh, bint millis=False) -> bytes:
    """The Point features (comma-separated JSON objects) of the fixes given as columns:
    longitude and latitude in degrees (float64), time in microseconds since 1970 (int64), speed in
    km/h (float32, NaN = none). Coordinates must be finite and within ±180 degrees, times within
    years 1..9999 (`SampleError` otherwise); `millis` writes times to the millisecond."""
    cdef const double[::1] lon = np.ascontiguousarray(lon_deg, dtype=np.float64)
    cdef const double[::1] lat = np.ascontiguousarray(lat_deg, dtype=np.float64)
    cdef const int64_t[::1] times = np.ascontiguousarray(time_us, dtype=np.int64)
    cdef const float[::1] speed = np.ascontiguousarray(speed_kmh, dtype=np.float32)
    cdef Py_ssize_t count = lon.shape[0], i, size
    if lat.shape[0] != count or times.shape[0] != count or speed.shape[0] != count:
        raise SampleError(f"fix_points: columns of unequal length ({count}, {lat.shape[0]}, "
                          f"{times.shape[0]}, {speed.shape[0]})")
    for i in range(count):
        if not (isfinite(lon[i]) and isfinite(lat[i]) and -180.0 <= lon[i] <= 180.0
                and -180.0 <= lat[i] <= 180.0):
            raise SampleError(f"fix_points: fix {i} has coordinates ({lon[i]!r}, {lat[i]!r}) "
                              "outside ±180 degrees")
        # 0001-01-01 .. 9999-12-31 in microseconds since 1970
        if not -62135596800000000 <= times[i] <= 253402300799999999:
            raise SampleError(f"fix_points: fix {i} has time {times[i]} µs outside years 1 to 9999")
    if count == 0:
        return b""
    cdef char* out = <char*>malloc(count * POINT_MAX)
    if out == NULL:
        raise MemoryError()
    try:
        with nogil:
            size = _write(&lon[0], &lat[0], &times[0], &speed[0], count, millis, out)
        return PyBytes_FromStringAndSize(out, size)
    finally:
        free(out)
