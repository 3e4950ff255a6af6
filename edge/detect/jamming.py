"""GNSS jamming and spoofing, graded like the best trackers (Teltonika: none / warning / critical).

Condition `jamming`:
- WARNING while a fix is held but C/N0 collapses across constellations: the receiver's mean
  C/N0 at least `drop_db` below this car's own baseline (the median of the last 10 minutes of
  healthy sky, `cython_ext` Median) and every constellation in view below that too, for
  `collapse_hold_s`;
- escalated to EMERGENCY when the fix is then lost while the CAN speed shows motion
  (≥ `moving_kmh`) for `lost_hold_s`, within `precursor_s` of a collapse;
- ALERT when the fix stays lost in motion for `long_loss_s` with no collapse first (longer than
  any tunnel; a jammer switched on at once gives no warning).
A parked car losing its fix in a garage is none of these (no motion, no collapse while fixed).

Condition `spoofing` (ALERT): a position jump that no speed explains — farther than `jump_m`
and than the CAN/GNSS speed allows between two fixes at most `max_gap_s` apart — that persists
for `persist_s` (the receiver carries on from the new place; a multipath outlier comes back), or
GNSS speed ≥ `mismatch_kmh` for `mismatch_hold_s` while the CAN speed says the car stands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cython_ext import spec as sp
from cython_ext.geo import distance_m
from edge.detect.base import Detector, Finding, Observation
from edge.detect.features import FeatureRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorContext, DetectorSpec, check_range
from edge.detect.signals import (
    CAN_SPEED,
    FIX_TYPE,
    GNSS_SPEED,
    MEAN_CN0,
    NS,
    Holds,
    evidence,
    fresh,
    ignition_on,
)
from edge.options import Option
from protocol.messages import Severity

_GNSS_MAX_AGE_S = 3.0
_CAN_MAX_AGE_S = 3.0


class Jamming(Detector):
    kind = "gnss_jamming"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.cn0_median = FeatureRequest(MEAN_CN0, sp.Median(), window=600, window_s=600.0)
        self.cn0_count = FeatureRequest(MEAN_CN0, sp.Count(), window=600, window_s=600.0)
        self.cn0_recent = FeatureRequest(MEAN_CN0, sp.Max(), window=64, window_s=options["collapse_hold_s"])
        self.features = (self.cn0_median, self.cn0_count, self.cn0_recent)
        self.baseline_dbhz: float | None = None
        self.constellation_cn0: dict[str, float] = {}
        self.holds = Holds()
        self.last_collapse_ns: int | None = None
        self.lost_since_ns: int | None = None
        self.lost_after_collapse = False
        self._track: tuple[int, float, float, float] | None = None  # mono ns, lat, lon, speed km/h
        self._jump: tuple[int, float, float, float] | None = None  # since, lat, lon, metres
        self._spoof_until_ns = 0
        self._spoof_evidence: dict[str, float] = {}

    def observe(self, o: Observation) -> Sequence[Finding]:
        for epoch in o.gnss_epochs:
            means = {name: c.cn0_mean for name, c in epoch.constellations.items() if c.in_view}
            if means:
                self.constellation_cn0 = {k: v if v is not None else 0.0 for k, v in means.items()}
        fix_type = fresh(o, FIX_TYPE, _GNSS_MAX_AGE_S)  # the receiver reports it every epoch
        can_speed = fresh(o, CAN_SPEED, _CAN_MAX_AGE_S)
        moving = can_speed is not None and can_speed >= self.o["moving_kmh"]
        jamming = self._jamming(o, fix_type, moving, can_speed)
        spoofing = self._spoofing(o, can_speed)
        return [f for f in (jamming, spoofing) if f is not None]

    # -- jamming -------------------------------------------------------------------------------

    def _jamming(self, o: Observation, fix_type: float | None, moving: bool,
                 can_speed: float | None) -> Finding | None:
        now = o.mono_ns
        fixed = fix_type is not None and fix_type >= 1
        lost = fix_type is not None and fix_type == 0
        recent = o.feature(self.cn0_recent)
        baseline = self.baseline_dbhz
        floor = None if baseline is None else baseline - self.o["drop_db"]
        collapsed = fixed and floor is not None and recent <= floor and bool(self.constellation_cn0) \
            and all(v <= floor for v in self.constellation_cn0.values())
        warn = collapsed and moving  # driving into a garage is slower than moving_kmh
        if fixed and not collapsed and o.feature(self.cn0_count) >= 60:
            self.baseline_dbhz = o.feature(self.cn0_median)  # healthy sky: follow it
        collapse_s = self.holds.update("collapse", warn, now)
        if collapse_s >= 0:
            self.last_collapse_ns = now
        lost_moving_s = self.holds.update("lost_moving", lost and moving, now)
        if lost and moving and self.lost_since_ns is None:
            self.lost_since_ns = now
            self.lost_after_collapse = self.last_collapse_ns is not None and \
                now - self.last_collapse_ns <= self.o["precursor_s"] * NS
        if not (lost and moving):
            self.lost_since_ns = None
        facts = evidence({"cn0_mean_dbhz": recent, "cn0_baseline_dbhz": baseline,
                          "cn0_drop_dbhz": None if baseline is None else baseline - recent,
                          "can_speed_kmh": can_speed, "fix_lost_s": max(lost_moving_s, 0.0) or None,
                          **{f"cn0_{k}_dbhz": v for k, v in self.constellation_cn0.items()}})
        if lost_moving_s >= self.o["lost_hold_s"] and self.lost_after_collapse:
            return Finding(self.name, Severity.EMERGENCY, o.wall_ns, facts,
                           "GNSS jammed: fix lost while CAN speed shows motion, after a C/N0 collapse",
                           o.position, "jamming")
        if lost_moving_s >= self.o["long_loss_s"]:
            return Finding(self.name, Severity.ALERT, o.wall_ns, facts,
                           "GNSS fix lost for long while CAN speed shows motion", o.position, "jamming")
        if collapse_s >= self.o["collapse_hold_s"]:
            return Finding(self.name, Severity.WARNING, o.wall_ns, facts,
                           "C/N0 collapsed across constellations while the fix is held", o.position,
                           "jamming")
        return None

    # -- spoofing ------------------------------------------------------------------------------

    def _spoofing(self, o: Observation, can_speed: float | None) -> Finding | None:
        now = o.mono_ns
        for epoch in o.gnss_epochs:
            if epoch.lat is None or epoch.lon is None or not epoch.fix.has_position:
                continue
            self._check_jump(epoch.mono_ns, epoch.lat, epoch.lon, epoch.speed_kmh or 0.0, can_speed)
        gnss_speed = fresh(o, GNSS_SPEED, _GNSS_MAX_AGE_S)
        mismatch = gnss_speed is not None and can_speed is not None and can_speed < 3.0 \
            and gnss_speed >= self.o["mismatch_kmh"] and ignition_on(o) is True  # awake and standing
        if self.holds.update("speed_mismatch", mismatch, now) >= self.o["mismatch_hold_s"]:
            self._spoof_until_ns = now + int(self.o["spoof_hold_s"] * NS)
            self._spoof_evidence = evidence({"gnss_speed_kmh": gnss_speed, "can_speed_kmh": can_speed})
        if now >= self._spoof_until_ns:
            return None
        return Finding(self.name, Severity.ALERT, o.wall_ns, self._spoof_evidence,
                       "GNSS position or speed inconsistent with the vehicle's own speed", o.position,
                       "spoofing")

    def _check_jump(self, t_ns: int, lat: float, lon: float, speed_kmh: float,
                    can_speed: float | None) -> None:
        track = self._track
        self._track = (t_ns, lat, lon, speed_kmh)
        if track is None or t_ns - track[0] > self.o["max_gap_s"] * NS:
            self._jump = None  # after a gap (garage, tunnel) anything is plausible
            return
        dt_s = max((t_ns - track[0]) / NS, 1e-3)
        fastest_kmh = max(speed_kmh, track[3], can_speed or 0.0)
        allowed_m = max(self.o["jump_m"], 2.0 * fastest_kmh / 3.6 * dt_s + 50.0)
        step_m = distance_m(track[1], track[2], lat, lon)
        if self._jump is None:
            if step_m > allowed_m:
                self._jump = (t_ns, track[1], track[2], step_m)  # remember where we jumped from
            return
        since, from_lat, from_lon, jumped_m = self._jump
        if distance_m(from_lat, from_lon, lat, lon) < self.o["jump_m"] / 2:
            self._jump = None  # back on the old track: a multipath outlier
            return
        if t_ns - since >= self.o["persist_s"] * NS:
            self._spoof_until_ns = t_ns + int(self.o["spoof_hold_s"] * NS)
            self._spoof_evidence = evidence({"jump_m": jumped_m, "speed_kmh": fastest_kmh,
                                             "from_lat_deg": from_lat, "from_lon_deg": from_lon})
            self._jump = None

    def state(self) -> Mapping[str, object]:
        return {"armed": self.baseline_dbhz is not None, "cn0_baseline_dbhz": self.baseline_dbhz,
                "holding": self.holds.active()}


def _check(options: Mapping[str, Any]) -> None:
    for name, low, high in (("drop_db", 1, 60), ("collapse_hold_s", 1, 600), ("moving_kmh", 1, 300),
                            ("lost_hold_s", 1, 3600), ("precursor_s", 0, 3600),
                            ("long_loss_s", 10, 86400), ("jump_m", 50, 1_000_000), ("max_gap_s", 1, 600),
                            ("persist_s", 1, 600), ("mismatch_kmh", 5, 500), ("mismatch_hold_s", 1, 3600),
                            ("spoof_hold_s", 1, 86400)):
        check_range("gnss_jamming", options, name, low, high)


def _factory(name: str, options: Mapping[str, Any], context: DetectorContext) -> Jamming:
    return Jamming(name, options)


SPEC = DetectorSpec(
    "gnss_jamming", "GNSS jamming (WARNING → EMERGENCY) and spoofing (ALERT)",
    (
        Option("drop_db", float, 12.0, "C/N0 this far below the car's baseline on every constellation …"),
        Option("collapse_hold_s", float, 5.0, "… with the fix held, for this long → WARNING"),
        Option("moving_kmh", float, 10.0, "CAN speed from which the car counts as moving"),
        Option("lost_hold_s", float, 20.0, "fix lost in motion this long after a collapse → EMERGENCY"),
        Option("precursor_s", float, 120.0, "a collapse at most this long before the loss counts"),
        Option("long_loss_s", float, 900.0, "fix lost in motion this long, no collapse → ALERT"),
        Option("jump_m", float, 1000.0, "a position jump farther than this (and than speed allows) …"),
        Option("max_gap_s", float, 10.0, "… between fixes at most this far apart …"),
        Option("persist_s", float, 10.0, "… that persists this long → spoofing"),
        Option("mismatch_kmh", float, 30.0, "GNSS speed at least this while CAN says standing …"),
        Option("mismatch_hold_s", float, 30.0, "… for this long → spoofing"),
        Option("spoof_hold_s", float, 120.0, "the spoofing condition holds this long after its last sign"),
    ),
    _factory, Policy(clear_s=60.0, cooldown_s=300.0, max_events_per_hour=6), _check)
