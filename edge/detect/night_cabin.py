"""Night cabin activity: more than `max_openings` door openings in one night (22:00–06:00 in the
vehicle's time zone) → ALERT (somebody stripping or emptying the car, or handing it over).

An opening is a door signal going from closed (0) to open (1); a door that bounces (open again
within `min_gap_s` of its last opening) is one opening. The count is per night and restarts
when the night ends (a calendar period, so a plain counter, not a rolling feature); the
condition holds from the opening that exceeds the count to the end of that night. The owner
going out at night and coming back (a few openings) stays below the default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import NS, in_hours, parse_hhmm, sid
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.options import Option
from lienwatch.errors import ConfigError
from protocol.catalog import default_catalog
from protocol.messages import Severity

KIND = "night_cabin"
DOORS = ("Vehicle.Cabin.Door.Row1.DriverSide.IsOpen", "Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen",
         "Vehicle.Cabin.Door.Row2.DriverSide.IsOpen", "Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen")


class NightCabin(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.start = parse_hhmm(KIND, "night_start", options["night_start"])
        self.end = parse_hhmm(KIND, "night_end", options["night_end"])
        self._doors = {sid(path): path for path in options["doors"]}
        self._open: dict[int, bool] = {}
        self._last_opening_ns: dict[int, int] = {}
        self.openings = 0
        self._was_night = False

    def observe(self, o: Observation) -> Sequence[Finding]:
        night = in_hours(o.local_time, self.start, self.end)
        if night and not self._was_night:
            self.openings = 0
        self._was_night = night
        for sample in o.samples:
            door = sample.signal_id
            if door not in self._doors:
                continue
            is_open = sample.value >= 0.5
            if is_open and self._open.get(door) is False and night:
                last = self._last_opening_ns.get(door)
                if last is None or sample.mono_ns - last >= self.o["min_gap_s"] * NS:
                    self.openings += 1
                self._last_opening_ns[door] = sample.mono_ns
            self._open[door] = is_open
        if not night or self.openings <= self.o["max_openings"]:
            return ()
        return (Finding(self.name, Severity.ALERT, o.wall_ns,
                        {"door_openings": float(self.openings), "max_openings": float(self.o["max_openings"]),
                         "local_hour": o.local_time.hour + o.local_time.minute / 60},
                        f"{self.openings} door openings tonight ({o.vehicle.time_zone})", o.position),)

    def state(self) -> Mapping[str, object]:
        return {"openings_tonight": self.openings if self._was_night else 0}


def _check(options: Mapping[str, Any]) -> None:
    check_range(KIND, options, "max_openings", 0, 1000)
    check_range(KIND, options, "min_gap_s", 0.0, 3600.0)
    parse_hhmm(KIND, "night_start", options["night_start"])
    parse_hhmm(KIND, "night_end", options["night_end"])
    if not options["doors"]:
        raise ConfigError(f"detectors.{KIND}.doors must name at least one door signal")
    for path in options["doors"]:
        if not isinstance(path, str) or path not in default_catalog():
            raise ConfigError(f"detectors.{KIND}.doors: {path!r} is not in the signal catalog")


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return NightCabin(name, options)


SPEC = DetectorSpec(
    KIND, "door openings at night above a count → ALERT",
    (Option("max_openings", int, 3, "more openings than this in one night raise an ALERT"),
     Option("night_start", str, "22:00", "night begins (local time of [vehicle] time_zone)"),
     Option("night_end", str, "06:00", "night ends"),
     Option("min_gap_s", float, 5.0, "a door opening again within this is the same opening (bounce)"),
     Option("doors", list, list(DOORS), "door signals (catalog paths) that count")),
    _build, policy=Policy(clear_s=60.0, cooldown_s=3600.0, max_events_per_hour=2), check=_check)
