"""Geofence: the car outside its contract region or a commanded circular geofence → ALERT; inside
but within `border_warning_m` of the border → WARNING (the same event escalates on leaving).

Conditions: `region` (the `[vehicle] contract_region` polygon) and `fence:<id>` (each circle
set by a signed `SetGeofence` command, a keep-in area). Only fresh fixes with a usable HDOP are
judged; a parked car that lost GNSS keeps the state of its last good fix. GNSS multipath jumps
of a few seconds are absorbed by `debounce_s` (default 30 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext.geo import distance_m
from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import finite
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.options import Option
from protocol.messages import Severity

KIND = "geofence"
_M_PER_DEG = 111_320.0


def border_distance_m(polygon: Sequence[tuple[float, float]], lat: float, lon: float) -> float:
    """Metres from (lat, lon) to the nearest edge of a (lat, lon) polygon, on a local plane
    around the point (exact enough for borders within a few hundred km)."""
    kx = _M_PER_DEG * math.cos(math.radians(lat))
    points = [((p_lon - lon) * kx, (p_lat - lat) * _M_PER_DEG) for p_lat, p_lon in polygon]
    best = math.inf
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(x1 * dx + y1 * dy) / length2))
        best = min(best, math.hypot(x1 + t * dx, y1 + t * dy))
    return best


class GeofenceDetector(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self._last_fix_ns = -1
        self._judged: list[Finding] = []
        self._outside_since: dict[str, int] = {}

    def observe(self, o: Observation) -> Sequence[Finding]:
        position = o.position
        if position is None or position.time_ns == self._last_fix_ns:
            return self._judged  # no new fix: the last good one still stands
        self._last_fix_ns = position.time_ns
        if position.hdop > self.o["max_hdop"]:  # a poor fix changes nothing (unknown = NaN is judged)
            return self._judged
        lat, lon = position.lat_deg, position.lon_deg
        warn_m = self.o["border_warning_m"]
        findings: list[Finding] = []
        inside = o.vehicle.in_contract_region(lat, lon)
        if inside is not None:
            border_m = border_distance_m(o.vehicle.contract_region, lat, lon)
            if self._outside("region", not inside, o.mono_ns):
                findings.append(Finding(self.name, Severity.ALERT, o.wall_ns,
                                        finite({"outside_by_m": border_m}),
                                        f"{border_m / 1000:.1f} km outside the contract region", position,
                                        "region"))
            elif border_m < warn_m or not inside:
                findings.append(Finding(self.name, Severity.WARNING, o.wall_ns,
                                        finite({"border_m": border_m}),
                                        f"{border_m / 1000:.1f} km from the contract region's border",
                                        position, "region"))
        for fence_id, fence in o.geofences.items():
            centre_m = distance_m(lat, lon, fence.lat_deg, fence.lon_deg)
            margin = min(warn_m, fence.radius_m / 2)  # a small fence warns in its outer half
            evidence = finite({"centre_m": centre_m, "radius_m": fence.radius_m})
            if self._outside(f"fence:{fence_id}", centre_m > fence.radius_m, o.mono_ns):
                findings.append(Finding(self.name, Severity.ALERT, o.wall_ns, evidence,
                                        f"outside geofence {fence_id}", position, f"fence:{fence_id}"))
            elif centre_m > fence.radius_m - margin:  # near the border, or outside not yet confirmed
                findings.append(Finding(self.name, Severity.WARNING, o.wall_ns, evidence,
                                        f"near the border of geofence {fence_id}", position,
                                        f"fence:{fence_id}"))
        self._judged = findings
        return findings

    def _outside(self, condition: str, outside: bool, mono_ns: int) -> bool:
        """Outside for `confirm_s` without a fix inside (a multipath jump is not leaving)."""
        if not outside:
            self._outside_since.pop(condition, None)
            return False
        since = self._outside_since.setdefault(condition, mono_ns)
        return bool(mono_ns - since >= self.o["confirm_s"] * 1e9)

    def state(self) -> Mapping[str, object]:
        return {"conditions": sorted(f.condition for f in self._judged)}


def _check(options: Mapping[str, Any]) -> None:
    check_range(KIND, options, "border_warning_m", 0.0, 1e6)
    check_range(KIND, options, "max_hdop", 0.5, 99.0)
    check_range(KIND, options, "confirm_s", 0.0, 3600.0)


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return GeofenceDetector(name, options)


SPEC = DetectorSpec(
    KIND, "outside the contract region or a commanded geofence → ALERT, near its border → WARNING",
    (Option("border_warning_m", float, 2000.0, "inside but closer than this to the border is a WARNING"),
     Option("confirm_s", float, 30.0, "outside this long before it is an ALERT (a WARNING till then)"),
     Option("max_hdop", float, 5.0, "fixes with a worse HDOP are not judged")),
    _build, policy=Policy(debounce_s=30.0, clear_s=120.0, cooldown_s=600.0, max_events_per_hour=6),
    check=_check)
