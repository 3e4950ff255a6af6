"""The emulated car's physics on the simulation clock: one `tick(dt)` turns the driver's intent into
what the car's buses and sensors say.

`VehicleModel` holds the truth (speed, engine speed, odometer, fuel, ignition, 12 V battery, the
tracker's backup cell, doors, accelerometer) and advances it by `dt` seconds: speed follows the
target at bounded acceleration (a route leg toward `to`, or a fixed course, with optional
stop-and-go), RPM comes from a five-speed gearbox, fuel and odometer integrate speed, the 12 V
supply dips while cranking, charges while running and decays while parked, the backup cell drains
while unplugged. Everything is plain data (`to_dict`/`from_dict`), so a killed agent's bench can
carry the car on where it stopped.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

# Ignition (Vehicle.LowVoltageSystemState): 1 LOCK, 2 OFF, 3 ACC, 4 ON, 5 START.
LOCK, OFF, ACC, ON, START = 1, 2, 3, 4, 5
G = 9.81
M_PER_DEG = 111_320.0
_GEARS = ((0.0, 18.0, 3.6), (18.0, 35.0, 2.1), (35.0, 55.0, 1.4), (55.0, 80.0, 1.0), (80.0, 999.0, 0.8))
_RPM_PER_KMH = 37.0  # at ratio 1.0
IDLE_RPM = 800.0
ACCEL_MS2, BRAKE_MS2 = 2.0, 3.0
FUEL_L_PER_100KM, TANK_L = 6.5, 50.0
CRANK_S = 0.6


@dataclass
class VehicleModel:
    """The car's truth; `tick(dt, rng)` advances it. Units in the names."""

    lat: float = 47.3769
    lon: float = 8.5417
    course_deg: float = 90.0
    speed_kmh: float = 0.0
    target_kmh: float = 0.0
    to: tuple[float, float] | None = None  # heading for this point (a route leg), else course_deg
    stop_and_go: bool = False
    engine_on: bool = False
    ignition: int = OFF
    crank_left_s: float = 0.0
    rpm: float = 0.0
    odometer_m: float = 42_000_000.0
    fuel_pct: float = 62.0
    battery_rest_v: float = 12.72  # open-circuit voltage of the 12 V battery when rested
    battery_decay_v_per_day: float = 0.004
    surface_charge_v: float = 0.0  # decays in the first hour after driving
    plugged: bool = True
    backup_v: float = 4.10
    doors_open: bool = False
    accel: tuple[float, float, float] = (0.0, 0.0, G)
    vibration_ms2: float = 0.02
    towed: bool = False
    tow_kmh: float = 0.0
    tilt_deg: float = 0.0
    parked_s: float = 0.0
    driven_s: float = 0.0
    bus_awake_s: float = 0.0  # the body controller stays awake this long after the last activity
    stop_phase_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    # -- intent ----------------------------------------------------------------------------

    def start_engine(self) -> None:
        if not self.engine_on:
            self.engine_on, self.ignition, self.crank_left_s = True, START, CRANK_S
        self.towed, self.tilt_deg = False, 0.0
        self.wake()

    def stop_engine(self) -> None:
        self.engine_on, self.ignition, self.target_kmh, self.to = False, OFF, 0.0, None
        self.speed_kmh = 0.0
        self.stop_and_go = False
        self.surface_charge_v = 0.4
        self.parked_s = 0.0
        self.wake()

    def wake(self, seconds: float = 60.0) -> None:
        self.bus_awake_s = max(self.bus_awake_s, seconds)

    def slept(self, dt: float) -> None:
        """`dt` seconds of the body controller's awake time have passed (after its frames went out)."""
        self.bus_awake_s = max(0.0, self.bus_awake_s - dt)

    @property
    def bus_awake(self) -> bool:
        return self.engine_on or self.bus_awake_s > 0

    # -- physics ---------------------------------------------------------------------------

    @property
    def supply_v(self) -> float:
        """What the tracker's supply input reads now."""
        if not self.plugged:
            return 0.0
        if self.crank_left_s > 0:
            return self.battery_rest_v - 3.1  # the starter's dip
        if self.engine_on:
            return 14.2  # the alternator charging
        return self.battery_rest_v + self.surface_charge_v

    def tick(self, dt: float, rng: random.Random) -> None:
        """Advance the car by `dt` seconds (the bus's awake timer runs down in `slept`)."""
        if self.crank_left_s > 0:
            self.crank_left_s = max(0.0, self.crank_left_s - dt)
            self.rpm = 220.0
            if self.crank_left_s == 0:
                self.ignition, self.rpm = ON, IDLE_RPM
            return
        target = self._target_kmh(dt) if self.engine_on else 0.0
        before = self.speed_kmh
        if self.engine_on:
            step = (ACCEL_MS2 if target > before else BRAKE_MS2) * 3.6 * dt
            self.speed_kmh = min(target, before + step) if target > before else max(target, before - step)
            self.driven_s += dt
            self.parked_s = 0.0
        else:  # no coasting across a long park tick: the drive ended standing (or on the truck)
            before = self.speed_kmh = self.tow_kmh if self.towed else 0.0
            self.parked_s += dt
        metres = (before + self.speed_kmh) / 2 / 3.6 * dt
        if self.to is not None:
            self.course_deg = bearing_deg(self.lat, self.lon, *self.to)
            if distance_m(self.lat, self.lon, *self.to) <= max(2.0, metres):
                self.lat, self.lon = self.to
                self.to, self.target_kmh, metres = None, 0.0, 0.0
        self._move(metres)
        if self.engine_on:
            self.odometer_m += metres
            self.fuel_pct = max(0.0, self.fuel_pct - metres / 1000 * FUEL_L_PER_100KM / 100 / TANK_L * 100)
            ratio = next(r for lo, hi, r in _GEARS if lo <= self.speed_kmh < hi)
            self.rpm = max(IDLE_RPM, self.speed_kmh * _RPM_PER_KMH * ratio) + rng.gauss(0.0, 15.0)
            along = (self.speed_kmh - before) / 3.6 / dt if dt > 0 else 0.0
            self.accel, self.vibration_ms2 = (along, 0.0, G), 0.12
        else:
            self.rpm = 0.0
            self.surface_charge_v *= math.exp(-dt / 1800.0)
            self.battery_rest_v -= self.battery_decay_v_per_day * dt / 86400.0
            if self.towed:
                r = math.radians(self.tilt_deg)
                self.accel = (G * math.sin(r), 0.0, G * math.cos(r))
            else:
                self.accel, self.vibration_ms2 = (0.0, 0.0, G), 0.02
        if self.plugged:
            self.backup_v = min(4.15, self.backup_v + 0.05 * dt / 3600.0)
        else:
            self.backup_v = max(3.3, self.backup_v - 0.03 * dt / 3600.0)

    def _target_kmh(self, dt: float) -> float:
        if self.to is not None:  # brake in time to stop at the leg's end
            remaining = distance_m(self.lat, self.lon, *self.to)
            return min(self.target_kmh, math.sqrt(2 * BRAKE_MS2 * 0.8 * remaining) * 3.6)
        if not self.stop_and_go:
            return self.target_kmh
        self.stop_phase_s = (self.stop_phase_s + dt) % 150.0  # a red light every 2.5 minutes
        return 0.0 if self.stop_phase_s > 125.0 else self.target_kmh

    def _move(self, metres: float) -> None:
        if metres <= 0:
            return
        self.lat += metres * math.cos(math.radians(self.course_deg)) / M_PER_DEG
        self.lon += metres * math.sin(math.radians(self.course_deg)) / (
            M_PER_DEG * math.cos(math.radians(self.lat)))

    # -- state across agent restarts ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VehicleModel:
        values = dict(data)
        if values.get("to") is not None:
            values["to"] = tuple(values["to"])
        values["accel"] = tuple(values.get("accel", (0.0, 0.0, G)))
        return cls(**values)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_000.0 * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial course from point 1 to point 2, degrees from north."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0
