# cython: language_level=3
"""The ring buffer's C level: a struct and inline nogil helpers other Cython modules cimport.

Storage is mirrored: slot i and slot i + capacity always hold the same sample, so the `size`
samples in time order are always the contiguous slice [ring_oldest(r), ring_oldest(r) + size)
of a 2 * capacity array. That makes every window a zero-copy view and every loop over a window
a plain loop with no wrap-around test, at the price of two stores per push.
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t

cdef enum:
    PUSH_ACCEPTED = 0
    PUSH_LATE = 1
    PUSH_NONFINITE = 2
    PUSH_OUT_OF_RANGE = 3

ctypedef struct ring_t:
    Py_ssize_t capacity
    Py_ssize_t size          # samples held, 0..capacity
    Py_ssize_t head          # slot of the next write, 0..capacity-1
    bint has_last
    int64_t last_t_ns        # newest accepted timestamp (survives clear, so ordering does too)
    uint64_t accepted        # also the sequence number of the next accepted sample
    uint64_t late
    uint64_t nonfinite
    int64_t* t_ns            # 2 * capacity slots, mirrored
    double* v                # 2 * capacity slots, mirrored


cdef inline int ring_check(ring_t* r, int64_t t_ns, double value) noexcept nogil:
    """Apply the ordering and NaN rule; count and return the status (nothing is stored)."""
    if not isfinite(value):
        r.nonfinite += 1
        return PUSH_NONFINITE
    if r.has_last and t_ns < r.last_t_ns:
        r.late += 1
        return PUSH_LATE
    return PUSH_ACCEPTED


cdef inline Py_ssize_t ring_oldest(const ring_t* r) noexcept nogil:
    """Storage index of the oldest sample; the window is [ring_oldest, ring_oldest + size)."""
    cdef Py_ssize_t start = r.head - r.size
    if start < 0:
        start += r.capacity
    return start


cdef inline Py_ssize_t ring_newest(const ring_t* r) noexcept nogil:
    """Storage index of the newest sample (size must be > 0)."""
    cdef Py_ssize_t i = r.head - 1
    if i < 0:
        i += r.capacity
    return i


cdef inline void ring_append(ring_t* r, int64_t t_ns, double value) noexcept nogil:
    """Store an accepted sample, overwriting the oldest when full (callers evict it first)."""
    cdef Py_ssize_t h = r.head
    r.t_ns[h] = t_ns
    r.t_ns[h + r.capacity] = t_ns
    r.v[h] = value
    r.v[h + r.capacity] = value
    h += 1
    if h == r.capacity:
        h = 0
    r.head = h
    if r.size < r.capacity:
        r.size += 1
    r.has_last = True
    r.last_t_ns = t_ns
    r.accepted += 1


cdef inline int ring_push(ring_t* r, int64_t t_ns, double value) noexcept nogil:
    """Check, count and store one sample; return its PUSH_* status."""
    cdef int status = ring_check(r, t_ns, value)
    if status == PUSH_ACCEPTED:
        ring_append(r, t_ns, value)
    return status


cdef inline Py_ssize_t ring_count_since(const ring_t* r, int64_t t0_ns) noexcept nogil:
    """How many of the newest samples have a timestamp >= t0_ns (binary search; times are sorted)."""
    cdef Py_ssize_t lo = ring_oldest(r)
    cdef Py_ssize_t end = lo + r.size
    cdef Py_ssize_t hi = end
    cdef Py_ssize_t mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if r.t_ns[mid] < t0_ns:
            lo = mid + 1
        else:
            hi = mid
    return end - lo


cdef class RingBuffer:
    cdef ring_t r
    cdef object _t_store
    cdef object _v_store
    cdef bint _owned            # the window of a FeatureSet: read-only from Python
    cdef tuple _view(self, Py_ssize_t count)
    cdef int _check_writable(self) except -1
