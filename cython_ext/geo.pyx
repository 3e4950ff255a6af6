# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Position extractors: distance travelled (haversine, summed) and dwell time near an anchor.

Same ordering rule as the ring buffer (an older timestamp is rejected and counted in `late`,
an equal one is accepted); a fix with a NaN/inf coordinate is skipped and counted in
`nonfinite`, one with |lat| > 90 or |lon| > 180 in `out_of_range`.
"""

import math

from cython_ext.batch import as_timestamps_ns, as_values
from cython_ext.errors import FeatureConfigError, SampleError
from cython_ext.status import EARTH_RADIUS_M as _EARTH_RADIUS_M

from cpython.number cimport PyIndex_Check
from libc.math cimport asin, cos, fabs, isfinite, sin, sqrt, NAN
from libc.stdint cimport int64_t

from cython_ext.ring cimport PUSH_ACCEPTED, PUSH_LATE, PUSH_NONFINITE, PUSH_OUT_OF_RANGE

cdef double EARTH_RADIUS_M = _EARTH_RADIUS_M
cdef double DEG = math.pi / 180.0      # as math.radians


cdef double haversine_m(double lat1_deg, double lon1_deg, double lat2_deg, double lon2_deg) noexcept nogil:
    """Great-circle distance in metres on the mean Earth sphere."""
    cdef double phi1 = lat1_deg * DEG
    cdef double phi2 = lat2_deg * DEG
    cdef double s_lat = sin((phi2 - phi1) * 0.5)
    cdef double s_lon = sin((lon2_deg - lon1_deg) * DEG * 0.5)
    cdef double a = s_lat * s_lat + cos(phi1) * cos(phi2) * s_lon * s_lon
    a = sqrt(a)
    if a > 1.0:
        a = 1.0
    return 2.0 * EARTH_RADIUS_M * asin(a)


def distance_m(lat1_deg, lon1_deg, lat2_deg, lon2_deg):
    """Great-circle distance in metres between two positions (the haversine every extractor uses);
    NaN if a coordinate is not finite or out of range."""
    cdef double lat1, lon1, lat2, lon2
    try:
        lat1, lon1, lat2, lon2 = <double>lat1_deg, <double>lon1_deg, <double>lat2_deg, <double>lon2_deg
    except TypeError as error:
        raise SampleError(f"distance_m takes four numbers (degrees), got ({lat1_deg!r}, {lon1_deg!r}, "
                          f"{lat2_deg!r}, {lon2_deg!r})") from error
    if not (isfinite(lat1) and isfinite(lon1) and isfinite(lat2) and isfinite(lon2)) \
            or fabs(lat1) > 90.0 or fabs(lat2) > 90.0 or fabs(lon1) > 180.0 or fabs(lon2) > 180.0:
        return NAN
    return haversine_m(lat1, lon1, lat2, lon2)


cdef inline int rule_check(position_rule_t* p, int64_t t_ns, double lat, double lon) noexcept nogil:
    if not (isfinite(lat) and isfinite(lon)):
        p.nonfinite += 1
        return PUSH_NONFINITE
    if fabs(lat) > 90.0 or fabs(lon) > 180.0:
        p.out_of_range += 1
        return PUSH_OUT_OF_RANGE
    if p.has_last and t_ns < p.last_t_ns:
        p.late += 1
        return PUSH_LATE
    p.has_last = True
    p.last_t_ns = t_ns
    p.accepted += 1
    return PUSH_ACCEPTED


cdef inline void rule_init(position_rule_t* p) noexcept nogil:
    p.has_last = False
    p.last_t_ns = 0
    p.accepted = p.late = p.nonfinite = p.out_of_range = 0


cdef tuple _fix(t_ns, lat_deg, lon_deg):
    try:
        if not PyIndex_Check(t_ns):
            raise TypeError("timestamp must be an int")
        return (<int64_t>t_ns, <double>lat_deg, <double>lon_deg)
    except (TypeError, OverflowError) as error:
        raise SampleError(
            f"a fix is (int ns timestamp, lat_deg, lon_deg), got ({t_ns!r}, {lat_deg!r}, {lon_deg!r})"
        ) from error


cdef tuple _batch(ts_ns, lats_deg, lons_deg):
    ts = as_timestamps_ns(ts_ns)
    return (ts, as_values(lats_deg, ts.shape[0], "latitudes"), as_values(lons_deg, ts.shape[0], "longitudes"))



cdef class HaversineDistance:
    """Distance travelled in metres, summed over great-circle steps between accepted fixes.

    A step shorter than `min_step_m` from the last counted fix is not counted (and does not move
    that fix), which keeps GNSS jitter of a parked car out of the total.
    """

    def __cinit__(self, min_step_m=0.0):
        if isinstance(min_step_m, bool) or not isinstance(min_step_m, (int, float)) \
                or not math.isfinite(min_step_m) or min_step_m < 0:
            raise FeatureConfigError(f"min_step_m must be a finite number >= 0, got {min_step_m!r}")
        rule_init(&self.rule)
        self.min_step_m = min_step_m
        self.has_ref = False
        self.total = 0.0
        self.comp = 0.0

    cdef int push_fix(self, int64_t t_ns, double lat_deg, double lon_deg) noexcept nogil:
        cdef int status = rule_check(&self.rule, t_ns, lat_deg, lon_deg)
        cdef double step, s
        if status != PUSH_ACCEPTED:
            return status
        if not self.has_ref:
            self.has_ref = True
        else:
            step = haversine_m(self.ref_lat_deg, self.ref_lon_deg, lat_deg, lon_deg)
            if step < self.min_step_m:
                return PUSH_ACCEPTED
            s = self.total + step
            if fabs(self.total) >= step:
                self.comp += (self.total - s) + step
            else:
                self.comp += (step - s) + self.total
            self.total = s
        self.ref_lat_deg = lat_deg
        self.ref_lon_deg = lon_deg
        return PUSH_ACCEPTED

    def push(self, t_ns, lat_deg, lon_deg):
        """Add one fix; return its PushStatus code."""
        t, lat, lon = _fix(t_ns, lat_deg, lon_deg)
        return self.push_fix(t, lat, lon)

    def push_many(self, ts_ns, lats_deg, lons_deg):
        """Push every fix in order without the GIL; return how many were accepted."""
        cdef const int64_t[::1] ts
        cdef const double[::1] lats
        cdef const double[::1] lons
        ts, lats, lons = _batch(ts_ns, lats_deg, lons_deg)
        cdef Py_ssize_t i, accepted = 0
        with nogil:
            for i in range(ts.shape[0]):
                accepted += self.push_fix(ts[i], lats[i], lons[i]) == PUSH_ACCEPTED
        return accepted

    @property
    def total_m(self):
        """Distance counted so far, metres."""
        return self.total + self.comp

    @property
    def accepted(self):
        return self.rule.accepted

    @property
    def late(self):
        return self.rule.late

    @property
    def nonfinite(self):
        return self.rule.nonfinite

    @property
    def out_of_range(self):
        return self.rule.out_of_range


cdef class Dwell:
    """Seconds the position has stayed within `radius_m` of an anchor fix (NaN before any fix).

    The first fix is the anchor; a fix farther than `radius_m` from the anchor becomes the new
    anchor and the dwell restarts at 0.
    """

    def __cinit__(self, radius_m):
        if isinstance(radius_m, bool) or not isinstance(radius_m, (int, float)) \
                or not math.isfinite(radius_m) or radius_m <= 0:
            raise FeatureConfigError(f"radius_m must be a finite number > 0, got {radius_m!r}")
        rule_init(&self.rule)
        self.radius_m = radius_m
        self.has_anchor = False
        self.dwell = NAN

    cdef int push_fix(self, int64_t t_ns, double lat_deg, double lon_deg) noexcept nogil:
        cdef int status = rule_check(&self.rule, t_ns, lat_deg, lon_deg)
        if status != PUSH_ACCEPTED:
            return status
        if not self.has_anchor or \
                haversine_m(self.anchor_lat_deg, self.anchor_lon_deg, lat_deg, lon_deg) > self.radius_m:
            self.has_anchor = True
            self.anchor_t = t_ns
            self.anchor_lat_deg = lat_deg
            self.anchor_lon_deg = lon_deg
        self.dwell = <double>(t_ns - self.anchor_t) * 1e-9
        return PUSH_ACCEPTED

    def push(self, t_ns, lat_deg, lon_deg):
        """Add one fix; return its PushStatus code."""
        t, lat, lon = _fix(t_ns, lat_deg, lon_deg)
        return self.push_fix(t, lat, lon)

    def push_many(self, ts_ns, lats_deg, lons_deg):
        """Push every fix in order without the GIL; return how many were accepted."""
        cdef const int64_t[::1] ts
        cdef const double[::1] lats
        cdef const double[::1] lons
        ts, lats, lons = _batch(ts_ns, lats_deg, lons_deg)
        cdef Py_ssize_t i, accepted = 0
        with nogil:
            for i in range(ts.shape[0]):
                accepted += self.push_fix(ts[i], lats[i], lons[i]) == PUSH_ACCEPTED
        return accepted

    @property
    def dwell_s(self):
        """Seconds since the current anchor fix, at the newest accepted fix."""
        return self.dwell

    @property
    def anchor(self):
        """(lat_deg, lon_deg) of the current anchor fix, or None."""
        return (self.anchor_lat_deg, self.anchor_lon_deg) if self.has_anchor else None

    @property
    def anchor_t_ns(self):
        return self.anchor_t if self.has_anchor else None

    @property
    def accepted(self):
        return self.rule.accepted

    @property
    def late(self):
        return self.rule.late

    @property
    def nonfinite(self):
        return self.rule.nonfinite

    @property
    def out_of_range(self):
        return self.rule.out_of_range
