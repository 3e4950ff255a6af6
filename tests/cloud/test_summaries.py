"""Daily summaries against figures worked out by hand for one day of a car in Tokyo (UTC+9).

Local day D: parked since 22:00 the evening before; a night drive 05:00-05:20 at 60 km/h
(1 km a minute: 20 km, 20 min, all of it night); parked with GNSS drift; a day drive 12:00-12:30
at 90 km/h (45 km in 30 min); parked until 02:00 the next day. Stationary: 5 h before the first
drive (the segment from 22:00 is cut at midnight) + 2 h 40 min + 4 h + 11 h 30 min (cut at the
next midnight) = 23 h 10 min. Messages arrive out of order and some twice; the summary is
refreshed after every batch, so the result must not depend on arrival order.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import protocol
from cloud.ingest.validate import Incoming, Validator
from cloud.ingest.writer import BatchWriter
from cloud.store import summaries
from cloud.store.db import Conn
from cloud.store.retention import RetentionPolicy
from protocol.messages import (
    ClockQuality,
    DrivingDay,
    Event,
    FixColumns,
    GnssFix,
    Header,
    PowerState,
    SampleColumns,
    Severity,
    Status,
    TelemetryBatch,
)
from tests.cloud.conftest import register
from tests.cloud.helpers import topic_of

TOKYO = ZoneInfo("Asia/Tokyo")
KM_PER_DEG = 6371.0088 * 3.141592653589793 / 180
LON = 139.0
LAT0 = 35.0
DAY = datetime.now(TOKYO).date() - timedelta(days=10)


def at(hour: float, day_offset: int = 0) -> int:
    """UTC ns of local time `hour` on DAY + day_offset in Tokyo."""
    local = datetime.combine(DAY + timedelta(days=day_offset), datetime.min.time(), TOKYO)
    return int((local + timedelta(hours=hour)).timestamp()) * 10**9


def fix(time_ns: int, lat: float, speed: float) -> GnssFix:
    return GnssFix(time_ns, lat, LON, 40.0, speed, 0.0, 0.8, 12, protocol.FixType.FIX_3D)


class Device:
    def __init__(self) -> None:
        self.seq = 0

    def header(self, sent_ns: int) -> Header:
        self.seq += 1
        return Header("gw-tokyo", 5, self.seq, sent_ns, ClockQuality.GNSS)

    def fixes(self, fixes: list[GnssFix], samples: list[tuple[int, int, float]] = ()) -> TelemetryBatch:  # type: ignore[assignment]
        sent = max([f.time_ns for f in fixes] + [s[0] for s in samples])
        return TelemetryBatch(self.header(sent), FixColumns.from_fixes(fixes),
                              SampleColumns(tuple(s[0] for s in samples), tuple(s[1] for s in samples),
                                            tuple(s[2] for s in samples)))

    def event(self, time_ns: int, detector: str) -> Event:
        return Event(self.header(time_ns), self.seq, Severity.WARNING, detector, time_ns, {"g": 0.4})


def day_messages() -> list[TelemetryBatch | Event | Status]:
    car = Device()
    step_km = 1.0 / KM_PER_DEG  # degrees of latitude per km
    end1 = LAT0 + 20 * step_km
    end2 = end1 + 45 * step_km
    drive1 = [fix(at(5 + i / 60), LAT0 + i * step_km, 60.0 if i < 20 else 0.0) for i in range(21)]
    drive2 = [fix(at(12 + i / 120), end1 + i * 0.75 * step_km, 90.0 if i < 60 else 0.0) for i in range(61)]
    evening_before = car.fixes([fix(at(22, -1), LAT0, 0.0)], [(at(22, -1), 40, 10.0)])
    first = car.fixes(drive1, [(at(5.1), 1, 97.5), (at(5.2), 40, 12.6), (at(5.3), 40, 11.8)])
    drift = car.fixes([fix(at(8), end1 + 0.0002, 0.0)], [(at(8), 40, 12.2), (at(18), 71, 92.5)])
    second = car.fixes(drive2, [(at(6), 71, 93.0)])
    next_day = car.fixes([fix(at(2, 1), end2, 0.0)], [(at(2, 1), 1, 150.0)])
    events = [car.event(at(5.05), "harsh_braking"), car.event(at(12.2), "harsh_braking"),
              car.event(at(12.1), "harsh_acceleration"), car.event(at(23, -1), "harsh_cornering"),
              car.event(at(9), "tow")]
    status = Status(car.header(at(7)), PowerState.IDLE, 11.5, 4.1, "1.2.3", 7, 0)
    # Out of order, with a resent drive and a resent event.
    return [next_day, drift, events[0], second, evening_before, status, first, *events[1:], first, events[0]]


@pytest.fixture
def writer(db: Conn) -> BatchWriter:
    register(db, "gw-tokyo", time_zone="Asia/Tokyo")
    return BatchWriter(db, mode="plain", receiver_id="test", policy=RetentionPolicy())


def test_daily_summary_matches_hand_computed_figures(db: Conn, writer: BatchWriter) -> None:
    validator = Validator(lambda d: d == "gw-tokyo", lambda table: 0, 10**15, time.time_ns)
    now = datetime.now(UTC)
    for mid, message in enumerate(day_messages()):
        outcome = validator.check(Incoming(topic_of(message) if not isinstance(message, Status)  # type: ignore[arg-type]
                                           else "lienwatch/v1/gw-tokyo/up/status",
                                           protocol.encode(message), mid, 1, time.time_ns()))
        assert not hasattr(outcome, "reason_code"), outcome
        writer.write([outcome], now)
        writer.ensure_summary_partitions(DAY - timedelta(days=2), DAY + timedelta(days=2))
        summaries.refresh_dirty(db, oldest_day=date(2000, 1, 1))
    row = db.execute(
        "SELECT distance_km, driving_minutes, night_driving_minutes, stationary_hours, harsh_accel_count, "
        "harsh_brake_count, harsh_corner_count, max_speed_kmh, min_supply_v, ev_soh_pct, positions_count "
        "FROM daily_summaries WHERE device_id = 'gw-tokyo' AND day = %s", (DAY,)).fetchone()
    assert row is not None
    (distance, driving, night, stationary, accel, brake, corner, max_speed, min_v, soh, n) = row
    assert distance == pytest.approx(65.0, abs=0.01)
    assert driving == pytest.approx(50.0, abs=1e-6)
    assert night == pytest.approx(20.0, abs=1e-6)
    assert stationary == pytest.approx(23 + 10 / 60, abs=1e-6)
    assert driving / 60 + stationary == pytest.approx(24.0)
    assert (accel, brake, corner) == (1, 2, 0)
    assert max_speed == pytest.approx(97.5)
    assert min_v == pytest.approx(11.5)  # the status's supply voltage, below every 12 V sample of D
    assert soh == pytest.approx(92.5)  # the latest SoH sample of the day, though it arrived first
    assert n == 21 + 1 + 61
    before = db.execute("SELECT harsh_corner_count, min_supply_v, distance_km FROM daily_summaries "
                        "WHERE device_id = 'gw-tokyo' AND day = %s", (DAY - timedelta(days=1),)).fetchone()
    assert before is not None and before[0] == 1 and before[1] == pytest.approx(10.0) and before[2] == 0
    after = db.execute("SELECT max_speed_kmh, stationary_hours FROM daily_summaries "
                       "WHERE device_id = 'gw-tokyo' AND day = %s", (DAY + timedelta(days=1),)).fetchone()
    assert after is not None and after[0] == pytest.approx(150.0)
    # 00:00-02:00 from the segment that began on D; after the 02:00 fix nothing is known yet.
    assert after[1] == pytest.approx(2.0)
    assert db.execute("SELECT count(*) FROM summary_dirty").fetchone() == (0,)


def test_haversine_function_matches_a_known_distance(db: Conn) -> None:
    # Paris (48.8566, 2.3522) to London (51.5074, -0.1278): 343.5 km on the mean-radius sphere.
    row = db.execute("SELECT lienwatch_haversine_km(48.8566, 2.3522, 51.5074, -0.1278)").fetchone()
    assert row is not None and row[0] == pytest.approx(343.56, abs=0.1)


def test_the_devices_driving_counters_reach_the_daily_summary_as_their_maximum(
        db: Conn, writer: BatchWriter) -> None:
    """Cumulative per local day: repeats and late statuses never lower a count; yesterday's final
    counts ride the first status after midnight."""
    validator = Validator(lambda d: d == "gw-tokyo", lambda table: 0, 10**15, time.time_ns)
    car = Device()
    d0, d1 = DAY.isoformat(), (DAY + timedelta(days=1)).isoformat()

    def status(sent_ns: int, *days: DrivingDay) -> Status:
        return Status(car.header(sent_ns), PowerState.ACTIVE, 12.6, 4.1, "1.2.3", 7, 0, driving=days)

    morning = status(at(8), DrivingDay(d0, harsh_accel=1, harsh_brake=2, overspeed=1, overspeed_s=40))
    evening = status(at(20), DrivingDay(d0, harsh_accel=3, harsh_brake=2, harsh_corner=1, overspeed=1,
                                        overspeed_s=95, idle_long=1, idle_long_s=330))
    after_midnight = status(at(0.5, 1), DrivingDay(d0, harsh_accel=4, harsh_brake=2, harsh_corner=1,
                                                   overspeed=1, overspeed_s=95, idle_long=1, idle_long_s=330),
                            DrivingDay(d1, harsh_brake=1))
    now = datetime.now(UTC)
    for mid, message in enumerate([evening, after_midnight, morning, evening]):  # late and repeated
        outcome = validator.check(Incoming("lienwatch/v1/gw-tokyo/up/status", protocol.encode(message),
                                           mid, 1, time.time_ns()))
        assert not hasattr(outcome, "reason_code"), outcome
        writer.write([outcome], now)
    rows = db.execute(
        "SELECT day, harsh_accel_count, harsh_brake_count, harsh_corner_count, overspeed_count, overspeed_s, "
        "idle_long_count, idle_long_s FROM daily_summaries WHERE device_id = 'gw-tokyo' "
        "AND (harsh_accel_count, harsh_brake_count) <> (0, 0) ORDER BY day").fetchall()
    assert rows == [(DAY, 4, 2, 1, 1, 95, 1, 330), (DAY + timedelta(days=1), 0, 1, 0, 0, 0, 0, 0)]
    stored = db.execute("SELECT body->'driving' FROM device_status WHERE device_id = 'gw-tokyo' "
                        "AND time = %s", (datetime.fromtimestamp(at(0.5, 1) / 1e9, UTC),)).fetchone()
    assert stored is not None and [d["day"] for d in stored[0]] == [d0, d1]
    assert stored[0][0]["harsh_accel"] == 4


def test_one_batch_with_two_reports_of_a_day_keeps_each_counters_maximum(
        db: Conn, writer: BatchWriter) -> None:
    validator = Validator(lambda d: d == "gw-tokyo", lambda table: 0, 10**15, time.time_ns)
    car = Device()
    d0 = DAY.isoformat()
    reports = [Status(car.header(at(9)), PowerState.ACTIVE, 12.6, 4.1, "1.2.3", 7, 0,
                      driving=(DrivingDay(d0, harsh_accel=5, idle_long_s=10),)),
               Status(car.header(at(10)), PowerState.ACTIVE, 12.6, 4.1, "1.2.3", 7, 0,
                      driving=(DrivingDay(d0, harsh_accel=2, idle_long_s=600),))]
    outcomes = [validator.check(Incoming("lienwatch/v1/gw-tokyo/up/status", protocol.encode(m), i, 1,
                                         time.time_ns())) for i, m in enumerate(reports)]
    writer.write(outcomes, datetime.now(UTC))
    row = db.execute("SELECT harsh_accel_count, idle_long_s FROM daily_summaries "
                     "WHERE device_id = 'gw-tokyo' AND day = %s", (DAY,)).fetchone()
    assert row == (5, 600)
