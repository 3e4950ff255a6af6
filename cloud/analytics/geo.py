"""Distances on the sphere (mean Earth radius, as `lienwatch_haversine_km` in the database).

Points are unit vectors in Earth-centred coordinates, kept as three separate arrays (x, y, z):
the formulas below are a handful of multiply-adds per point, which numpy runs at memory speed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8
Floats = npt.NDArray[np.float64]
Vectors = tuple[Floats, Floats, Floats]


def unit_vectors(lat_deg: Floats, lon_deg: Floats) -> Vectors:
    """Points as unit vectors (x, y, z)."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    cos_lat = np.cos(lat)
    return cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)


def _chord_angle(p: Vectors, q: Vectors) -> Floats:
    """Central angle between unit vectors from their chord (accurate for tiny angles)."""
    chord = np.sqrt((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2)
    return 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))


def segment_distance_m(p: Vectors, a: Vectors, b: Vectors) -> Floats:
    """Distance in metres from each point p to the great-circle arc a-b (element by element):
    the cross-track distance where p projects inside the arc, else the distance to the nearer end."""
    nx = a[1] * b[2] - a[2] * b[1]
    ny = a[2] * b[0] - a[0] * b[2]
    nz = a[0] * b[1] - a[1] * b[0]
    length = np.sqrt(nx * nx + ny * ny + nz * nz)
    degenerate = length < 1e-15  # a == b (a parked car, a closing loop): distance to the point
    across = np.abs(np.arcsin(np.clip((p[0] * nx + p[1] * ny + p[2] * nz)
                                      / np.where(degenerate, 1.0, length), -1.0, 1.0)))
    pa = p[0] * a[0] + p[1] * a[1] + p[2] * a[2]
    pb = p[0] * b[0] + p[1] * b[1] + p[2] * b[2]
    ab = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    # p projects between a and b iff (a x p).(a x b) >= 0 and (p x b).(a x b) >= 0.
    inside = (pb - ab * pa >= 0) & (pa - ab * pb >= 0) & ~degenerate
    ends = np.minimum(_chord_angle(p, a), _chord_angle(p, b))
    return np.where(inside, across, ends) * EARTH_RADIUS_M


def haversine_m(lat1: Floats, lon1: Floats, lat2: Floats, lon2: Floats) -> Floats:
    """Great-circle distance in metres, element by element."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), dtype=np.float64)
