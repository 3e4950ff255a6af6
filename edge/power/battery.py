"""Battery models: the vehicle's 12 V lead-acid battery and the tracker's backup Li-ion cell.

`LeadAcidBattery` is the physical battery (used by the bench as "the truth" and by the planner
as its assumption): capacity with temperature derating, self-discharge, and the state of charge
below which the engine may no longer crank. `SocEstimator` is what the agent knows: it counts
the charge the tracker spent (coulomb counting) and corrects itself from resting voltage, which
is how it learns that a battery is weaker than assumed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from lienwatch.errors import ConfigError

# Open-circuit (rested) voltage of a 12 V flooded lead-acid battery at 25 °C against state of
# charge: Battery University BU-903 "How to Measure State-of-charge" (12.70 V full, 12.20 V at
# half charge — the level AutoPi and others refuse to go below — 11.80 V empty).
LEAD_ACID_OCV: tuple[tuple[float, float], ...] = (
    (11.80, 0.0), (12.00, 25.0), (12.20, 50.0), (12.45, 75.0), (12.70, 100.0))
# Available capacity against temperature (fraction of the 25 °C rating): Battery University
# BU-502 "Discharging at High and Low Temperatures" — about 80 % at 0 °C, 60 % at −18 °C.
LEAD_ACID_TEMPERATURE: tuple[tuple[float, float], ...] = (
    (-30.0, 0.5), (-18.0, 0.6), (0.0, 0.8), (25.0, 1.0), (40.0, 1.0))
# Rested voltage of a Li-ion (NMC/LCO) cell against state of charge, Battery University BU-501a
# discharge curves (room temperature, C/5): 4.20 V full, 3.70 V about half, 3.30 V cut-off.
LI_ION_OCV: tuple[tuple[float, float], ...] = (
    (3.30, 0.0), (3.50, 10.0), (3.60, 20.0), (3.70, 45.0), (3.80, 60.0), (3.95, 80.0), (4.20, 100.0))


def interpolate(table: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear y(x) over an x-sorted table, clamped at both ends."""
    xs = [p[0] for p in table]
    if x <= xs[0]:
        return table[0][1]
    if x >= xs[-1]:
        return table[-1][1]
    i = bisect.bisect_right(xs, x)
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _inverse(table: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    return tuple((y, x) for x, y in table)


def soc_from_resting_voltage(volts: float) -> float:
    """State of charge (%) of a rested 12 V lead-acid battery from its open-circuit voltage."""
    if not math.isfinite(volts):
        raise ValueError(f"voltage must be finite, got {volts!r}")
    return interpolate(LEAD_ACID_OCV, volts)


def resting_voltage(soc_pct: float) -> float:
    return interpolate(_inverse(LEAD_ACID_OCV), soc_pct)


def _require(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"battery.{name} must be in {low:g}..{high:g}, got {value!r}")
    return float(value)


@dataclass
class LeadAcidBattery:
    """A 12 V lead-acid battery; `soc_pct` moves with `discharge` and `age`."""

    capacity_ah: float = 60.0
    soc_pct: float = 80.0
    crank_soc_pct: float = 50.0  # below ~12.2 V rested a cold engine may not start (BU-903)
    temperature_c: float = 25.0
    # Flooded lead-acid loses about 3–5 % a month at 25 °C, doubling every 10 °C (BU-802b).
    self_discharge_pct_month: float = 4.0

    def __post_init__(self) -> None:
        self.capacity_ah = _require("capacity_ah", self.capacity_ah, 1.0, 2000.0)
        self.soc_pct = _require("soc_pct", self.soc_pct, 0.0, 100.0)
        self.crank_soc_pct = _require("crank_soc_pct", self.crank_soc_pct, 0.0, 100.0)
        self.temperature_c = _require("temperature_c", self.temperature_c, -40.0, 60.0)
        self.self_discharge_pct_month = _require("self_discharge_pct_month",
                                                 self.self_discharge_pct_month, 0.0, 50.0)

    @property
    def available_ah(self) -> float:
        """Capacity at the battery's temperature."""
        return self.capacity_ah * interpolate(LEAD_ACID_TEMPERATURE, self.temperature_c)

    def self_discharge_pct_per_h(self) -> float:
        per_month = self.self_discharge_pct_month * 2 ** ((self.temperature_c - 25.0) / 10.0)
        return per_month / (30.0 * 24.0)

    def discharge(self, mah: float) -> None:
        """Take `mah` out (the tracker's and the car's draw)."""
        self.soc_pct = max(0.0, self.soc_pct - 100.0 * mah / (self.available_ah * 1000.0))

    def age(self, hours: float) -> None:
        """Self-discharge over `hours`."""
        self.soc_pct = max(0.0, self.soc_pct - self.self_discharge_pct_per_h() * hours)

    def resting_voltage(self) -> float:
        return resting_voltage(self.soc_pct)

    @property
    def cranks(self) -> bool:
        return self.soc_pct > self.crank_soc_pct

    def usable_mah(self, soc_pct: float | None = None, margin_pct: float = 0.0) -> float:
        """Charge between `soc_pct` (default: now) and the cranking limit plus a margin."""
        soc = self.soc_pct if soc_pct is None else soc_pct
        return max(0.0, soc - self.crank_soc_pct - margin_pct) / 100.0 * self.available_ah * 1000.0


@dataclass
class LiIonCell:
    """The tracker's backup cell; runs the tracker after an unplug until its cut-off."""

    capacity_mah: float
    soc_pct: float = 100.0

    def discharge(self, mah: float) -> None:
        self.soc_pct = max(0.0, self.soc_pct - 100.0 * mah / self.capacity_mah)

    def usable_mah(self) -> float:
        return self.soc_pct / 100.0 * self.capacity_mah

    @staticmethod
    def soc_from_voltage(volts: float) -> float:
        if not math.isfinite(volts):
            raise ValueError(f"voltage must be finite, got {volts!r}")
        return interpolate(LI_ION_OCV, volts)


class SocEstimator:
    """The agent's state-of-charge estimate: coulomb counting, corrected by resting voltage.

    `consume(mah)` counts what the tracker drew; `observe_rest(volts)` takes a rested open-circuit
    voltage (hours after the last charge or load step, so surface charge has gone). A rested
    reading more than `tolerance_pct` below the count means the battery is weaker than assumed
    (aged, cold, or the car itself draws): the estimate follows the voltage and `weaker` is set,
    which the planner reads as "re-plan". A reading above the count only ever raises it halfway
    (a charger may be connected; stay conservative).
    """

    def __init__(self, battery: LeadAcidBattery, tolerance_pct: float = 5.0) -> None:
        self.assumed = battery
        self.soc_pct = battery.soc_pct
        self.tolerance_pct = tolerance_pct
        self.weaker = False
        self.last_rest_v: float | None = None

    def consume(self, mah: float, hours: float = 0.0) -> None:
        self.soc_pct = max(0.0, self.soc_pct - 100.0 * mah / (self.assumed.available_ah * 1000.0)
                           - self.assumed.self_discharge_pct_per_h() * hours)

    def observe_rest(self, volts: float) -> bool:
        """Take a rested voltage; True if it shows the battery weaker than counted (re-plan)."""
        measured = soc_from_resting_voltage(volts)
        self.last_rest_v = volts
        if measured < self.soc_pct - self.tolerance_pct:
            self.soc_pct = measured
            self.weaker = True
            return True
        if measured > self.soc_pct:
            self.soc_pct += (measured - self.soc_pct) / 2.0
        return False
