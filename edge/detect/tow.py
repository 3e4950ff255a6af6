"""Tow / moved while parked: the car moves while its ignition stays off → EMERGENCY.

Armed `arm_delay_s` after the ignition goes off (Teltonika's default: 5 min), with the parking
point (last known position) and the gravity vector of that moment as references. While armed,
motion is any of: the accelerometer's gravity vector tilted by `tilt_deg` for `tilt_hold_s`
(a hook lift, a flatbed ramp); vibration (RMS of the three axes' standard deviations) above
`vibration_ms2` for `vibration_hold_s`; GNSS speed ≥ `speed_kmh` for `speed_hold_s`; GNSS
position beyond `displacement_m` from the parking point for `displacement_hold_s`. The owner
turning the key within `owner_grace_s` of the first motion cancels (they got in and drove off).

A car on a ferry moves by GNSS while it stays level and quiet: where the tracker has an
accelerometer, GNSS movement without any tilt or vibration is the condition `moved_level`, a
WARNING, not an EMERGENCY. Without an accelerometer, GNSS movement alone is a tow. The event
stays open while the car is away and clears `clear_s` after the ignition comes on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext import spec as sp
from cython_ext.geo import distance_m
from edge.detect.base import Detector, Finding, Observation
from edge.detect.features import FeatureRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.detect.signals import ACCEL, GNSS_SPEED, NS, Holds, evidence, fresh, ignition_on
from edge.options import Option
from protocol.messages import Severity

_ACCEL_MAX_AGE_S = 5.0
QUIET_RESET_S = 120.0  # no motion indicator this long: the next motion is a "first motion" again


class Tow(Detector):
    kind = "tow"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        tilt_w, vib_w = options["tilt_hold_s"], options["vibration_window_s"]
        speed_w = options["speed_hold_s"]
        self.accel_mean = tuple(FeatureRequest(p, sp.Mean(), window=256, window_s=tilt_w) for p in ACCEL)
        self.accel_std = tuple(FeatureRequest(p, sp.Std(), window=512, window_s=vib_w) for p in ACCEL)
        self.speed_min = FeatureRequest(GNSS_SPEED, sp.Min(), window=128, window_s=speed_w)
        self.speed_count = FeatureRequest(GNSS_SPEED, sp.Count(), window=128, window_s=speed_w)
        self.features = (*self.accel_mean, *self.accel_std, self.speed_min, self.speed_count)
        self.parked_since_ns: int | None = None
        self.armed = False
        self.reference: tuple[float, float, float] | None = None  # gravity vector when armed
        self.parking_point: tuple[float, float] | None = None
        self.first_motion_ns: int | None = None
        self.last_motion_ns = 0
        self.body_motion_seen = False  # tilt or vibration held since parked (a flatbed's ramp)
        self.accel_seen = False
        self.holds = Holds()  # how long each motion indicator has been beyond its threshold
        self.towed: Finding | None = None

    def observe(self, o: Observation) -> Sequence[Finding]:
        ignition = ignition_on(o, max_age_s=None)  # the bus sleeps after it said OFF
        if ignition is None:
            return self._still_towed()
        if ignition:
            self._disarm()
            return ()
        now = o.mono_ns
        if self.parked_since_ns is None:
            self.parked_since_ns = now
            self.parking_point = None if o.position is None else (o.position.lat_deg, o.position.lon_deg)
        gravity = self._gravity(o)
        if gravity is not None:
            self.accel_seen = True
        if not self.armed:
            if now - self.parked_since_ns < self.o["arm_delay_s"] * NS:
                return ()
            self.armed = True
            self.reference = gravity
            if self.parking_point is None and o.position is not None:
                self.parking_point = (o.position.lat_deg, o.position.lon_deg)
        if self.reference is None and gravity is not None:
            self.reference = gravity  # the accelerometer started after arming
        if self.towed is not None:
            return [self._refresh(o)]
        values = self._indicators(o, gravity)
        held = {k: self.holds.update(k, beyond, now) >= hold_s for k, (beyond, hold_s) in values.items()}
        if any(v[0] for v in values.values()):
            self.last_motion_ns = now
            if self.first_motion_ns is None:
                self.first_motion_ns = now
        elif self.first_motion_ns is not None and now - self.last_motion_ns > QUIET_RESET_S * NS:
            self.first_motion_ns = None  # a bump long ago: the owner's grace starts afresh
        body_motion = held["tilt"] or held["vibration"]
        self.body_motion_seen = self.body_motion_seen or body_motion
        if self.first_motion_ns is None or now - self.first_motion_ns < self.o["owner_grace_s"] * NS:
            return ()
        gnss_motion = held["speed"] or held["displacement"]
        facts = self._evidence(o, gravity)
        if body_motion or (gnss_motion and (self.body_motion_seen or not self.accel_seen)):
            what = ", ".join(k for k, v in held.items() if v)
            self.towed = Finding(self.name, Severity.EMERGENCY, o.wall_ns, facts,
                                 f"moved with the ignition off ({what})", o.position, "tow")
            return [self.towed]
        if gnss_motion:
            return [Finding(self.name, Severity.WARNING, o.wall_ns, facts,
                            "moved by GNSS with the ignition off, no tilt or vibration (a ferry?)",
                            o.position, "moved_level")]
        return ()

    # -- indicators ----------------------------------------------------------------------------

    def _gravity(self, o: Observation) -> tuple[float, float, float] | None:
        if any(fresh(o, p, _ACCEL_MAX_AGE_S) is None for p in ACCEL):
            return None
        x, y, z = (o.feature(r) for r in self.accel_mean)
        return (x, y, z) if all(math.isfinite(v) for v in (x, y, z)) else None

    def _tilt_deg(self, gravity: tuple[float, float, float] | None) -> float:
        ref = self.reference
        if gravity is None or ref is None:
            return math.nan
        dot = sum(a * b for a, b in zip(gravity, ref, strict=True))
        norm = math.sqrt(sum(a * a for a in gravity) * sum(b * b for b in ref))
        return math.degrees(math.acos(max(-1.0, min(1.0, dot / norm)))) if norm > 0 else math.nan

    def _vibration(self, o: Observation) -> float:
        if any(fresh(o, p, _ACCEL_MAX_AGE_S) is None for p in ACCEL):
            return math.nan
        return math.sqrt(sum(o.feature(r) ** 2 for r in self.accel_std))

    def _displacement_m(self, o: Observation) -> float:
        here, there = o.position, self.parking_point
        if here is None or there is None or fresh(o, GNSS_SPEED, self.o["gnss_max_age_s"]) is None:
            return math.nan
        return distance_m(there[0], there[1], here.lat_deg, here.lon_deg)

    def _indicators(self, o: Observation, gravity: tuple[float, float, float] | None
                    ) -> dict[str, tuple[bool, float]]:
        """indicator -> (beyond its threshold now, how long it must hold)."""
        speed_ok = fresh(o, GNSS_SPEED, self.o["gnss_max_age_s"]) is not None and \
            o.feature(self.speed_count) >= 0.7 * self.o["speed_hold_s"]
        return {
            "tilt": (self._tilt_deg(gravity) >= self.o["tilt_deg"], self.o["tilt_hold_s"]),
            "vibration": (self._vibration(o) >= self.o["vibration_ms2"], self.o["vibration_hold_s"]),
            "speed": (speed_ok and o.feature(self.speed_min) >= self.o["speed_kmh"], 0.0),
            "displacement": (self._displacement_m(o) >= self.o["displacement_m"],
                             self.o["displacement_hold_s"]),
        }

    def _evidence(self, o: Observation, gravity: tuple[float, float, float] | None) -> dict[str, float]:
        return evidence({
            "tilt_deg": self._tilt_deg(gravity), "vibration_ms2": self._vibration(o),
            "gnss_speed_min_kmh": o.feature(self.speed_min), "displacement_m": self._displacement_m(o),
            "parked_s": (o.mono_ns - (self.parked_since_ns or o.mono_ns)) / NS, "ignition_on": 0.0,
        })

    def _refresh(self, o: Observation) -> Finding:
        """While towed the condition holds; the evidence keeps the largest displacement seen."""
        assert self.towed is not None
        facts = dict(self.towed.features)
        displacement = self._displacement_m(o)
        if math.isfinite(displacement) and displacement > facts.get("displacement_m", 0.0):
            facts["displacement_m"] = round(displacement, 4)
        self.towed = Finding(self.name, Severity.EMERGENCY, o.wall_ns, facts, self.towed.detail,
                             o.position or self.towed.position, "tow")
        return self.towed

    def _still_towed(self) -> Sequence[Finding]:
        return [] if self.towed is None else [self.towed]

    def _disarm(self) -> None:
        self.parked_since_ns = None
        self.armed = False
        self.reference = None
        self.parking_point = None
        self.first_motion_ns = None
        self.body_motion_seen = False
        self.holds.clear()
        self.towed = None

    def state(self) -> Mapping[str, object]:
        return {"armed": self.armed, "towed": self.towed is not None,
                "motion": self.holds.active(), "accelerometer": self.accel_seen}


def _check(options: Mapping[str, Any]) -> None:
    for name, low, high in (("arm_delay_s", 0, 86400), ("displacement_m", 10, 100_000),
                            ("displacement_hold_s", 0, 600), ("speed_kmh", 1, 300), ("speed_hold_s", 1, 600),
                            ("tilt_deg", 0.5, 90), ("tilt_hold_s", 0.1, 600), ("vibration_ms2", 0.01, 100),
                            ("vibration_window_s", 1, 600), ("vibration_hold_s", 0, 600),
                            ("owner_grace_s", 0, 600), ("gnss_max_age_s", 0.5, 60)):
        check_range("tow", options, name, low, high)


def _factory(name: str, options: Mapping[str, Any], context: DetectorContext) -> Tow:
    return Tow(name, options)


SPEC = DetectorSpec(
    "tow", "tow / moved while parked: motion with the ignition off → EMERGENCY",
    (
        Option("arm_delay_s", float, 300.0, "armed this long after the ignition goes off"),
        Option("displacement_m", float, 500.0, "GNSS position this far from the parking point …"),
        Option("displacement_hold_s", float, 10.0, "… for this long"),
        Option("speed_kmh", float, 10.0, "GNSS speed at least this …"),
        Option("speed_hold_s", float, 10.0, "… for this long"),
        Option("tilt_deg", float, 6.0, "accelerometer tilted this far from the parked attitude …"),
        Option("tilt_hold_s", float, 5.0, "… for this long (also the averaging window)"),
        Option("vibration_ms2", float, 0.8, "RMS of the axes' standard deviations at least this …"),
        Option("vibration_window_s", float, 10.0, "… over this window …"),
        Option("vibration_hold_s", float, 20.0, "… held this long"),
        Option("owner_grace_s", float, 30.0, "the ignition on within this long of the first motion cancels"),
        Option("gnss_max_age_s", float, 3.0, "GNSS older than this is not used"),
    ),
    _factory, Policy(clear_s=60.0, cooldown_s=300.0, max_events_per_hour=4), _check)
