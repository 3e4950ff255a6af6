"""Constructed tracks for the analytics tests: fixes and ignition written straight by COPY."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cloud.store.db import Conn
from cloud.store.partitions import PartitionKeeper

METRES_PER_DEG_LAT = 6_371_008.8 * math.pi / 180


@dataclass
class Fix:
    time: datetime
    lat: float
    lon: float
    speed_kmh: float | None
    fix_type: int | None = 2  # None: no fix type stored


@dataclass
class Scenario:
    """A car's day built leg by leg, one fix every `step_s` seconds."""

    t: datetime
    lat: float
    lon: float
    step_s: float = 10.0
    fixes: list[Fix] = field(default_factory=list)
    ignition: list[tuple[datetime, float]] = field(default_factory=list)

    def park(self, seconds: float, *, fix_type: int = 2) -> Scenario:
        end = self.t + timedelta(seconds=seconds)
        while self.t < end:
            self.fixes.append(Fix(self.t, self.lat, self.lon, 0.0, fix_type))
            self.t += timedelta(seconds=self.step_s)
        return self

    def drive_north(self, seconds: float, speed_kmh: float) -> Scenario:
        """Drive due north; the first fix is where the leg starts, already at speed."""
        end = self.t + timedelta(seconds=seconds)
        step_deg = speed_kmh / 3.6 * self.step_s / METRES_PER_DEG_LAT
        while self.t < end:
            self.fixes.append(Fix(self.t, self.lat, self.lon, speed_kmh))
            self.t += timedelta(seconds=self.step_s)
            self.lat += step_deg
        return self

    def silence(self, seconds: float) -> Scenario:
        self.t += timedelta(seconds=seconds)
        return self

    def key(self, state: float) -> Scenario:
        """An ignition sample (`Vehicle.LowVoltageSystemState`) at the current time."""
        self.ignition.append((self.t, state))
        return self


def write_fixes(conn: Conn, device_id: str, fixes: list[Fix]) -> None:
    if not fixes:
        return
    keeper = PartitionKeeper()
    keeper.ensure(conn, "positions", min(f.time for f in fixes).date(), max(f.time for f in fixes).date())
    with conn.cursor().copy("COPY positions (device_id, time, boot_id, seq, row_idx, lat_deg, lon_deg, "
                            "speed_kmh, fix_type, clock_quality) FROM STDIN") as copy:
        for i, f in enumerate(fixes):
            copy.write_row((device_id, f.time, 1, i, 0, f.lat, f.lon, f.speed_kmh, f.fix_type, 3))


def write_ignition(conn: Conn, device_id: str, samples: list[tuple[datetime, float]]) -> None:
    if not samples:
        return
    keeper = PartitionKeeper()
    times = [t for t, _ in samples]
    keeper.ensure(conn, "signal_samples", min(times).date(), max(times).date())
    with conn.cursor().copy("COPY signal_samples (device_id, time, boot_id, seq, row_idx, signal_id, value) "
                            "FROM STDIN") as copy:
        for i, (t, value) in enumerate(samples):
            copy.write_row((device_id, t, 1, 1_000_000 + i, 0, 42, value))


def write(conn: Conn, device_id: str, scenario: Scenario) -> None:
    write_fixes(conn, device_id, scenario.fixes)
    write_ignition(conn, device_id, scenario.ignition)


T0 = datetime(2026, 3, 2, tzinfo=UTC)
