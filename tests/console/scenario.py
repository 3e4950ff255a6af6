"""A night tow, stored through the real receiver's writer: what the console's browser tests see.

`gw-tow` sleeps parked at its home from 22:00, is lifted at 02:10 with the ignition off and towed
for about half an hour to a yard 9 km north-east, with a five-minute stretch without a GNSS fix
on the way; its agent raises `tow` as ALERT, escalates it to EMERGENCY and keeps reporting. `gw-other`
(a second car with one ALERT of its own) is assigned to nobody; `gw-quiet` went silent three days
ago on a failing battery, behind on data, with only its RTC for a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloud.ingest.validate import Accepted, Incoming
from cloud.ingest.writer import BatchWriter
from cloud.store.db import Conn
from cloud.store.devices import Device, PointOfInterest, add_device
from cloud.store.retention import RetentionPolicy
from protocol.messages import (
    ClockQuality,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    PowerState,
    Severity,
    Status,
    TelemetryBatch,
    Transition,
)

HOME = (48.13743, 11.57549)
YARD = (48.19871, 11.66102)
TOW_DEVICE, OTHER_DEVICE, QUIET_DEVICE = "gw-tow", "gw-other", "gw-quiet"
NO_FIX_MINUTES = (12, 17)  # minutes into the tow without a fix


@dataclass(frozen=True)
class NightTow:
    """Times of the seeded scenario (UTC)."""

    parked_at: datetime
    tow_start: datetime
    tow_end: datetime
    emergency_at: datetime
    tow_event_id: int = 7001


def tow_night(now: datetime) -> NightTow:
    """The last night whose tow (02:10-02:40 UTC) ended at least an hour before `now`."""
    day = (now - timedelta(hours=3, minutes=40)).date()
    start = datetime(day.year, day.month, day.day, 2, 10, tzinfo=UTC)
    return NightTow(parked_at=start - timedelta(hours=4, minutes=10), tow_start=start,
                    tow_end=start + timedelta(minutes=30), emergency_at=start + timedelta(minutes=4))


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 10**9


def _fix(at: datetime, lat: float, lon: float, speed: float, fix: FixType = FixType.FIX_3D) -> GnssFix:
    return GnssFix(_ns(at), lat, lon, 520.0, speed, 35.0, 0.9, 11 if fix else 0, fix)


def tow_fixes(night: NightTow) -> list[GnssFix]:
    """Parked at home once a minute, then the tow every 10 s; in the no-fix minutes the receiver
    reports no fix (rows of fix type NO_FIX at the last known position)."""
    fixes = []
    at = night.parked_at
    while at < night.tow_start:
        fixes.append(_fix(at, HOME[0], HOME[1], 0.0))
        at += timedelta(minutes=1)
    steps = 180
    for i in range(steps + 1):
        at = night.tow_start + timedelta(seconds=10 * i)
        minute = i * 10 / 60
        if NO_FIX_MINUTES[0] <= minute < NO_FIX_MINUTES[1]:
            last = fixes[-1]
            fixes.append(_fix(at, last.lat_deg, last.lon_deg, 0.0, FixType.NO_FIX))
            continue
        f = i / steps
        # a gentle curve, not a straight line, so the drawn track shows its shape
        lat = HOME[0] + (YARD[0] - HOME[0]) * f + 0.004 * math.sin(math.pi * f)
        lon = HOME[1] + (YARD[1] - HOME[1]) * f
        fixes.append(_fix(at, lat, lon, 0.0 if i == steps else 28.0))
    return fixes


class _Seq:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


def _messages(night: NightTow, now: datetime) -> Iterator[TelemetryBatch | Event | Status]:
    seq = _Seq()

    def header(device: str, at: datetime, clock: ClockQuality = ClockQuality.GNSS) -> Header:
        return Header(device, 1, seq.next(), _ns(at), clock)

    fixes = tow_fixes(night)
    for i in range(0, len(fixes), 30):
        chunk = fixes[i:i + 30]
        yield TelemetryBatch(header(TOW_DEVICE, datetime.fromtimestamp(chunk[-1].time_ns / 1e9, UTC)),
                             FixColumns.from_fixes(chunk))
    lifted = night.tow_start + timedelta(minutes=1)
    lifted_fix = next(f for f in fixes if f.time_ns >= _ns(lifted))
    yield Event(header(TOW_DEVICE, lifted), night.tow_event_id, Severity.ALERT, "tow", _ns(lifted),
                {"distance_m": 160.0, "ignition_off_min": 250.0}, lifted_fix, "moving with the ignition off")
    emergency_fix = next(f for f in fixes if f.time_ns >= _ns(night.emergency_at) and f.fix_type)
    yield Event(header(TOW_DEVICE, night.emergency_at), night.tow_event_id, Severity.EMERGENCY, "tow",
                _ns(night.emergency_at), {"distance_m": 2150.0, "speed_kmh": 28.0, "ignition_off_min": 254.0},
                emergency_fix, "towed 2.2 km with the ignition off", Transition.ESCALATED, _ns(lifted))
    yard_fix = fixes[-1]
    yield Status(header(TOW_DEVICE, night.tow_end + timedelta(minutes=5)), PowerState.IDLE, 12.41, 4.02,
                 "1.4.2", 17, 2, energy_forecast_days=87.5, avg_current_ma=2.45, position=yard_fix)

    other_at = night.parked_at - timedelta(hours=2)
    other_fix = _fix(other_at, 48.0911, 11.5201, 0.0)
    yield TelemetryBatch(header(OTHER_DEVICE, other_at), FixColumns.from_fixes([other_fix]))
    yield Event(header(OTHER_DEVICE, other_at), 9001, Severity.ALERT, "unplug", _ns(other_at),
                {"supply_v": 4.9}, other_fix, "external supply lost")
    yield Status(header(OTHER_DEVICE, other_at), PowerState.SLEEP, 12.55, 4.1, "1.4.2", 17, 0,
                 energy_forecast_days=140.0, avg_current_ma=1.9, position=other_fix)

    quiet_at = now - timedelta(days=3)
    quiet_fix = _fix(quiet_at, 48.3540, 11.7861, 0.0)
    yield Status(header(QUIET_DEVICE, quiet_at, ClockQuality.RTC), PowerState.DEEP_SLEEP, 11.32, 3.31,
                 "1.3.9", 15, 840, energy_forecast_days=21.0, avg_current_ma=6.8, position=quiet_fix)


def seed_night_tow(conn: Conn, now: datetime | None = None) -> NightTow:
    """Register the three cars and store the night through `BatchWriter` (as the receiver does)."""
    now = now or datetime.now(UTC)
    night = tow_night(now)
    add_device(conn, Device(device_id=TOW_DEVICE, vin="WDB12345678901234", time_zone="Europe/Berlin",
                            points_of_interest=(PointOfInterest("home", HOME[0], HOME[1], kind="home"),)))
    add_device(conn, Device(device_id=OTHER_DEVICE, vin="WDB12345678901299", time_zone="Europe/Berlin"))
    add_device(conn, Device(device_id=QUIET_DEVICE, time_zone="Europe/Berlin"))
    writer = BatchWriter(conn, mode="plain", receiver_id="console-test", policy=RetentionPolicy())
    outcomes = [Accepted(Incoming("console-test", b"", 1, 1, m.header.sent_ns + 2 * 10**9), m, 100)
                for m in _messages(night, now)]
    writer.write(outcomes, now)  # type: ignore[arg-type]
    return night


def store_event(conn: Conn, device_id: str, event_id: int, severity: Severity, detector: str,
                at: datetime, features: dict[str, float], seq: int) -> None:
    """One more event, stored as the receiver stores it (for the inbox's live refresh)."""
    writer = BatchWriter(conn, mode="plain", receiver_id="console-test", policy=RetentionPolicy())
    header = Header(device_id, 2, seq, _ns(at), ClockQuality.GNSS)
    event = Event(header, event_id, severity, detector, _ns(at), features)
    writer.write([Accepted(Incoming("console-test", b"", 1, 1, _ns(at) + 10**9), event, 100)],
                 at)  # type: ignore[list-item]
