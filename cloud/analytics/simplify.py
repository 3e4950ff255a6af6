"""Douglas-Peucker line simplification on the sphere, vectorised level by level with numpy.

The classic algorithm recurses into each segment; here every open segment of one recursion level
is handled in one numpy pass (each point belongs to exactly one open segment), so a 30-day track
of 43,200 fixes costs a few dozen array passes instead of thousands of small Python steps.
Guarantee: every dropped point lies within `tolerance_m` of the kept polyline (great-circle arcs),
and the first and last point, and any `forced` point, are kept.

A long segment that spans a parked day stays open for many levels (its farthest point is rarely a
parking boundary), so the line is cut every `CUT_EVERY` points first: the cuts are kept points,
at most n / 256 more vertices (often fewer in total: Douglas-Peucker is not optimal), and a month
at one fix a minute is simplified in tens of milliseconds instead of hundreds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cloud.analytics.geo import Floats, Vectors, segment_distance_m, unit_vectors

Mask = npt.NDArray[np.bool_]
CUT_EVERY = 256


def simplify(lat_deg: Floats, lon_deg: Floats, tolerance_m: float, forced: Mask | None = None) -> Mask:
    """Which points to keep so that no dropped point is farther than `tolerance_m` from the line."""
    n = len(lat_deg)
    keep = np.zeros(n, dtype=bool) if forced is None else forced.copy()
    if n == 0:
        return keep
    keep[::CUT_EVERY] = True
    keep[-1] = True
    if n <= 2:
        return keep
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
        split_segments = farthest > tolerance_m
        if not split_segments.any():
            break
        # The first farthest point of each segment (one per segment, in segment order) is kept
        # where the segment must be split.
        at_max = np.flatnonzero(distance == per_point_max)
        _, first_max = np.unique(segment[at_max], return_index=True)
        chosen = at_max[first_max][split_segments]
        keep[candidates[chosen]] = True
        # Points of segments within tolerance are settled; the rest stay open.
        settled = ~np.repeat(split_segments, np.diff(np.r_[first, len(candidates)]))
        open_points[candidates[settled]] = False
        open_points[candidates[chosen]] = False
    return keep


def _take(xyz: Vectors, index: npt.NDArray[np.intp]) -> Vectors:
    return xyz[0][index], xyz[1][index], xyz[2][index]
