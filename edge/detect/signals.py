"""What several detectors read: catalog paths, ignition, freshness of a signal, evidence rounding."""

from __future__ import annotations

import math
from collections.abc import Mapping

from edge.detect.base import Observation
from protocol.catalog import default_catalog

CAN_SPEED = "Vehicle.Speed"
RPM = "Vehicle.Powertrain.CombustionEngine.Speed"
IGNITION = "Vehicle.LowVoltageSystemState"  # 1 LOCK, 2 OFF, 3 ACC, 4 ON, 5 START
SUPPLY = "Vehicle.LowVoltageBattery.CurrentVoltage"
BACKUP = "Vehicle.Telematics.BackupBattery.CurrentVoltage"
EXTERNAL_POWER = "Vehicle.Telematics.IsExternalPowerConnected"
GNSS_SPEED = "Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround"
FIX_TYPE = "Vehicle.CurrentLocation.GNSSReceiver.FixType"
MEAN_CN0 = "Vehicle.CurrentLocation.GNSSReceiver.MeanCN0"
ACCEL = ("Vehicle.Acceleration.Longitudinal", "Vehicle.Acceleration.Lateral", "Vehicle.Acceleration.Vertical")
IGNITION_ACC = 3  # ACC and above: somebody turned the key
ENGINE_RUNNING_RPM = 300.0
NS = 1_000_000_000
#: a signal's latest value older than this is unknown: five periods of the 1 s engine speed,
#: vehicle speed and power polls (an ECU that falls silent must not stay "running" forever)
MAX_AGE_S = 5.0
IGNITION_MAX_AGE_S = 10.0  # the power source reports every second

_IDS = {path: default_catalog().id_of(path) for path in
        (CAN_SPEED, RPM, IGNITION, SUPPLY, BACKUP, EXTERNAL_POWER, GNSS_SPEED, FIX_TYPE, MEAN_CN0, *ACCEL)}


def signal_id(path: str) -> int:
    return _IDS[path] if path in _IDS else default_catalog().id_of(path)


def fresh_id(observation: Observation, signal: int, max_age_s: float | None = MAX_AGE_S) -> float | None:
    """The latest value of a signal (catalog id) if it is at most `max_age_s` old (None: any
    age), else None: unknown. Every detector reads another signal's latest value through this."""
    sample = observation.latest(signal)
    if sample is None or (max_age_s is not None and observation.mono_ns - sample.mono_ns > max_age_s * NS):
        return None
    return sample.value


def fresh(observation: Observation, path: str, max_age_s: float | None = MAX_AGE_S) -> float | None:
    """`fresh_id` by catalog path."""
    return fresh_id(observation, signal_id(path), max_age_s)


def ignition_on(observation: Observation, max_age_s: float | None = IGNITION_MAX_AGE_S) -> bool | None:
    """True if the key is at ACC or beyond (or, without that signal, the engine turns); None if
    neither signal is known (within `max_age_s`; None: the last value ever seen, as a parked
    car's bus falls asleep after saying OFF)."""
    state = fresh(observation, IGNITION, max_age_s)
    if state is not None:
        return state >= IGNITION_ACC
    rpm = fresh(observation, RPM, max_age_s)
    if rpm is not None:
        return rpm >= ENGINE_RUNNING_RPM
    return None


def evidence(values: Mapping[str, float | None]) -> dict[str, float]:
    """Evidence for a finding: finite values only, rounded to 4 decimals (the wire keeps ~1e-3)."""
    return {k: round(v, 4) for k, v in values.items() if v is not None and math.isfinite(v)}


class Holds:
    """How long each named condition has held without a break (timers, not statistics)."""

    def __init__(self) -> None:
        self._since: dict[str, int] = {}

    def update(self, key: str, holding: bool, now_ns: int) -> float:
        """Seconds `key` has held at `now_ns` (0.0 the tick it starts; -1.0 when it does not hold)."""
        if not holding:
            self._since.pop(key, None)
            return -1.0
        return (now_ns - self._since.setdefault(key, now_ns)) / NS

    def active(self) -> list[str]:
        return sorted(self._since)

    def clear(self) -> None:
        self._since.clear()
