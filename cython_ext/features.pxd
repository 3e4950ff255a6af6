# cython: language_level=3
"""C level of the streaming feature extractors, for other Cython modules to cimport.

Each statistic is a small struct plus `add` / `remove` / `calc` helpers (the shape of pandas'
rolling kernels); `FeatureSet` owns one window (a `RingBuffer`) and drives the enabled kernels
from one push. Cython callers use `push_sample` and `read_row`, which never touch the GIL.
"""

cimport cython
from libc.stdint cimport int64_t, uint64_t

from cython_ext.ring cimport RingBuffer, ring_t

cdef enum:
    K_MEAN = 0
    K_VARIANCE
    K_STD
    K_MIN
    K_MAX
    K_EWMA
    K_SLOPE
    K_RATE
    K_TWMEAN
    K_INTEGRAL
    K_INTEGRAL_TOTAL
    K_CROSSINGS
    K_MEDIAN
    K_MAD
    K_COUNT
    K_NKINDS

ctypedef struct welford_t:
    double shift           # values enter as (x - shift): the window mean at the last recompute
    double mean            # running mean of (x - shift) over the window
    double m2              # sum of squared deviations from the mean
    double m2_peak         # largest m2 since the last recompute (cancellation detector)

ctypedef struct mono_deque_t:
    uint64_t* seq          # sequence numbers of candidate extremes, oldest first
    double* v
    Py_ssize_t mask        # power-of-two capacity - 1
    Py_ssize_t head
    Py_ssize_t size

ctypedef struct block_extrema_t:
    # van Herk / Gil-Werman for pure count windows: the window is the previous ring cycle's
    # slots [head, capacity) plus this cycle's slots [0, head); suffix extremes of the previous
    # cycle are rebuilt once per cycle, the prefix extreme of this cycle is one min per sample.
    double* suffix_min     # capacity + 1 slots, suffix_min[capacity] = +inf
    double* suffix_max
    double prefix_min
    double prefix_max

ctypedef struct ewma_t:
    bint has
    bint timed             # True: alpha from elapsed time and half-life
    double value
    double alpha
    double decay_per_s     # ln 2 / half-life
    int64_t prev_t_ns

ctypedef struct slope_t:
    int64_t origin_ns      # time origin of the window's seconds (rebased on recompute)
    double mt              # mean time (s since origin)
    double mv              # mean value
    double ctv             # co-moment of time and value
    double m2t             # second moment of time
    double m2t_peak        # largest m2t since the last recompute (cancellation detector)

ctypedef struct trapz_t:
    double shift           # areas are of (v - shift): the window mean at the last recompute
    double area            # trapezoidal integral of (v - shift) over the window (value·s)
    double area_abs        # sum of |segment areas| in the window: the scale of rounding errors
    double area_abs_peak   # largest area_abs since the last recompute (cancellation detector)

ctypedef struct cumulative_t:
    bint has_prev
    int64_t prev_t_ns
    double prev_v
    double sum             # Neumaier-compensated running integral (value·s)
    double comp

ctypedef struct crossings_t:
    double low
    double high
    int state              # 0 unknown, 1 low, 2 high
    uint64_t* seq          # sequence numbers of crossing samples still in the window
    Py_ssize_t mask
    Py_ssize_t head
    Py_ssize_t size

ctypedef struct sorted_t:
    double* a              # the window's values, ascending
    Py_ssize_t n


@cython.final
cdef class FeatureSet:
    cdef RingBuffer _window
    cdef ring_t* _r
    cdef int64_t _duration_ns
    cdef double _inv_capacity
    cdef unsigned int _need
    cdef Py_ssize_t _ncols
    cdef int _kinds[K_NKINDS]
    cdef int _ddof[K_NKINDS]
    cdef double _scale[K_NKINDS]
    cdef Py_ssize_t _ops
    cdef welford_t _welford
    cdef mono_deque_t _min
    cdef mono_deque_t _max
    cdef bint _block           # True: min/max by block extremes (count window), else deques
    cdef block_extrema_t _blk
    cdef ewma_t _ewma
    cdef slope_t _slope
    cdef trapz_t _trapz
    cdef cumulative_t _cum
    cdef crossings_t _cross
    cdef sorted_t _sorted
    cdef list _buffers
    cdef object _row_obj   # the array read_into wrote last, and its data pointer
    cdef double* _row
    cdef tuple _names

    cdef int push_sample(self, int64_t t_ns, double value) noexcept nogil
    cdef inline void read_row(self, double* out) noexcept nogil
    cdef inline double calc(self, Py_ssize_t column) noexcept nogil
    cdef double _window_span_s(self) noexcept nogil
    cdef inline void _evict_oldest(self, bint replacing) noexcept nogil
    cdef inline void _add(self, int64_t t_ns, double value, bint replacing, double old_value) noexcept nogil
    cdef void _recompute(self) noexcept nogil
    cdef void _rebuild_suffix(self) noexcept nogil
    cdef void _cumulative_add(self, double x) noexcept nogil
    cdef void _reset_state(self) noexcept nogil
    cdef object _keep(self, object array)
    cdef void _init_deque(self, mono_deque_t* d, Py_ssize_t slots)
