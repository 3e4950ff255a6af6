"""Douglas-Peucker line simplification on the sphere.

`significance` runs the classic recursion, one segment at a time, compiled
(cython_ext/simplify.pyx). `significance_numpy` is the same definition vectorised level by level
(every open segment of one recursion level in one numpy pass: each point belongs to exactly one
open segment); it is the oracle the compiled one is tested against (tests/cloud/test_simplify.py)
and the baseline of bench/simplify.py. Both compute the distances of `geo.segment_distance_m`.
Guarantee: every dropped point lies within `tolerance_m` of the kept polyline (great-circle arcs),
and the first and last point, and any `forced` point, are kept.

A long segment that spans a parked day stays open for many levels (its farthest point is rarely a
parking boundary), so the line is cut every `CUT_EVERY` points first: the cuts are kept points,
at most n / 256 more vertices (often fewer in total: Douglas-Peucker is not optimal), and bounds
the work of either version. bench/simplify.py (one fix a minute, commutes and parked jitter):
a day ~0.3 ms compiled vs ~5 ms numpy, a month ~10 ms vs ~80 ms (floor 0, the full tree).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.geo import Floats, Vectors, segment_distance_m, unit_vectors
from cython_ext import simplify as _compiled
from cython_ext.errors import SampleError

Mask = npt.NDArray[np.bool_]
Significance = npt.NDArray[np.float64]
CUT_EVERY = 256


def simplify(lat_deg: Floats, lon_deg: Floats, tolerance_m: float, forced: Mask | None = None) -> Mask:
    """Which points to keep so that no dropped point is farther than `tolerance_m` from the line."""
    return significance(lat_deg, lon_deg, forced, floor_m=tolerance_m) > tolerance_m


def significance(lat_deg: Floats, lon_deg: Floats, forced: Mask | None = None, *,
                 floor_m: float = 0.0) -> Significance:
    """Each point's Douglas-Peucker significance: the point is kept at tolerance t iff its value
    is > t (inf for the first and last, forced and cut points; 0 for points never split at).

    The recursion splits a segment at its farthest point, which does not depend on the tolerance,
    so the split tree is the same for every tolerance and a tolerance only prunes it: a point is
    kept iff its own split distance and that of every ancestor exceed t. A point's value is
    therefore min(its distance, its segment's ends' values) (the newer end is its parent; values
    only fall down the tree). The tree is grown until no segment's farthest point is farther
    than `floor_m`; values are exact for every t >= floor_m. `simplify(t)` is this with floor t,
    so a stored significance (cloud/store/track_days.py) and a live simplification keep exactly
    the same points.

    AnalyticsError for coordinates that are not 1-D finite numbers in range of one length, a
    `forced` that is not a boolean mask of that length, a negative or NaN floor.
    """
    try:
        return _compiled.significance(lat_deg, lon_deg, forced, floor_m=floor_m, cut_every=CUT_EVERY)
    except SampleError as error:
        raise AnalyticsError(f"cannot simplify the track: {error}") from error


def significance_numpy(lat_deg: Floats, lon_deg: Floats, forced: Mask | None = None, *,
                       floor_m: float = 0.0) -> Significance:
    """`significance` vectorised level by level with numpy (the test oracle and bench baseline);
    the same inputs are refused with the same errors."""
    lat_deg, lon_deg, forced = _checked(lat_deg, lon_deg, forced, floor_m)
    n = len(lat_deg)
    value = np.zeros(n, dtype=np.float64)
    if n == 0:
        return value
    keep = forced.copy()
    keep[::CUT_EVERY] = True
    keep[-1] = True
    value[keep] = np.inf
    if n <= 2:
        return value
    xyz = unit_vectors(lat_deg, lon_deg)
    everything = np.arange(n)
    open_points = ~keep  # points not kept whose segment may still need splitting
    while open_points.any():
        kept = np.flatnonzero(keep)
        candidates = everything[open_points]
        segment = np.searchsorted(kept, candidates, side="right") - 1
        start, end = kept[segment], kept[segment + 1]
        distance = segment_distance_m(_take(xyz, candidates), _take(xyz, start), _take(xyz, end))
        # The farthest point of each segment (candidates are sorted, so segments are contiguous).
        first = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
        farthest = np.maximum.reduceat(distance, first)
        per_point_max = np.repeat(farthest, np.diff(np.r_[first, len(candidates)]))
        split_segments = farthest > floor_m
        if not split_segments.any():
            break
        # The first farthest point of each segment (one per segment, in segment order) is kept
        # where the segment must be split.
        at_max = np.flatnonzero(distance == per_point_max)
        _, first_max = np.unique(segment[at_max], return_index=True)
        chosen = at_max[first_max][split_segments]
        points = candidates[chosen]
        value[points] = np.minimum(farthest[split_segments],
                                   np.minimum(value[start[chosen]], value[end[chosen]]))
        keep[points] = True
        # Points of segments within the floor are settled; the rest stay open.
        settled = ~np.repeat(split_segments, np.diff(np.r_[first, len(candidates)]))
        open_points[candidates[settled]] = False
        open_points[points] = False
    return value


def track_significance(lat_deg: Floats, lon_deg: Floats, has_fix: Mask, *,
                       floor_m: float = 0.0) -> Significance:
    """`significance` of the fixes of one stretch of a track (NaN on rows without a fix), with
    the stretch's first and last fix and the fixes on each side of a no-fix run forced: the line
    of a track is simplified stretch by stretch (a stored day, cloud/store/track_days.py, or a
    range read from positions), and its vertices bracket every no-fix run."""
    out = np.full(len(has_fix), np.nan)
    fixed = np.flatnonzero(has_fix)
    if len(fixed) == 0:
        return out
    beside_no_fix = np.r_[False, ~has_fix[:-1]] | np.r_[~has_fix[1:], False]
    forced = beside_no_fix[fixed]
    forced[0] = forced[-1] = True
    out[fixed] = significance(lat_deg[fixed], lon_deg[fixed], forced, floor_m=floor_m)
    return out


def _checked(lat_deg: Floats, lon_deg: Floats, forced: Mask | None,
             floor_m: float) -> tuple[Floats, Floats, Mask]:
    try:
        return _compiled.checked(lat_deg, lon_deg, forced, floor_m=floor_m, cut_every=CUT_EVERY)
    except SampleError as error:
        raise AnalyticsError(f"cannot simplify the track: {error}") from error


def _take(xyz: Vectors, index: npt.NDArray[np.intp]) -> Vectors:
    return xyz[0][index], xyz[1][index], xyz[2][index]
