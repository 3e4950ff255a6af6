"""Odometer fraud: the odometer going back, under-reading GNSS over a trip, "distance since
codes cleared" resetting, or a month's mileage far above the vehicle's own baseline → ALERT.

Conditions (each its own event):
* `rollback`: `Vehicle.TraveledDistance` lower than the highest value seen (kept across
  restarts, so a rollback done while the tracker was unplugged is seen at the next start).
* `trip_divergence`: at the end of a trip (ignition on → off) of at least `min_trip_km` by GNSS
  (`PositionRequest("distance")`), the odometer advanced less than GNSS by more than
  `tolerance_pct` (an odometer blocker or a disconnected cluster). An odometer ahead of GNSS is
  normal (tunnels, lost fixes) and never fires.
* `dtc_clear_reset`: `Vehicle.OBD.DistanceSinceDTCClear` dropped by `dtc_reset_min_km` or more
  (codes cleared: often done to hide a manipulated cluster or a fault before a sale).
* `monthly_mileage`: the last 30 days' km exceed the mean 30-day km of the earlier
  `baseline_days` by `monthly_excess_km` (a car rented out, used as a taxi).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import DTC_DISTANCE, NS, ODOMETER, Facts, finite, ignition_on, local_day, sid
from edge.detect.features import PositionRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.options import Option
from protocol.messages import Severity

KIND = "odometer"
FACT_HOLD_S = 60.0
MAX_STEP_M = 50_000.0  # a forward jump larger than this between two samples is a glitch, not km
HISTORY_DAYS = 150


class Odometer(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.gnss_distance = PositionRequest("distance", min_step_m=options["gnss_min_step_m"])
        self.features = (self.gnss_distance,)
        self._odo_id, self._dtc_id = sid(ODOMETER), sid(DTC_DISTANCE)
        self.max_odo_m: float | None = None
        self.last_odo_m: float | None = None
        self.last_dtc_km: float | None = None
        self.day_km: dict[str, float] = {}
        self._trip: tuple[float, float | None] | None = None  # (gnss m, odometer m) at trip start
        self._facts = Facts()
        self._next_monthly_ns = 0
        self._monthly_finding: Finding | None = None

    def observe(self, o: Observation) -> Sequence[Finding]:
        for sample in o.samples:
            if not math.isfinite(sample.value) or sample.value < 0:
                continue  # a garbled reading is no odometer value
            if sample.signal_id == self._odo_id:
                self._odometer(o, sample.value)
            elif sample.signal_id == self._dtc_id:
                self._dtc(o, sample.value)
        self._trips(o)
        findings = self._facts.active(o.mono_ns)
        if o.mono_ns >= self._next_monthly_ns:  # a daily figure: once a minute is plenty
            self._next_monthly_ns = o.mono_ns + 60 * NS
            self._monthly_finding = self._monthly(o)
        monthly = self._monthly_finding
        if monthly is not None:
            findings.append(monthly)
        return findings

    def _finding(self, o: Observation, condition: str, evidence: Mapping[str, float], detail: str) -> Finding:
        return Finding(self.name, Severity.ALERT, o.wall_ns, finite(evidence), detail, o.position, condition)

    def _odometer(self, o: Observation, value_m: float) -> None:
        if self.max_odo_m is not None and value_m < self.max_odo_m - self.o["rollback_m"]:
            self._facts.note(self._finding(
                o, "rollback", {"odometer_km": value_m / 1000, "highest_km": self.max_odo_m / 1000,
                                "rollback_km": (self.max_odo_m - value_m) / 1000},
                f"odometer went back {(self.max_odo_m - value_m) / 1000:.1f} km"), o.mono_ns, FACT_HOLD_S)
            self.max_odo_m = value_m  # the new reading is the reference from now on: one event
        if self.last_odo_m is not None and 0.0 < value_m - self.last_odo_m < MAX_STEP_M:
            day = local_day(o)
            self.day_km[day] = self.day_km.get(day, 0.0) + (value_m - self.last_odo_m) / 1000
        self.last_odo_m = value_m
        self.max_odo_m = value_m if self.max_odo_m is None else max(self.max_odo_m, value_m)

    def _dtc(self, o: Observation, value_km: float) -> None:
        last = self.last_dtc_km
        if last is not None and last - value_km >= self.o["dtc_reset_min_km"]:
            self._facts.note(self._finding(
                o, "dtc_clear_reset", {"dtc_distance_km": value_km, "before_km": last},
                f"distance since codes cleared reset from {last:.0f} km to {value_km:.0f} km"),
                o.mono_ns, FACT_HOLD_S)
        self.last_dtc_km = value_km

    def _trips(self, o: Observation) -> None:
        gnss_m = o.feature(self.gnss_distance)
        gnss_m = 0.0 if gnss_m != gnss_m else gnss_m  # NaN before the first fix
        if ignition_on(o):
            if self._trip is None:
                self._trip = (gnss_m, self.last_odo_m)
            return
        if self._trip is None:
            return
        start_gnss, start_odo = self._trip
        self._trip = None
        gnss_km = (gnss_m - start_gnss) / 1000
        if start_odo is None or self.last_odo_m is None or gnss_km < self.o["min_trip_km"]:
            return
        odo_km = (self.last_odo_m - start_odo) / 1000
        short_pct = 100.0 * (gnss_km - odo_km) / gnss_km
        if short_pct > self.o["tolerance_pct"]:
            self._facts.note(self._finding(
                o, "trip_divergence", {"odometer_trip_km": odo_km, "gnss_trip_km": gnss_km,
                                       "odometer_short_pct": short_pct},
                f"odometer counted {odo_km:.1f} km of a {gnss_km:.1f} km trip"), o.mono_ns, FACT_HOLD_S)

    def _monthly(self, o: Observation) -> Finding | None:
        today = o.local_time.date()
        self._prune(today)
        span = 30 + self.o["baseline_days"]
        ages = [((today - _date(day)).days, km) for day, km in self.day_km.items()]
        if not ages or max(age for age, _ in ages) < span - 1:
            return None  # not yet a full baseline
        recent = sum(km for age, km in ages if age < 30)
        baseline = sum(km for age, km in ages if 30 <= age < span) * 30.0 / self.o["baseline_days"]
        if recent - baseline < self.o["monthly_excess_km"]:
            return None
        return self._finding(o, "monthly_mileage", {"km_30d": recent, "baseline_km_30d": baseline},
                             f"{recent:.0f} km in 30 days against a usual {baseline:.0f} km")

    def _prune(self, today: dt.date) -> None:
        for day in [d for d in self.day_km if (today - _date(d)).days > HISTORY_DAYS]:
            del self.day_km[day]

    def state(self) -> Mapping[str, object]:
        return {"odometer_km": None if self.max_odo_m is None else round(self.max_odo_m / 1000, 1),
                "days_of_history": len(self.day_km)}

    def saved_state(self) -> Mapping[str, Any]:
        return {"max_odo_m": self.max_odo_m, "last_dtc_km": self.last_dtc_km, "day_km": self.day_km}

    def restore_state(self, data: Mapping[str, Any]) -> None:
        if isinstance(data.get("max_odo_m"), (int, float)):
            self.max_odo_m = float(data["max_odo_m"])
        if isinstance(data.get("last_dtc_km"), (int, float)):
            self.last_dtc_km = float(data["last_dtc_km"])
        days = data.get("day_km")
        if isinstance(days, dict):
            self.day_km = {str(d): float(v) for d, v in days.items() if isinstance(v, (int, float))
                           and _is_date(str(d))}


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _check(options: Mapping[str, Any]) -> None:
    check_range(KIND, options, "rollback_m", 0.0, 1e6)
    check_range(KIND, options, "tolerance_pct", 0.1, 100.0)
    check_range(KIND, options, "min_trip_km", 0.1, 10_000.0)
    check_range(KIND, options, "gnss_min_step_m", 0.0, 1000.0)
    check_range(KIND, options, "dtc_reset_min_km", 1.0, 1e6)
    check_range(KIND, options, "monthly_excess_km", 1.0, 1e6)
    check_range(KIND, options, "baseline_days", 30, HISTORY_DAYS - 30)


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return Odometer(name, options)


SPEC = DetectorSpec(
    KIND, "odometer rollback, odometer vs GNSS, codes-cleared reset, mileage above baseline → ALERT",
    (Option("rollback_m", float, 100.0, "odometer lower than its highest reading by more than this (m)"),
     Option("tolerance_pct", float, 15.0, "the odometer may fall short of GNSS over a trip by this (%)"),
     Option("min_trip_km", float, 10.0, "trips shorter than this by GNSS are not compared"),
     Option("gnss_min_step_m", float, 10.0, "GNSS steps shorter than this are jitter, not distance"),
     Option("dtc_reset_min_km", float, 5.0, "a drop of distance-since-codes-cleared of at least this (km)"),
     Option("monthly_excess_km", float, 2000.0, "30-day km above the own baseline by this much"),
     Option("baseline_days", int, 60, "days before the last 30 that make the mileage baseline")),
    _build, policy=Policy(clear_s=60.0, cooldown_s=3600.0, max_events_per_hour=4), check=_check)
