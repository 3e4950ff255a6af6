"""Risky places: the car standing for days at a used-car market, pawn shop, impound lot, auction,
port or border crossing, or visiting such places again and again → ALERT.

Places are the `[[vehicle.places]]` of a risky class (`edge.detect.vehicle.RISKY_CLASSES`, or the
`classes` option). Conditions:
* `stay:<place>`: the last known position has been within the place's radius for `stay_h`
  (a car parked in a garage that lost GNSS keeps its last position, so the stay goes on).
* `visits:<place class>`: `visits` or more visits to places of that class in the last
  `visit_window_days`; a visit counts once the car has been inside for `min_visit_s` (driving
  past is no visit). Leaving needs `exit_margin_m` beyond the radius, so GNSS jitter at the edge
  is not a new visit. Entry times and visits are kept across restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext.geo import distance_m
from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import DAY_NS, finite
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.detect.vehicle import PLACE_CLASSES, RISKY_CLASSES, Place
from edge.options import Option
from lienwatch.errors import ConfigError
from protocol.messages import Severity

KIND = "risky_places"
MAX_VISITS_KEPT = 200


class RiskyPlaces(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any], places: Sequence[Place]) -> None:
        super().__init__(name)
        self.o = dict(options)
        classes = frozenset(options["classes"]) if options["classes"] else RISKY_CLASSES
        self.places = [p for p in places if p.place_class in classes]
        self.inside: dict[str, int] = {}  # place name -> wall ns it was entered
        self.counted: set[str] = set()  # places whose current stay already counted as a visit
        self.visits: list[tuple[int, str, str]] = []  # (wall ns, place, class)
        self._last_fix_ns = -1

    def observe(self, o: Observation) -> Sequence[Finding]:
        position = o.position
        if position is not None and position.time_ns != self._last_fix_ns:
            self._last_fix_ns = position.time_ns
            self._locate(position.lat_deg, position.lon_deg, o.wall_ns)
        findings: list[Finding] = []
        for place in self.places:
            entered = self.inside.get(place.name)
            if entered is None:
                continue
            stay_s = (o.wall_ns - entered) / 1e9
            if stay_s >= self.o["min_visit_s"] and place.name not in self.counted:
                self.counted.add(place.name)
                self.visits.append((o.wall_ns, place.name, place.place_class))
                del self.visits[:-MAX_VISITS_KEPT]
            if stay_s >= self.o["stay_h"] * 3600:
                findings.append(Finding(
                    self.name, Severity.ALERT, o.wall_ns, finite({"stay_h": stay_s / 3600,
                                                                  "radius_m": place.radius_m}),
                    f"standing {stay_s / 3600:.0f} h at {place.place_class} {place.name!r}", position,
                    f"stay:{place.name}"))
        since = o.wall_ns - int(self.o["visit_window_days"] * DAY_NS)
        self.visits = [v for v in self.visits if v[0] >= since]
        by_class: dict[str, list[str]] = {}
        for _, place_name, place_class in self.visits:
            by_class.setdefault(place_class, []).append(place_name)
        for place_class, names in by_class.items():
            if len(names) >= self.o["visits"]:
                findings.append(Finding(
                    self.name, Severity.ALERT, o.wall_ns,
                    {"visits": float(len(names)), "window_days": float(self.o["visit_window_days"]),
                     "distinct_places": float(len(set(names)))},
                    f"{len(names)} visits to {place_class} places in {self.o['visit_window_days']:g} days "
                    f"({', '.join(sorted(set(names)))})", position, f"visits:{place_class}"))
        return findings

    def _locate(self, lat: float, lon: float, wall_ns: int) -> None:
        for place in self.places:
            away_m = distance_m(lat, lon, place.lat_deg, place.lon_deg)
            if place.name in self.inside:
                if away_m > place.radius_m + self.o["exit_margin_m"]:
                    del self.inside[place.name]
                    self.counted.discard(place.name)
            elif away_m <= place.radius_m:
                self.inside[place.name] = wall_ns

    def state(self) -> Mapping[str, object]:
        return {"places": len(self.places), "inside": sorted(self.inside),
                "visits_in_window": len(self.visits)}

    def saved_state(self) -> Mapping[str, Any]:
        return {"inside": self.inside, "counted": sorted(self.counted),
                "visits": [list(v) for v in self.visits]}

    def restore_state(self, data: Mapping[str, Any]) -> None:
        names = {p.name for p in self.places}
        inside = data.get("inside", {})
        if isinstance(inside, dict):
            self.inside = {str(k): int(v) for k, v in inside.items() if k in names and isinstance(v, int)}
        self.counted = {str(n) for n in data.get("counted", []) if n in self.inside}
        self.visits = [(int(t), str(n), str(c)) for t, n, c in data.get("visits", [])
                       if isinstance(t, int)][-MAX_VISITS_KEPT:]


def _check(options: Mapping[str, Any]) -> None:
    check_range(KIND, options, "stay_h", 0.1, 24 * 365.0)
    check_range(KIND, options, "visits", 1, MAX_VISITS_KEPT)
    check_range(KIND, options, "visit_window_days", 1.0, 365.0)
    check_range(KIND, options, "min_visit_s", 0.0, 86_400.0)
    check_range(KIND, options, "exit_margin_m", 0.0, 10_000.0)
    for value in options["classes"]:
        if value not in PLACE_CLASSES:
            raise ConfigError(f"detectors.{KIND}.classes: {value!r} is not a place class "
                              f"({', '.join(PLACE_CLASSES)})")


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return RiskyPlaces(name, options, context.vehicle.places)


SPEC = DetectorSpec(
    KIND, "standing at or repeatedly visiting risky places (markets, pawn, impound, ports) → ALERT",
    (Option("stay_h", float, 72.0, "hours within a risky place's radius that raise an ALERT"),
     Option("visits", int, 3, "visits to places of one risky class within the window that raise an ALERT"),
     Option("visit_window_days", float, 30.0, "the window for counting visits (days)"),
     Option("min_visit_s", float, 600.0, "seconds inside a place before it counts as a visit"),
     Option("exit_margin_m", float, 100.0, "leaving a place needs this far beyond its radius"),
     Option("classes", list, [], "place classes watched ([] = every risky class)")),
    _build, policy=Policy(clear_s=600.0, cooldown_s=6 * 3600.0, max_events_per_hour=4), check=_check)
