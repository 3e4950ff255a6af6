# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled decoder of a telemetry batch's fix block: the cloud receiver's hot path.

One pass does what `protocol.telemetry_codec._decode_fixes_numpy` does with ~25 numpy calls:
spill decoding, summing the differences back, range checks and scaling into Python tuples. That
numpy function is the specification and the test oracle; both must give identical results
(the same integers, the same IEEE divisions) and refuse the same inputs.

Returns a tuple of the nine columns in wire order, or an int error code:
MALFORMED (the block does not hold exactly the announced values), TOO_WIDE (an int64 spill beyond
the limit) or ROW_ERROR + row (that column is out of range).
"""

from cpython.float cimport PyFloat_FromDouble
from cpython.long cimport PyLong_FromLongLong
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

MALFORMED = -1
TOO_WIDE = -2
ROW_ERROR = 100


cdef inline int16_t _i16(const uint8_t[::1] b, Py_ssize_t at) noexcept nogil:
    return <int16_t>(<uint16_t>b[at] | (<uint16_t>b[at + 1] << 8))


cdef inline int32_t _i32(const uint8_t[::1] b, Py_ssize_t at) noexcept nogil:
    return <int32_t>(<uint32_t>b[at] | (<uint32_t>b[at + 1] << 8) | (<uint32_t>b[at + 2] << 16)
                     | (<uint32_t>b[at + 3] << 24))


cdef inline int64_t _i64(const uint8_t[::1] b, Py_ssize_t at) noexcept nogil:
    cdef uint64_t value = 0
    cdef int k
    for k in range(8):
        value |= (<uint64_t>b[at + k]) << (8 * k)
    return <int64_t>value


cdef object _column(int64_t *row, Py_ssize_t n, int64_t scale_int, double divisor, bint as_float):
    cdef Py_ssize_t c
    cdef object column = PyTuple_New(n)
    cdef object item
    for c in range(n):
        if as_float:
            item = PyFloat_FromDouble(<double>row[c] / divisor)
        else:
            item = PyLong_FromLongLong(row[c] * scale_int)
        Py_INCREF(item)
        PyTuple_SET_ITEM(column, c, item)
    return column


def decode_fixes(const uint8_t[::1] packed, Py_ssize_t n, unsigned int mask, list base, int64_t t0,
                 int order2, int heading_row, int64_t heading_wrap, const double[::1] divisor,
                 const int64_t[::1] lo, const int64_t[::1] hi, int64_t max_time_ms, int64_t wide_limit):
    """The nine fix columns (tuples, wire order) of a fix block, or an int error code."""
    cdef int present[9]
    cdef int m = 0, r, j
    for r in range(9):
        if (mask >> r) & 1:
            present[m] = r
            m += 1
    cdef Py_ssize_t w = n - 1, count = m * w, size = packed.shape[0], i, k, c
    if size < count:
        return MALFORMED
    # Spill counts of each plane give the offsets of the next; the block must end exactly.
    cdef Py_ssize_t k1 = 0, k2 = 0, k3 = 0
    for i in range(count):
        if packed[i] == 0x80:
            k1 += 1
    cdef Py_ssize_t off1 = count, off2 = count + 2 * k1
    if off2 > size:
        return MALFORMED
    for k in range(k1):
        if _i16(packed, off1 + 2 * k) == -32768:
            k2 += 1
    cdef Py_ssize_t off3 = off2 + 4 * k2
    if off3 > size:
        return MALFORMED
    for k in range(k2):
        if _i32(packed, off2 + 4 * k) == -2147483648:
            k3 += 1
    if off3 + 8 * k3 != size:
        return MALFORMED

    cdef int64_t *rows = <int64_t *>calloc(9 * n, sizeof(int64_t))
    if rows == NULL:
        raise MemoryError()
    cdef int64_t value, low, high, start
    cdef int16_t v16
    cdef int32_t v32
    cdef Py_ssize_t c1 = off1, c2 = off2, c3 = off3
    try:
        i = 0
        for j in range(m):
            r = present[j]
            for c in range(1, n):
                value = <int8_t>packed[i]
                i += 1
                if value == -128:
                    v16 = _i16(packed, c1)
                    c1 += 2
                    value = v16
                    if v16 == -32768:
                        v32 = _i32(packed, c2)
                        c2 += 4
                        value = v32
                        if v32 == -2147483648:
                            value = _i64(packed, c3)
                            c3 += 8
                            if value > wide_limit or value < -wide_limit:
                                return TOO_WIDE
                rows[r * n + c] = value
        if n > 1:  # second order: from the initial rate to rates, then from x0 to values
            for r in range(order2):
                rows[r * n] = base[9 + r]
                for c in range(1, n):
                    rows[r * n + c] += rows[r * n + c - 1]
        for r in range(9):
            start = base[r]
            rows[r * n] = start + t0 if r == 0 else start
            for c in range(1, n):
                rows[r * n + c] += rows[r * n + c - 1]
        for c in range(n):
            value = rows[heading_row * n + c] % heading_wrap
            rows[heading_row * n + c] = value + heading_wrap if value < 0 else value
        for r in range(9):
            low = rows[r * n]
            high = low
            for c in range(1, n):
                value = rows[r * n + c]
                if value < low:
                    low = value
                elif value > high:
                    high = value
            if r == 0:
                if t0 + (high - t0) > max_time_ms or low - t0 < lo[0] or high - t0 > hi[0]:
                    return ROW_ERROR
            elif low < lo[r] or high > hi[r]:
                return ROW_ERROR + r
        columns = PyTuple_New(9)
        for r in range(9):
            if 1 <= r <= 6:
                column = _column(rows + r * n, n, 1, divisor[r], True)
            else:
                column = _column(rows + r * n, n, 1_000_000 if r == 0 else 1, 1.0, False)
            Py_INCREF(column)
            PyTuple_SET_ITEM(columns, r, column)
        return columns
    finally:
        free(rows)
