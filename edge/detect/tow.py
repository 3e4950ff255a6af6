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

Armed survives a reboot: `saved_state` keeps the arming (wall time, device, VIN, the parking point
and the gravity reference), which the agent writes at the sleep moment. A tracker whose SoC boots
from off (the MCU woke it on motion) resumes armed at its first tick with the ignition off, so a
tow under way at boot confirms within its own holds and the owner's grace, not after
`arm_delay_s`. A saved arming older than `resume_max_age_s`, from the future, from another device
or VIN, or damaged is ignored with a warning, and the detector learns the parked state afresh.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

log = logging.getLogger("lienwatch.detect")

_ACCEL_MAX_AGE_S = 5.0
STATE_VERSION = 1
QUIET_RESET_S = 120.0  # no motion indicator this long: the next motion is a "first motion" again


class Tow(Detector):
    kind = "tow"

    def __init__(self, name: str, options: Mapping[str, Any], *, device_id: str = "", vin: str = "") -> None:
        super().__init__(name)
        self.o = dict(options)
        self.device_id, self.vin = device_id, vin
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
        self.parked_wall_ns: int | None = None
        self.last_wall_ns: int | None = None
        self.resumed = False  # armed from a saved arming (see `restore_state`)
        self._saved: _SavedArming | None = None  # restored, checked at the first tick

    def observe(self, o: Observation) -> Sequence[Finding]:
        self.last_wall_ns = o.wall_ns
        ignition = ignition_on(o, max_age_s=None)  # the bus sleeps after it said OFF
        if ignition is None:
            return self._still_towed()
        if ignition:
            self._saved = None  # the owner is back: what was saved no longer holds
            self._disarm()
            return ()
        now = o.mono_ns
        if self._saved is not None:
            self._resume(self._saved, o)
            self._saved = None
        if self.parked_since_ns is None:
            self.parked_since_ns = now
            self.parked_wall_ns = o.wall_ns
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
        self.parked_wall_ns = None
        self.armed = False
        self.resumed = False
        self.reference = None
        self.parking_point = None
        self.first_motion_ns = None
        self.body_motion_seen = False
        self.holds.clear()
        self.towed = None

    def state(self) -> Mapping[str, object]:
        return {"armed": self.armed, "towed": self.towed is not None, "resumed": self.resumed,
                "motion": self.holds.active(), "accelerometer": self.accel_seen}

    # -- the arming across a reboot --------------------------------------------------------------

    def saved_state(self) -> Mapping[str, Any]:
        """The arming, if armed (else {"armed": False}, so an old arming is not kept)."""
        if not self.armed or self.last_wall_ns is None:
            return {"v": STATE_VERSION, "armed": False}
        return {"v": STATE_VERSION, "armed": True, "saved_wall_ns": self.last_wall_ns,
                "parked_wall_ns": self.parked_wall_ns, "device_id": self.device_id, "vin": self.vin,
                "reference": None if self.reference is None else list(self.reference),
                "parking_point": None if self.parking_point is None else list(self.parking_point),
                "accelerometer": self.accel_seen}

    def restore_state(self, data: Mapping[str, Any]) -> None:
        """Keep a saved arming for the first tick (its age needs that tick's wall time); a damaged
        one or another device's or VIN's is dropped with a warning."""
        try:
            saved = _SavedArming.parse(data)
        except (TypeError, ValueError) as error:
            log.warning("tow: saved arming ignored (damaged)",
                        extra={"detector": self.name, "detail": str(error)})
            return
        if saved is None:
            return
        for what, mine, theirs in (("device", self.device_id, saved.device_id), ("VIN", self.vin, saved.vin)):
            if mine and theirs and mine != theirs:
                log.warning(f"tow: saved arming ignored (another {what})",
                            extra={"detector": self.name, "detail": f"{theirs!r}, this is {mine!r}"})
                return
        self._saved = saved

    def _resume(self, saved: _SavedArming, o: Observation) -> None:
        age_s = (o.wall_ns - saved.saved_wall_ns) / NS
        if not 0.0 <= age_s <= self.o["resume_max_age_s"]:
            bound = self.o["resume_max_age_s"]
            log.warning("tow: saved arming ignored (stale)",
                        extra={"detector": self.name, "detail": f"saved {age_s:.0f} s ago, bound {bound} s"})
            return
        if o.vin and saved.vin and o.vin != saved.vin:
            log.warning("tow: saved arming ignored (another VIN)",
                        extra={"detector": self.name, "detail": f"{saved.vin!r}, the car says {o.vin!r}"})
            return
        parked_wall = saved.parked_wall_ns if saved.parked_wall_ns is not None else saved.saved_wall_ns
        self.parked_since_ns = o.mono_ns - max(0, o.wall_ns - parked_wall)
        self.parked_wall_ns = parked_wall
        self.armed, self.resumed = True, True
        self.reference, self.parking_point = saved.reference, saved.parking_point
        self.accel_seen = self.accel_seen or saved.accelerometer


