# cython: language_level=3
"""C level of the position extractors (haversine distance, dwell), for other Cython modules."""

from libc.stdint cimport int64_t, uint64_t

ctypedef struct position_rule_t:
    bint has_last
    int64_t last_t_ns
    uint64_t accepted
    uint64_t late
    uint64_t nonfinite
    uint64_t out_of_range

cdef double haversine_m(double lat1_deg, double lon1_deg, double lat2_deg, double lon2_deg) noexcept nogil


cdef class HaversineDistance:
    cdef position_rule_t rule
    cdef double min_step_m
    cdef bint has_ref
    cdef double ref_lat_deg
    cdef double ref_lon_deg
    cdef double total        # Neumaier-compensated sum of counted steps (m)
    cdef double comp
    cdef int push_fix(self, int64_t t_ns, double lat_deg, double lon_deg) noexcept nogil


cdef class Dwell:
    cdef position_rule_t rule
    cdef double radius_m
    cdef bint has_anchor
    cdef int64_t anchor_t
    cdef double anchor_lat_deg
    cdef double anchor_lon_deg
    cdef double dwell
    cdef int push_fix(self, int64_t t_ns, double lat_deg, double lon_deg) noexcept nogil
