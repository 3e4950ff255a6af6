"""Usage change: the car suddenly used differently from its own past (driven every night, used
for ride-hailing, rented out) — the changes no rule names → WARNING, ALERT when it persists.

Each local day the detector closes four aggregates: `km` (GNSS distance with the ignition on),
`night_min` (minutes moving between `night_start` and `night_end`), `trips` (ignition-on
periods of at least `min_trip_s`) and `places` (distinct ~500 m cells where a trip ended). Each is
scored against the vehicle's own previous `baseline_days` (30) days:
* a robust z-score, (x − median) / (1.4826 · MAD), with a floor on the MAD per aggregate so a
  car that never drives at night is not "infinitely" unusual after ten night minutes;
* a one-sided CUSUM of those z-scores (S = max(0, S + z − `cusum_k`)), which catches a steady
  smaller shift that no single day shows (capped at 2 · `cusum_h`, so it quiets down within
  days once usage is back to normal).
A day with z ≥ `z_threshold`, or S ≥ `cusum_h` and z > `cusum_k` (the shift still shows that
day), for some aggregate is unusual; the condition
`usage` holds (WARNING) from the day after, and escalates to ALERT when `escalate_days`
consecutive days were unusual. Only increases count (a car used less is not a risk here). The
baseline, the CUSUM sums and today's partial figures are kept across restarts; it needs
`min_baseline_days` of history before it judges anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import finite, ignition_on, in_hours, local_day, parse_hhmm, speed_kmh
from edge.detect.features import PositionRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.options import Option
from protocol.messages import Severity

KIND = "usage"
AGGREGATES = ("km", "night_min", "trips", "places")
MAD_FLOOR = {"km": 25.0, "night_min": 10.0, "trips": 1.0, "places": 1.0}  # a holiday trip is no change
MOVING_KMH = 5.0
CELL_DEG = 0.005  # ~500 m: trip ends in one cell are one place
MAD_TO_SIGMA = 1.4826


def robust_z(value: float, history: Sequence[float], mad_floor: float) -> float:
    """(value − median) / (1.4826 · max(MAD, floor)) of `history`."""
    centre = median(history)
    mad = median(abs(x - centre) for x in history)
    return (value - centre) / (MAD_TO_SIGMA * max(mad, mad_floor))


class Usage(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.start = parse_hhmm(KIND, "night_start", options["night_start"])
        self.end = parse_hhmm(KIND, "night_end", options["night_end"])
        self.distance = PositionRequest("distance", min_step_m=25.0)
        self.features = (self.distance,)
        self.history: list[dict[str, float]] = []  # closed days, oldest first
        self.cusum = dict.fromkeys(AGGREGATES, 0.0)
        self.streak = 0  # consecutive unusual days
        self.last_scores: dict[str, float] = {}
        self.day = ""
        self.today = dict.fromkeys(AGGREGATES, 0.0)
        self.cells: set[str] = set()
        self._trip_since_ns: int | None = None
        self._last_m: float | None = None
        self._last_ns: int | None = None

    def observe(self, o: Observation) -> Sequence[Finding]:
        day = local_day(o)
        if day != self.day:
            if self.day:
                self._close_day()
            self.day = day
        distance = o.feature(self.distance)
        moved = 0.0 if self._last_m is None or math.isnan(distance) else max(0.0, distance - self._last_m)
        if not math.isnan(distance):
            self._last_m = distance
        dt_s = 0.0 if self._last_ns is None else (o.mono_ns - self._last_ns) / 1e9
        self._last_ns = o.mono_ns
        if ignition_on(o):
            self.today["km"] += moved / 1000
            if self._trip_since_ns is None:
                self._trip_since_ns = o.mono_ns
            if speed_kmh(o) >= MOVING_KMH and in_hours(o.local_time, self.start, self.end):
                self.today["night_min"] += dt_s / 60
        elif self._trip_since_ns is not None:
            if (o.mono_ns - self._trip_since_ns) / 1e9 >= self.o["min_trip_s"]:
                self.today["trips"] += 1
                if o.position is not None:
                    self.cells.add(f"{math.floor(o.position.lat_deg / CELL_DEG)}:"
                                   f"{math.floor(o.position.lon_deg / CELL_DEG)}")
                    self.today["places"] = float(len(self.cells))
            self._trip_since_ns = None
        if self.streak == 0:
            return ()
        severity = Severity.ALERT if self.streak >= self.o["escalate_days"] else Severity.WARNING
        evidence = finite({**{f"z_{k}": v for k, v in self.last_scores.items()},
                           **{f"cusum_{k}": v for k, v in self.cusum.items()},
                           **{f"yesterday_{k}": v for k, v in self.history[-1].items()},
                           "unusual_days": float(self.streak)})
        worst = max(self.last_scores, key=lambda k: self.last_scores[k])
        return (Finding(self.name, severity, o.wall_ns, evidence,
                        f"usage unlike the last {self.o['baseline_days']} days for {self.streak} day(s) "
                        f"({worst} z={self.last_scores[worst]:.1f})", o.position, "usage"),)

    def _close_day(self) -> None:
        figures = dict(self.today)
        baseline = self.history[-self.o["baseline_days"]:]
        if len(baseline) >= self.o["min_baseline_days"]:
            scores = {k: robust_z(figures[k], [d[k] for d in baseline], MAD_FLOOR[k]) for k in AGGREGATES}
            for k, z in scores.items():
                # capped at 2 h: back to normal, the chart quiets down within days, not months
                self.cusum[k] = min(2 * self.o["cusum_h"], max(0.0, self.cusum[k] + z - self.o["cusum_k"]))
            self.last_scores = scores
            # the chart signals a sustained shift, but only on a day that still shows it
            o = self.o
            unusual = any(z >= o["z_threshold"] or (self.cusum[k] >= o["cusum_h"] and z > o["cusum_k"])
                          for k, z in scores.items())
            self.streak = self.streak + 1 if unusual else 0
        self.history.append(figures)
        del self.history[:-self.o["baseline_days"]]
        self.today = dict.fromkeys(AGGREGATES, 0.0)
        self.cells = set()

    def state(self) -> Mapping[str, object]:
        return {"baseline_days": len(self.history), "unusual_days": self.streak,
                "today": {k: round(v, 1) for k, v in self.today.items()}}

    def saved_state(self) -> Mapping[str, Any]:
        return {"history": self.history, "cusum": self.cusum, "streak": self.streak,
                "scores": self.last_scores, "day": self.day, "today": self.today, "cells": sorted(self.cells)}

    def restore_state(self, data: Mapping[str, Any]) -> None:
        def figures(value: Any) -> dict[str, float]:
            return {k: float(value[k]) for k in AGGREGATES}

        self.history = [figures(d) for d in data.get("history", [])][-self.o["baseline_days"]:]
        self.cusum = figures(data.get("cusum", self.cusum))
        self.streak = int(data.get("streak", 0))
        self.last_scores = {k: float(v) for k, v in data.get("scores", {}).items() if k in AGGREGATES}
        if self.streak and (len(self.last_scores) != len(AGGREGATES) or not self.history):
            self.streak = 0
        if isinstance(data.get("day"), str) and "today" in data:
            self.day, self.today = data["day"], figures(data["today"])
            self.cells = {str(c) for c in data.get("cells", [])}


def _check(options: Mapping[str, Any]) -> None:
    for key, low, high in (("baseline_days", 7, 120), ("min_baseline_days", 3, 120),
                           ("z_threshold", 1.0, 100.0), ("cusum_k", 0.0, 10.0), ("cusum_h", 0.5, 100.0),
                           ("escalate_days", 1, 60), ("min_trip_s", 0.0, 3600.0)):
        check_range(KIND, options, key, low, high)
    if options["min_baseline_days"] > options["baseline_days"]:
        from lienwatch.errors import ConfigError

        raise ConfigError(f"detectors.{KIND}.min_baseline_days must not exceed baseline_days, "
                          f"got {options['min_baseline_days']!r}")
    parse_hhmm(KIND, "night_start", options["night_start"])
    parse_hhmm(KIND, "night_end", options["night_end"])


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return Usage(name, options)


SPEC = DetectorSpec(
    KIND, "daily km, night minutes, trips, places against the own 30-day baseline → WARNING, ALERT",
    (Option("baseline_days", int, 30, "rolling baseline of closed days"),
     Option("min_baseline_days", int, 14, "days of history before anything is judged"),
     Option("z_threshold", float, 4.0, "robust z-score of a day that makes it unusual"),
     Option("cusum_k", float, 0.5, "CUSUM allowance (in z units) per day"),
     Option("cusum_h", float, 5.0, "CUSUM sum that makes a day unusual"),
     Option("escalate_days", int, 3, "consecutive unusual days that escalate the WARNING to an ALERT"),
     Option("min_trip_s", float, 120.0, "ignition-on periods shorter than this are no trip"),
     Option("night_start", str, "22:00", "night begins (local time)"),
     Option("night_end", str, "06:00", "night ends")),
    _build, policy=Policy(clear_s=600.0, cooldown_s=3600.0, max_events_per_hour=2), check=_check)
