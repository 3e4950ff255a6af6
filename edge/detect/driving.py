"""Driving: a crash (horizontal acceleration ≥ `crash_g`) → EMERGENCY; harsh acceleration,
braking and cornering, overspeed and long idling are counted per local day for the daily
summary, never raised.

The crash test reads the per-axis peaks of the last second (`FeatureRequest(Max/Min)` of the
longitudinal and lateral accelerometer) and combines them: a pothole shakes the vertical axis,
which is not used. The counters (`state()["today"]`, also `["yesterday"]`, shown by `lienwatch
edge status` and kept across restarts) count episodes with hysteresis: one harsh braking is one
excursion beyond 2.7 m/s² until the value falls back below 80 % of it, whatever its length.
`wire_days()` gives them to the agent's Status (protocol 1.1 key 13), so the cloud's daily
summary shows them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext import spec as sp
from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import (
    NS,
    RPM,
    days_between,
    finite,
    ignition_on,
    latest_value,
    local_day,
    sid,
    speed_kmh,
)
from edge.detect.features import FeatureRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.options import Option
from lienwatch.errors import ConfigError
from protocol.bodies import MAX_DRIVING_COUNT, MAX_DRIVING_S
from protocol.messages import DrivingDay, Severity

KIND = "driving"
LONGITUDINAL = "Vehicle.Acceleration.Longitudinal"
LATERAL = "Vehicle.Acceleration.Lateral"
G = 9.80665
REARM = 0.8  # an episode ends when the value is back below this fraction of its threshold
COUNTERS = ("harsh_accel", "harsh_brake", "harsh_corner", "overspeed", "overspeed_s", "idle", "idle_s")


class Driving(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.peaks = tuple(FeatureRequest(path, stat, window=256, window_s=1.0)
                           for path in (LONGITUDINAL, LATERAL) for stat in (sp.Max(), sp.Min()))
        self.features = self.peaks
        self._long, self._lat, self._rpm = sid(LONGITUDINAL), sid(LATERAL), sid(RPM)
        self._in: dict[str, bool] = {}
        self._idle_since_ns: int | None = None
        self._last_ns: int | None = None
        self.day = ""
        self.today: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self.yesterday: dict[str, float] = {}

    def observe(self, o: Observation) -> Sequence[Finding]:
        day = local_day(o)
        if day != self.day:
            if self.day:
                self.yesterday = {"day": self.day, **self.today}  # type: ignore[dict-item]
            self.day, self.today = day, dict.fromkeys(COUNTERS, 0.0)
        dt_s = 0.0 if self._last_ns is None else (o.mono_ns - self._last_ns) / NS
        self._last_ns = o.mono_ns
        if ignition_on(o):
            for sample in o.samples:
                if sample.signal_id == self._long:
                    self._episode("harsh_accel", sample.value, self.o["harsh_accel_ms2"])
                    self._episode("harsh_brake", -sample.value, self.o["harsh_brake_ms2"])
                elif sample.signal_id == self._lat:
                    self._episode("harsh_corner", abs(sample.value), self.o["harsh_corner_ms2"])
            self._usage(o, dt_s)
        else:
            self._idle_since_ns = None
        return self._crash(o)

    def _episode(self, name: str, value: float, threshold: float) -> None:
        if self._in.get(name):
            self._in[name] = value > threshold * REARM
        elif value >= threshold:
            self._in[name] = True
            self.today[name] += 1

    def _usage(self, o: Observation, dt_s: float) -> None:
        speed = speed_kmh(o)
        if speed >= self.o["overspeed_kmh"]:
            self.today["overspeed_s"] += dt_s
        self._episode("overspeed", speed, self.o["overspeed_kmh"])
        idling = speed < 1.0 and latest_value(o, self._rpm, 0.0) > 300.0
        if not idling:
            self._idle_since_ns = None
            return
        if self._idle_since_ns is None:
            self._idle_since_ns = o.mono_ns
        idle_s = (o.mono_ns - self._idle_since_ns) / NS
        if idle_s >= self.o["idle_s"]:
            if idle_s - dt_s < self.o["idle_s"]:
                self.today["idle"] += 1
                self.today["idle_s"] += idle_s - dt_s  # the idling before it counted as long
            self.today["idle_s"] += dt_s

    def _crash(self, o: Observation) -> Sequence[Finding]:
        long_max, long_min, lat_max, lat_min = (o.feature(r) for r in self.peaks)
        peak_long = max(abs(long_max), abs(long_min))
        peak_lat = max(abs(lat_max), abs(lat_min))
        peak = math.hypot(peak_long, peak_lat)
        if not peak >= self.o["crash_g"] * G:
            return ()
        longitudinal = long_max if abs(long_max) > abs(long_min) else long_min
        lateral = lat_max if abs(lat_max) > abs(lat_min) else lat_min
        return (Finding(self.name, Severity.EMERGENCY, o.wall_ns,
                        finite({"peak_g": peak / G, "longitudinal_ms2": longitudinal, "lateral_ms2": lateral,
                                "speed_kmh": speed_kmh(o)}),
                        f"crash: {peak / G:.1f} g", o.position, "crash"),)

    def state(self) -> Mapping[str, object]:
        return {"today": {k: round(v, 1) for k, v in self.today.items()}, "yesterday": self.yesterday}

    def wire_days(self) -> tuple[DrivingDay, ...]:
        """Today's counters and, when it is the day before, yesterday's final ones, for a Status."""
        days = []
        if isinstance(self.yesterday.get("day"), str) and self.day and \
                days_between(str(self.yesterday["day"]), self.day) == 1:
            days.append(_wire_day(str(self.yesterday["day"]), self.yesterday))
        if self.day:
            days.append(_wire_day(self.day, self.today))
        return tuple(days)

    def saved_state(self) -> Mapping[str, Any]:
        return {"day": self.day, "today": self.today, "yesterday": self.yesterday}

    def restore_state(self, data: Mapping[str, Any]) -> None:
        today = data.get("today")
        if isinstance(data.get("day"), str) and isinstance(today, dict):
            self.day = data["day"]
            self.today = {k: float(today.get(k, 0.0)) for k in COUNTERS}
        if isinstance(data.get("yesterday"), dict):
            self.yesterday = dict(data["yesterday"])


def _wire_day(day: str, counts: Mapping[str, object]) -> DrivingDay:
    def get(name: str, high: int) -> int:
        value = counts.get(name, 0.0)
        number = float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0
        return min(max(round(number), 0), high)
    return DrivingDay(day, get("harsh_accel", MAX_DRIVING_COUNT), get("harsh_brake", MAX_DRIVING_COUNT),
                      get("harsh_corner", MAX_DRIVING_COUNT), get("overspeed", MAX_DRIVING_COUNT),
                      get("overspeed_s", MAX_DRIVING_S), get("idle", MAX_DRIVING_COUNT),
                      get("idle_s", MAX_DRIVING_S))


def _check(options: Mapping[str, Any]) -> None:
    for key, low, high in (("crash_g", 1.0, 50.0), ("harsh_accel_ms2", 0.5, 20.0),
                           ("harsh_brake_ms2", 0.5, 20.0), ("harsh_corner_ms2", 0.5, 20.0),
                           ("overspeed_kmh", 10.0, 400.0), ("idle_s", 10.0, 86_400.0)):
        check_range(KIND, options, key, low, high)
    harsh = max(options["harsh_accel_ms2"], options["harsh_brake_ms2"], options["harsh_corner_ms2"])
    if options["crash_g"] * G <= harsh:
        raise ConfigError(f"detectors.{KIND}.crash_g must be above the harsh thresholds, "
                          f"got {options['crash_g']!r}")


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return Driving(name, options)


SPEC = DetectorSpec(
    KIND, "crash → EMERGENCY; harsh driving, overspeed and idling counted per day",
    (Option("crash_g", float, 2.5, "horizontal acceleration (g) of a crash"),
     Option("harsh_accel_ms2", float, 2.5, "harsh acceleration (m/s²), counted"),
     Option("harsh_brake_ms2", float, 2.7, "harsh braking (m/s²), counted"),
     Option("harsh_corner_ms2", float, 3.4, "harsh cornering, lateral (m/s²), counted"),
     Option("overspeed_kmh", float, 130.0, "overspeed above this (km/h), episodes and seconds counted"),
     Option("idle_s", float, 300.0, "engine running at standstill this long is long idling, counted")),
    _build, policy=Policy(clear_s=600.0, cooldown_s=600.0, max_events_per_hour=4), check=_check)
