"""Battery health: the 12 V battery resting below its cranking reserve, an EV traction battery
losing state of health faster than its own baseline, or cells drifting apart.

Conditions:
* `resting_12v`: ignition off and engine stopped for `hold_s`, and the highest supply voltage
  of the last `hold_s` (`FeatureRequest(Max)`, so a crank dip or a load spike cannot hide it)
  is below `warning_v` → WARNING, below `alert_v` → ALERT. Readings below `min_valid_v` or
  without external power are an unplugged tracker (the unplug detector's), not a weak battery.
* `soh_fade`: one SoH value per local day (kept `SOH_DAYS` days across restarts); the loss over
  the last `soh_window_days` (at least two weeks of data), per year, above `soh_rate_factor` ×
  the baseline rate (the vehicle's own long-term rate before the window, never below
  `soh_expected_pct_per_year`) and at least `soh_min_drop_pct` → WARNING; a loss of
  `soh_alert_drop_pct` within the window → ALERT.
* `cell_imbalance`: mean max − mean min cell voltage over `cell_window_s` above
  `cell_warning_v` → WARNING, above `cell_alert_v` → ALERT.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext import spec as sp
from edge.detect.base import Detector, Finding, Observation
from edge.detect.days import EXTERNAL_POWER, NS, RPM, SUPPLY, finite, ignition_on, latest_value, sid
from edge.detect.features import FeatureRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.options import Option
from lienwatch.errors import ConfigError
from protocol.messages import Severity

KIND = "battery"
SOH = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
CELL_MIN = "Vehicle.Powertrain.TractionBattery.CellVoltage.Min"
CELL_MAX = "Vehicle.Powertrain.TractionBattery.CellVoltage.Max"
SOH_DAYS = 400
ENGINE_RUNNING_RPM = 300.0


class Battery(Detector):
    kind = KIND

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.supply_max = FeatureRequest(SUPPLY, sp.Max(), window=4096, window_s=options["hold_s"])
        self.cell_max = FeatureRequest(CELL_MAX, sp.Mean(), window=4096, window_s=options["cell_window_s"])
        self.cell_min = FeatureRequest(CELL_MIN, sp.Mean(), window=4096, window_s=options["cell_window_s"])
        self.features = (self.supply_max, self.cell_max, self.cell_min)
        self._rpm, self._ext, self._soh = (sid(p) for p in (RPM, EXTERNAL_POWER, SOH))
        self._rest_since_ns: int | None = None
        self.soh_days: dict[str, float] = {}
        self._soh_finding: Finding | None = None
        self._judged_day = ""

    def observe(self, o: Observation) -> Sequence[Finding]:
        findings = [f for f in (self._resting(o), self._cells(o)) if f is not None]
        for sample in o.samples:
            if sample.signal_id == self._soh and 0.0 < sample.value <= 100.0:
                day = o.local_time.date().isoformat()
                self.soh_days.setdefault(day, sample.value)  # the day's first reading
                if day != self._judged_day:  # judged once a day (and once after a restart)
                    self._judged_day = day
                    for old in sorted(self.soh_days)[:-SOH_DAYS]:
                        del self.soh_days[old]
                    self._soh_finding = self._fade(o)
        if self._soh_finding is not None:
            findings.append(self._soh_finding)
        return findings

    def _resting(self, o: Observation) -> Finding | None:
        engine = latest_value(o, self._rpm, 0.0) > ENGINE_RUNNING_RPM  # a silent ECU: unknown, not running
        if engine or ignition_on(o):
            self._rest_since_ns = None
            return None
        if self._rest_since_ns is None:
            self._rest_since_ns = o.mono_ns
        if o.mono_ns - self._rest_since_ns < self.o["hold_s"] * NS or latest_value(o, self._ext, 1.0) < 0.5:
            return None
        peak = o.feature(self.supply_max)
        if not (self.o["min_valid_v"] <= peak < self.o["warning_v"]):
            return None
        severity = Severity.ALERT if peak < self.o["alert_v"] else Severity.WARNING
        return Finding(self.name, severity, o.wall_ns,
                       finite({"supply_max_v": peak, "rested_s": (o.mono_ns - self._rest_since_ns) / NS}),
                       f"12 V battery resting at {peak:.2f} V, below the cranking reserve", o.position,
                       "resting_12v")

    def _cells(self, o: Observation) -> Finding | None:
        spread = o.feature(self.cell_max) - o.feature(self.cell_min)
        if not spread > self.o["cell_warning_v"]:
            return None
        severity = Severity.ALERT if spread > self.o["cell_alert_v"] else Severity.WARNING
        return Finding(self.name, severity, o.wall_ns, finite({"cell_spread_v": spread}),
                       f"traction battery cells {spread * 1000:.0f} mV apart", o.position, "cell_imbalance")

    def _fade(self, o: Observation) -> Finding | None:
        """The state-of-health condition, judged once per new day of SoH data."""
        days = sorted((dt.date.fromisoformat(d), v) for d, v in self.soh_days.items())
        today, now = days[-1]
        window = [(d, v) for d, v in days if (today - d).days <= self.o["soh_window_days"]]
        span = (today - window[0][0]).days
        if span < 14:
            return None
        drop = max(v for _, v in window) - now
        rate = drop / span * 365.0
        before = [(d, v) for d, v in days if (today - d).days > self.o["soh_window_days"]]
        baseline = self.o["soh_expected_pct_per_year"]
        if len(before) >= 2 and (before[-1][0] - before[0][0]).days >= 60:
            own = (before[0][1] - before[-1][1]) / (before[-1][0] - before[0][0]).days * 365.0
            baseline = max(baseline, own)
        evidence = finite({"soh_pct": now, "soh_drop_pct": drop, "fade_pct_per_year": rate,
                           "baseline_pct_per_year": baseline})
        if drop >= self.o["soh_alert_drop_pct"]:
            severity = Severity.ALERT
        elif drop >= self.o["soh_min_drop_pct"] and rate > self.o["soh_rate_factor"] * baseline:
            severity = Severity.WARNING
        else:
            return None
        return Finding(self.name, severity, o.wall_ns, evidence,
                       f"state of health lost {drop:.1f} % in {span} days ({rate:.1f} %/year)", o.position,
                       "soh_fade")

    def state(self) -> Mapping[str, object]:
        return {"resting": self._rest_since_ns is not None, "soh_days": len(self.soh_days)}

    def saved_state(self) -> Mapping[str, Any]:
        return {"soh_days": self.soh_days}

    def restore_state(self, data: Mapping[str, Any]) -> None:
        days = data.get("soh_days")
        if isinstance(days, dict):
            for day, value in days.items():
                try:
                    dt.date.fromisoformat(str(day))
                except ValueError:
                    continue
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.soh_days[str(day)] = float(value)


def _check(options: Mapping[str, Any]) -> None:
    for key, low, high in (("warning_v", 6.0, 16.0), ("alert_v", 0.0, 16.0), ("min_valid_v", 0.0, 16.0),
                           ("hold_s", 1.0, 86_400.0), ("cell_window_s", 1.0, 86_400.0),
                           ("cell_warning_v", 0.001, 5.0), ("cell_alert_v", 0.001, 5.0),
                           ("soh_window_days", 14, 365), ("soh_expected_pct_per_year", 0.0, 100.0),
                           ("soh_rate_factor", 1.0, 100.0), ("soh_min_drop_pct", 0.0, 100.0),
                           ("soh_alert_drop_pct", 0.1, 100.0)):
        check_range(KIND, options, key, low, high)
    if not options["min_valid_v"] < options["alert_v"] < options["warning_v"]:
        raise ConfigError(f"detectors.{KIND}.alert_v must lie between min_valid_v and warning_v, "
                          f"got {options['alert_v']!r}")
    if not options["cell_warning_v"] < options["cell_alert_v"]:
        raise ConfigError(f"detectors.{KIND}.cell_alert_v must be above cell_warning_v, "
                          f"got {options['cell_alert_v']!r}")


def _build(name: str, options: Mapping[str, Any], context: DetectorContext) -> Detector:
    return Battery(name, options)


SPEC = DetectorSpec(
    KIND, "12 V battery below the cranking reserve; EV state of health fading, cells imbalanced",
    (Option("warning_v", float, 12.2, "resting 12 V below this for hold_s is a WARNING"),
     Option("alert_v", float, 11.9, "resting 12 V below this for hold_s is an ALERT"),
     Option("hold_s", float, 240.0, "the engine off and the voltage low this long"),
     Option("min_valid_v", float, 6.0, "readings below this are an unplugged tracker, not the battery"),
     Option("soh_window_days", int, 30, "state of health loss is judged over this many days"),
     Option("soh_expected_pct_per_year", float, 2.5, "the least baseline fade rate (% per year)"),
     Option("soh_rate_factor", float, 3.0, "fading faster than this many times the baseline is a WARNING"),
     Option("soh_min_drop_pct", float, 1.0, "... once the loss within the window is at least this"),
     Option("soh_alert_drop_pct", float, 5.0, "a loss of this within the window is an ALERT"),
     Option("cell_window_s", float, 300.0, "cell voltages are averaged over this"),
     Option("cell_warning_v", float, 0.05, "cell max − min above this is a WARNING"),
     Option("cell_alert_v", float, 0.15, "cell max − min above this is an ALERT")),
    _build, policy=Policy(clear_s=300.0, cooldown_s=3600.0, max_events_per_hour=3), check=_check)