@dataclass(frozen=True, slots=True)
class _SavedArming:
    saved_wall_ns: int
    parked_wall_ns: int | None
    device_id: str
    vin: str
    reference: tuple[float, float, float] | None
    parking_point: tuple[float, float] | None
    accelerometer: bool

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> _SavedArming | None:
        """None when nothing was armed; ValueError/TypeError for anything that does not fit."""
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"version {data.get('v')!r}, expected {STATE_VERSION}")
        if data.get("armed") is False:
            return None
        if data.get("armed") is not True:
            raise ValueError(f"armed is {data.get('armed')!r}")
        saved, parked = data.get("saved_wall_ns"), data.get("parked_wall_ns")
        if not isinstance(saved, int) or not (parked is None or isinstance(parked, int)) \
                or isinstance(saved, bool) or isinstance(parked, bool):
            raise ValueError("saved_wall_ns/parked_wall_ns must be integers")
        device, vin, accel = data.get("device_id", ""), data.get("vin", ""), data.get("accelerometer")
        if not isinstance(device, str) or not isinstance(vin, str) or not isinstance(accel, bool):
            raise ValueError("device_id/vin must be text, accelerometer a boolean")
        reference = _floats(data.get("reference"), 3)
        point = _floats(data.get("parking_point"), 2)
        if reference is not None and not any(reference):
            raise ValueError("reference is a zero vector")
        if point is not None and not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180):
            raise ValueError(f"parking_point {point} is not a position")
        return cls(saved, parked, device, vin,
                   None if reference is None else (reference[0], reference[1], reference[2]),
                   None if point is None else (point[0], point[1]), accel)


def _floats(value: object, n: int) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"expected {n} finite numbers, got {value!r}")
    return [float(v) for v in value]


def _check(options: Mapping[str, Any]) -> None:
    for name, low, high in (("arm_delay_s", 0, 86400), ("displacement_m", 10, 100_000),
                            ("displacement_hold_s", 0, 600), ("speed_kmh", 1, 300), ("speed_hold_s", 1, 600),
                            ("tilt_deg", 0.5, 90), ("tilt_hold_s", 0.1, 600), ("vibration_ms2", 0.01, 100),
                            ("vibration_window_s", 1, 600), ("vibration_hold_s", 0, 600),
                            ("owner_grace_s", 0, 600), ("gnss_max_age_s", 0.5, 60),
                            ("resume_max_age_s", 0, 30 * 86400)):
        check_range("tow", options, name, low, high)


def _factory(name: str, options: Mapping[str, Any], context: DetectorContext) -> Tow:
    return Tow(name, options, device_id=context.device_id, vin=context.vehicle.vin)


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
        Option("resume_max_age_s", float, 8 * 86400.0,
               "an arming saved before a reboot is resumed if at most this old (CRITICAL wakes weekly)"),
    ),
    _factory, Policy(clear_s=60.0, cooldown_s=300.0, max_events_per_hour=4), _check)
