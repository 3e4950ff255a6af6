"""Tampering / tracker removed → EMERGENCY, one condition each:

- `can_silent`: the CAN signals (`can_signals`) stopped while the car was running (last speed
  ≥ 5 km/h or the engine turning) and the supply still says the alternator charges (≥
  `charging_v` for `silent_s`): the tracker's bus wires were cut or pulled. A car switched off
  goes quiet at rest with the supply falling: no event.
- `vin_mismatch`: the VIN the vehicle reports differs from the provisioned `[vehicle] vin` (the
  tracker was moved to another car).
- `no_can_motion`: GNSS says the tracker drives (speed ≥ `move_kmh` for `move_window_s`) on a
  charging supply but no CAN talks at all (with `expect_can`): it rides in a car it is not wired
  to. A towed or shipped car is not charging.
- `bike_profile`: GNSS motion with no CAN and no external power, at a speed no car keeps for
  `profile_window_s` (highest ≤ `bike_max_kmh`, average ≥ `move_kmh` / 2): tied to a bike or
  carried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext import spec as sp
from edge.detect.base import Detector, Finding, Observation
from edge.detect.features import FeatureRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.detect.signals import (
    CAN_SPEED,
    ENGINE_RUNNING_RPM,
    EXTERNAL_POWER,
    GNSS_SPEED,
    NS,
    RPM,
    SUPPLY,
    evidence,
    fresh,
    signal_id,
)
from edge.detect.vehicle import VehicleProfile
from edge.options import Option
from lienwatch.errors import ConfigError
from protocol.catalog import default_catalog
from protocol.messages import Severity

_MAX_AGE_S = 5.0


class Tamper(Detector):
    kind = "tamper"

    def __init__(self, name: str, options: Mapping[str, Any], vehicle: VehicleProfile) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.vehicle = vehicle
        self.can_ids = frozenset(signal_id(p) for p in options["can_signals"])
        self.supply_min = FeatureRequest(SUPPLY, sp.Min(), window=1024, window_s=options["silent_s"])
        move_s = options["move_window_s"]
        self.move_min = FeatureRequest(GNSS_SPEED, sp.Min(), window=1024, window_s=move_s)
        self.move_count = FeatureRequest(GNSS_SPEED, sp.Count(), window=1024, window_s=move_s)
        window = options["profile_window_s"]
        self.profile_max = FeatureRequest(GNSS_SPEED, sp.Max(), window=4096, window_s=window)
        self.profile_mean = FeatureRequest(GNSS_SPEED, sp.Mean(), window=4096, window_s=window)
        self.profile_count = FeatureRequest(GNSS_SPEED, sp.Count(), window=4096, window_s=window)
        self.features = (self.supply_min, self.move_min, self.move_count, self.profile_max,
                         self.profile_mean, self.profile_count)
        self.last_can_ns: int | None = None
        self.running_when_last_heard = False
        self.started_ns: int | None = None

    def observe(self, o: Observation) -> Sequence[Finding]:
        now = o.mono_ns
        if self.started_ns is None:
            self.started_ns = now
        heard = [s.mono_ns for s in o.samples if s.signal_id in self.can_ids]
        if heard:
            self.last_can_ns = max(heard)
            speed, rpm = fresh(o, CAN_SPEED, _MAX_AGE_S), fresh(o, RPM, _MAX_AGE_S)
            self.running_when_last_heard = (speed or 0.0) >= 5.0 or (rpm or 0.0) >= ENGINE_RUNNING_RPM
        silent_s = (now - (self.last_can_ns if self.last_can_ns is not None else self.started_ns)) / NS
        can_silent = silent_s >= self.o["silent_s"]
        supply = fresh(o, SUPPLY, _MAX_AGE_S)
        supply_min = o.feature(self.supply_min)
        charging = supply is not None and supply_min >= self.o["charging_v"]
        external = fresh(o, EXTERNAL_POWER, _MAX_AGE_S)
        unpowered = (supply is not None and supply < 5.25) or external == 0.0
        gnss_speed = fresh(o, GNSS_SPEED, 3.0)
        facts = evidence({"can_silent_s": silent_s, "supply_min_v": supply_min, "supply_v": supply,
                          "gnss_speed_kmh": gnss_speed, "external_power": external})
        findings: list[Finding] = []
        cut = can_silent and charging and self.last_can_ns is not None and self.running_when_last_heard
        if cut:
            findings.append(self._finding(o, facts, "CAN silent while the supply says the engine runs",
                                          "can_silent"))
        reported, provisioned = o.vin, self.vehicle.vin
        if reported and provisioned and reported.upper() != provisioned:
            findings.append(self._finding(
                o, facts, f"VIN {reported.upper()} is not the provisioned {provisioned}", "vin_mismatch"))
        moving = gnss_speed is not None and o.feature(self.move_min) >= self.o["move_kmh"] and \
            o.feature(self.move_count) >= 0.7 * self.o["move_window_s"]
        no_can = can_silent and (self.last_can_ns is not None or self.o["expect_can"])
        if moving and no_can and charging and not cut:  # not the same incident twice
            findings.append(self._finding(o, facts, "GNSS motion on a charging supply with no CAN at all",
                                          "no_can_motion"))
        window = self.o["profile_window_s"]
        profile = gnss_speed is not None and o.feature(self.profile_count) >= 0.7 * window and \
            o.feature(self.profile_max) <= self.o["bike_max_kmh"] and \
            o.feature(self.profile_mean) >= self.o["move_kmh"] / 2
        if profile and no_can and unpowered:
            facts = {**facts, **evidence({"speed_max_kmh": o.feature(self.profile_max),
                                          "speed_mean_kmh": o.feature(self.profile_mean)})}
            findings.append(self._finding(o, facts, "moving like a bike, with no CAN and no power",
                                          "bike_profile"))
        return findings

    def _finding(self, o: Observation, facts: dict[str, float], detail: str, condition: str) -> Finding:
        return Finding(self.name, Severity.EMERGENCY, o.wall_ns, facts, detail, o.position, condition)

    def state(self) -> Mapping[str, object]:
        return {"armed": self.last_can_ns is not None or bool(self.o["expect_can"]),
                "can_heard": self.last_can_ns is not None, "provisioned_vin": self.vehicle.vin or None}


def _check(options: Mapping[str, Any]) -> None:
    for name, low, high in (("silent_s", 5, 3600), ("charging_v", 10, 40), ("move_kmh", 1, 100),
                            ("move_window_s", 5, 3600), ("profile_window_s", 30, 7200),
                            ("bike_max_kmh", 5, 120)):
        check_range("tamper", options, name, low, high)
    catalog = default_catalog()
    signals = options["can_signals"]
    if not signals or not all(isinstance(p, str) and p in catalog for p in signals):
        raise ConfigError(f"detectors.tamper.can_signals must name catalog signals, got {signals!r}")


def _factory(name: str, options: Mapping[str, Any], context: DetectorContext) -> Tamper:
    return Tamper(name, options, context.vehicle)


SPEC = DetectorSpec(
    "tamper", "tampering / tracker removed: CAN cut, another VIN, motion without the car → EMERGENCY",
    (
        Option("can_signals", list, [CAN_SPEED, RPM], "signals that come from the vehicle's bus"),
        Option("silent_s", float, 30.0, "CAN silent this long counts as silent"),
        Option("charging_v", float, 13.4, "supply at least this (for silent_s): the alternator charges"),
        Option("expect_can", bool, True, "the tracker has a CAN/OBD source (never hearing it is suspect)"),
        Option("move_kmh", float, 15.0, "GNSS speed at least this …"),
        Option("move_window_s", float, 60.0, "… for this long counts as driving"),
        Option("profile_window_s", float, 300.0, "window of the speed profile"),
        Option("bike_max_kmh", float, 40.0, "a profile whose top speed stays below this is no car's"),
    ),
    _factory, Policy(clear_s=60.0, cooldown_s=600.0, max_events_per_hour=4), _check)
