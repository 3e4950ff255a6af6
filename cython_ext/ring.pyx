# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Fixed-capacity ring buffer of (int64 ns timestamp, float64 value) samples.

Rules (docs/cython_ext.md):
- ordering: a sample older than the newest accepted one is rejected and counted in `late`;
  an equal timestamp (a duplicate) is accepted as a separate sample, so timestamps in the buffer
  never decrease;
- NaN/±inf values are skipped and counted in `nonfinite` (checked before ordering);
- when full, the oldest sample is overwritten.
Views (`times_ns()`, `values()`, `last()`, `since()`, `within_ns()`) are zero-copy, read-only
numpy views into the mirrored storage, oldest first; they show the buffer as it was when taken
only until the next push (copy them to keep them).
"""

import numpy as np

from cython_ext.batch import as_timestamps_ns, as_values
from cython_ext.errors import SampleError
from cython_ext.spec import check_capacity

from cpython.number cimport PyIndex_Check
from libc.stdint cimport INT64_MIN, int64_t


cdef class RingBuffer:
    """Ring buffer of the newest `capacity` samples; `push` costs two stores and no allocation."""

    def __cinit__(self, capacity):
        cdef Py_ssize_t cap = check_capacity(capacity)
        self._t_store = np.zeros(2 * cap, dtype=np.int64)
        self._v_store = np.zeros(2 * cap, dtype=np.float64)
        cdef int64_t[::1] t_mv = self._t_store
        cdef double[::1] v_mv = self._v_store
        self.r.capacity = cap
        self.r.size = 0
        self.r.head = 0
        self.r.has_last = False
        self.r.last_t_ns = 0
        self.r.accepted = 0
        self.r.late = 0
        self.r.nonfinite = 0
        self.r.t_ns = &t_mv[0]
        self.r.v = &v_mv[0]
        self._owned = False

    cdef int _check_writable(self) except -1:
        if self._owned:
            raise SampleError("this RingBuffer is a FeatureSet's window: push to the FeatureSet, not to it")
        return 0

    @property
    def capacity(self):
        """Most samples held."""
        return self.r.capacity

    @property
    def size(self):
        """Samples held now."""
        return self.r.size

    def __len__(self):
        return self.r.size

    @property
    def accepted(self):
        """Samples stored since creation."""
        return self.r.accepted

    @property
    def late(self):
        """Samples rejected because their timestamp was older than the newest accepted one."""
        return self.r.late

    @property
    def nonfinite(self):
        """Samples skipped because their value was NaN or ±inf."""
        return self.r.nonfinite

    @property
    def last_t_ns(self):
        """Newest accepted timestamp, or None before the first (kept by `clear()`)."""
        return self.r.last_t_ns if self.r.has_last else None

    def push(self, t_ns, value):
        """Store one sample; return its PushStatus code (0 accepted, 1 late, 2 non-finite)."""
        cdef int64_t t
        cdef double v
        self._check_writable()
        try:
            if not PyIndex_Check(t_ns):
                raise TypeError("timestamp must be an int")
            t = t_ns
            v = value
        except (TypeError, OverflowError) as error:
            raise SampleError(f"a sample is (int ns timestamp, real value), got ({t_ns!r}, {value!r})") from error
        return ring_push(&self.r, t, v)

    def push_many(self, ts_ns, values):
        """Push every sample in order without the GIL; return how many were accepted."""
        self._check_writable()
        cdef const int64_t[::1] ts = as_timestamps_ns(ts_ns)
        cdef const double[::1] vs = as_values(values, ts.shape[0])
        cdef Py_ssize_t i, n = ts.shape[0]
        cdef Py_ssize_t accepted = 0
        with nogil:
            for i in range(n):
                accepted += ring_push(&self.r, ts[i], vs[i]) == PUSH_ACCEPTED
        return accepted

    def clear(self):
        """Forget the samples; counters and the newest timestamp (the ordering rule) stay."""
        self._check_writable()
        self.r.size = 0
        self.r.head = 0

    cdef tuple _view(self, Py_ssize_t count):
        cdef Py_ssize_t stop = ring_oldest(&self.r) + self.r.size
        ts = self._t_store[stop - count:stop]
        vs = self._v_store[stop - count:stop]
        ts.flags.writeable = False
        vs.flags.writeable = False
        return (ts, vs)

    def times_ns(self):
        """Read-only zero-copy view of every timestamp, oldest first."""
        return self._view(self.r.size)[0]

    def values(self):
        """Read-only zero-copy view of every value, oldest first."""
        return self._view(self.r.size)[1]

    def last(self, n):
        """(timestamps, values) views of the newest min(n, size) samples, oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SampleError(f"n must be an int >= 0, got {n!r}")
        return self._view(min(n, self.r.size))

    def since(self, t_ns):
        """(timestamps, values) views of the samples with timestamp >= t_ns, oldest first."""
        cdef int64_t t0
        try:
            if not PyIndex_Check(t_ns):
                raise TypeError("t_ns must be an int")
            t0 = t_ns
        except (TypeError, OverflowError) as error:
            raise SampleError(f"t_ns must be an int64 of ns, got {t_ns!r}") from error
        return self._view(ring_count_since(&self.r, t0))

    def within_ns(self, duration_ns):
        """(timestamps, values) views of the samples newer than (newest - duration_ns), oldest first."""
        cdef int64_t d
        try:
            if not PyIndex_Check(duration_ns):
                raise TypeError("duration_ns must be an int")
            d = duration_ns
        except (TypeError, OverflowError) as error:
            raise SampleError(f"duration_ns must be an int64 of ns, got {duration_ns!r}") from error
        if d < 0:
            raise SampleError(f"duration_ns must be >= 0, got {duration_ns}")
        if self.r.size == 0 or d == 0:
            return self._view(0)
        cdef int64_t newest = self.r.t_ns[ring_newest(&self.r)]
        if newest < INT64_MIN + d:      # newest - d would underflow: everything is within
            return self._view(self.r.size)
        return self._view(ring_count_since(&self.r, newest - d + 1))
