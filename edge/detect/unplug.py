"""Power cut / tracker unplugged: the supply gone while the tracker runs on its backup → EMERGENCY.

The tracker's supply input below `threshold_v` (5.25 V: no 12 V system is that low while it is
connected) for `hold_s`; while the car moves (CAN speed ≥ `speed_guard_kmh` or the engine
turns) for `moving_hold_s` instead, so a brown-out of a smart alternator or a crank dip on a
weak battery (well under a second) never counts. Evidence: the highest supply reading over the
hold, the backup battery, the external-power flag, the CAN speed. The event clears `clear_s`
after the supply is back.
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
    BACKUP,
    CAN_SPEED,
    ENGINE_RUNNING_RPM,
    EXTERNAL_POWER,
    RPM,
    SUPPLY,
    Holds,
    evidence,
    fresh,
)
from edge.options import Option
from protocol.messages import Severity

_MAX_AGE_S = 5.0


class Unplug(Detector):
    kind = "unplug"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.o = dict(options)
        self.supply_max = FeatureRequest(SUPPLY, sp.Max(), window=256,
                                         window_s=options["moving_hold_s"] + 1.0)
        self.features = (self.supply_max,)
        self.holds = Holds()

    def observe(self, o: Observation) -> Sequence[Finding]:
        supply = fresh(o, SUPPLY, _MAX_AGE_S)
        external = fresh(o, EXTERNAL_POWER, _MAX_AGE_S)
        cut = (supply is not None and supply < self.o["threshold_v"]) or (supply is None and external == 0.0)
        low_s = self.holds.update("low", cut, o.mono_ns)
        speed = fresh(o, CAN_SPEED, _MAX_AGE_S)
        rpm = fresh(o, RPM, _MAX_AGE_S)
        moving = (speed is not None and speed >= self.o["speed_guard_kmh"]) or (
            rpm is not None and rpm >= ENGINE_RUNNING_RPM)
        hold_s = self.o["moving_hold_s"] if moving else self.o["hold_s"]
        if low_s < hold_s:
            return ()
        peak = o.feature(self.supply_max)
        facts = evidence({"supply_v": supply, "supply_max_v": peak if peak < self.o["threshold_v"] else None,
                          "low_s": low_s, "backup_v": fresh(o, BACKUP, _MAX_AGE_S),
                          "external_power": external, "can_speed_kmh": speed})
        reading = "no supply reading" if supply is None else f"{supply:.2f} V"
        return (Finding(self.name, Severity.EMERGENCY, o.wall_ns, facts,
                        f"supply cut, the tracker runs on its backup battery ({reading})", o.position,
                        "unplug"),)

    def state(self) -> Mapping[str, object]:
        return {"armed": True, "low": bool(self.holds.active())}


def _check(options: Mapping[str, Any]) -> None:
    check_range("unplug", options, "threshold_v", 0.5, 30.0)
    check_range("unplug", options, "hold_s", 0.1, 60.0)
    check_range("unplug", options, "moving_hold_s", 0.1, 60.0)
    check_range("unplug", options, "speed_guard_kmh", 0.0, 300.0)


def _factory(name: str, options: Mapping[str, Any], context: DetectorContext) -> Unplug:
    return Unplug(name, options)


SPEC = DetectorSpec(
    "unplug", "power cut / tracker unplugged: supply below a threshold on the backup battery → EMERGENCY",
    (
        Option("threshold_v", float, 5.25, "supply below this …"),
        Option("hold_s", float, 1.5, "… for this long (parked)"),
        Option("moving_hold_s", float, 3.0, "… or this long while the car moves (alternator dips)"),
        Option("speed_guard_kmh", float, 5.0, "CAN speed from which the car counts as moving"),
    ),
    _factory, Policy(clear_s=5.0, cooldown_s=60.0, max_events_per_hour=6), _check)
