"""Helpers my usage-type detectors share: catalog ids, ignition, local days, JSON-safe numbers.

Daily aggregates (km per day, openings per night, SoH per day) are counters over calendar
periods in the vehicle's time zone, not rolling windows, so they are kept here as small dicts
persisted through `Detector.saved_state` (the `FeatureSet`s are not: they restart empty).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

from edge.detect.base import Finding, Observation
from edge.detect.signals import (
    CAN_SPEED,
    EXTERNAL_POWER,
    GNSS_SPEED,
    IGNITION,
    IGNITION_MAX_AGE_S,
    MAX_AGE_S,
    NS,
    RPM,
    SUPPLY,
    evidence,
    fresh_id,
)
from edge.detect.signals import signal_id as sid

__all__ = ["CAN_SPEED", "EXTERNAL_POWER", "GNSS_SPEED", "IGNITION", "MAX_AGE_S", "NS", "RPM", "SUPPLY", "sid"]

ODOMETER = "Vehicle.TraveledDistance"  # m
DTC_DISTANCE = "Vehicle.OBD.DistanceSinceDTCClear"  # km
IGNITION_ON = 4  # a trip: ON or START (signals.ignition_on counts ACC too)
DAY_NS = 86_400 * NS


def latest_value(o: Observation, signal_id: int, default: float = math.nan,
                 max_age_s: float | None = MAX_AGE_S) -> float:
    """The latest value of a signal, or `default` when it is unknown: never seen, or older than
    `max_age_s` (`signals.fresh_id`)."""
    value = fresh_id(o, signal_id, max_age_s)
    return default if value is None else value


def ignition_on(o: Observation) -> bool:
    """Ignition ON or START (a trip): the latest `Vehicle.LowVoltageSystemState` ≥ 4 (a value
    older than `IGNITION_MAX_AGE_S` is unknown: not on)."""
    return latest_value(o, _IGNITION, 0.0, IGNITION_MAX_AGE_S) >= IGNITION_ON


def speed_kmh(o: Observation) -> float:
    """Fresh CAN speed, else fresh GNSS speed over ground, else 0."""
    value = latest_value(o, _SPEED)
    if math.isnan(value):
        value = latest_value(o, _GNSS_SPEED, 0.0)
    return value


def local_day(o: Observation) -> str:
    """The vehicle's local date (ISO) of this tick."""
    return o.local_time.date().isoformat()


def days_between(first: str, second: str) -> int:
    return (dt.date.fromisoformat(second) - dt.date.fromisoformat(first)).days


def in_hours(local: dt.datetime, start: dt.time, end: dt.time) -> bool:
    """Whether a local time lies in [start, end), a range that may span midnight (22:00-06:00)."""
    now = local.timetz().replace(tzinfo=None)
    return start <= now < end if start < end else now >= start or now < end


def parse_hhmm(kind: str, key: str, text: object) -> dt.time:
    """"22:00" → time; ConfigError naming `detectors.<kind>.<key>` otherwise."""
    from lienwatch.errors import ConfigError

    try:
        if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
            raise ValueError
        return dt.time(int(text[:2]), int(text[3:]))
    except ValueError:
        raise ConfigError(f"detectors.{kind}.{key} must be a local time HH:MM, got {text!r}") from None


def finite(values: Mapping[str, float]) -> dict[str, float]:
    """Evidence: only the finite values, rounded for the wire (`signals.evidence`)."""
    return evidence(values)


_IGNITION = sid(IGNITION)
_SPEED = sid(CAN_SPEED)
_GNSS_SPEED = sid(GNSS_SPEED)


class Facts:
    """Conditions that are facts found at one instant (an odometer that went back, a count
    reached): each is reported for `hold_s` after it was noted, so the tracker raises it once
    and clears it after the detector's `clear_s`."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Finding, int]] = {}

    def note(self, finding: Finding, mono_ns: int, hold_s: float) -> None:
        self._held[finding.condition] = (finding, mono_ns + int(hold_s * NS))

    def active(self, mono_ns: int) -> list[Finding]:
        for key in [k for k, (_, until) in self._held.items() if mono_ns >= until]:
            del self._held[key]
        return [finding for finding, _ in self._held.values()]
