"""Trips and stops computed in SQL, on constructed days whose answers are known by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.trips import TripRules, trips_and_stops
from cloud.store.db import Conn
from cloud.store.devices import Device, PointOfInterest, add_device
from tests.cloud.seed import METRES_PER_DEG_LAT, T0, Scenario, write

HOME = (48.1, 11.5)
STEP = timedelta(seconds=10)


def at(hh: int, mm: int) -> datetime:
    return T0 + timedelta(hours=hh, minutes=mm)


def near(value: datetime, expected: datetime, slack: timedelta = STEP) -> bool:
    return abs(value - expected) <= slack


def day_by_speed() -> Scenario:
    """00:00 parked at home; 01:00 20 min at 36 km/h, 1 min at a light, 10 min more; parked 2 h;
    03:31 a 2-minute move of 333 m (no trip); parked 1 h; 04:33 10 min drive, 2 h without data,
    10 min drive on from the same place; parked 30 min."""
    s = Scenario(T0, *HOME)
    s.park(3600).drive_north(1200, 36).park(60).drive_north(600, 36).park(7200)
    s.drive_north(120, 10).park(3600).drive_north(600, 36)
    s.silence(7200).drive_north(600, 36).park(1800)
    return s


def register(db: Conn, device_id: str) -> None:
    add_device(db, Device(device_id, points_of_interest=(PointOfInterest("home", *HOME, 200.0, "home"),)))


def test_trips_and_stops_of_a_day_known_by_hand(db: Conn) -> None:
    register(db, "gw-day")
    write(db, "gw-day", day_by_speed())
    got = trips_and_stops(db, "gw-day", T0, T0 + timedelta(days=1))
    assert not got.ignition
    trips = got.trips
    assert len(trips) == 3, trips  # the 333 m move is dropped; the gap splits the last drive
    first, before_gap, after_gap = trips
    # The light's minute is inside the first trip (a stop < 300 s does not end it).
    assert near(first.start, at(1, 0)) and near(first.end, at(1, 31))
    assert first.distance_m == pytest.approx(18_000, rel=0.01)
    assert first.max_speed_kmh == pytest.approx(36)
    assert near(before_gap.start, at(4, 33)) and near(before_gap.end, at(4, 43))
    # 60 fixes 100 m apart: 59 segments; the last fix's segment crosses the gap and is not driven.
    assert before_gap.distance_m == pytest.approx(5_900, rel=0.001)
    assert near(after_gap.start, at(6, 43)) and near(after_gap.end, at(6, 53))
    stops = got.stops
    assert len(stops) == 4, stops
    home, long_stop, gap, last = stops
    assert home.point_of_interest == "home" and home.point_of_interest_kind == "home"
    assert home.start == T0 and near(home.end, at(1, 0))
    # One stop from the end of the first trip to the next real trip, where the first trip ended.
    assert near(long_stop.start, at(1, 31)) and near(long_stop.end, at(4, 33))
    assert long_stop.place.lat_deg == pytest.approx(HOME[0] + 18_000 / METRES_PER_DEG_LAT, abs=2e-4)
    assert long_stop.point_of_interest is None and not long_stop.data_gap
    assert gap.data_gap and near(gap.start, at(4, 43)) and near(gap.end, at(6, 43))
    assert last.last and near(last.start, at(6, 53)) and near(last.end, at(7, 23))
    assert last.duration_s == pytest.approx(1800, abs=20)


def test_rules_are_overridable(db: Conn) -> None:
    register(db, "gw-rules")
    write(db, "gw-rules", day_by_speed())
    day = (T0, T0 + timedelta(days=1))
    long_only = trips_and_stops(db, "gw-rules", *day, TripRules(trip_min_m=10_000))
    assert [round(t.distance_m, -3) for t in long_only.trips] == [18_000]
    # A 3 h gap rule: the 2 h silence no longer ends the trip (the car restarts where it was).
    merged = trips_and_stops(db, "gw-rules", *day, TripRules(gap_s=3 * 3600))
    assert len(merged.trips) == 2
    assert near(merged.trips[1].start, at(4, 33)) and near(merged.trips[1].end, at(6, 53))
    # A stop must last 2 min: the 333 m move (2 min at 10 km/h) is then a trip of its own.
    short = trips_and_stops(db, "gw-rules", *day, TripRules(trip_min_m=300, trip_min_s=60))
    assert len(short.trips) == 4
    assert short.trips[1].distance_m == pytest.approx(333, rel=0.1)


def test_ignition_decides_motion_when_the_device_reports_it(db: Conn) -> None:
    """Key on 10:00-10:30 driving; key off then towed 2 km at 20 km/h; key on 11:00 idling 5 min."""
    register(db, "gw-key")
    s = Scenario(T0 + timedelta(hours=9), *HOME)
    s.key(2).park(3600).key(4).drive_north(1800, 36).key(2).park(600)
    s.drive_north(360, 20).park(1200).key(4).park(300).key(2).park(1800)
    write(db, "gw-key", s)
    got = trips_and_stops(db, "gw-key", T0, T0 + timedelta(days=1))
    assert got.ignition
    assert len(got.trips) == 1  # the tow (ignition off) and the idling (0 m) are no trips
    trip = got.trips[0]
    assert near(trip.start, at(10, 0)) and near(trip.end, at(10, 30))
    assert trip.distance_m == pytest.approx(18_000, rel=0.01)
    by_speed = trips_and_stops(db, "gw-key", T0, T0 + timedelta(days=1), TripRules(use_ignition=False))
    assert not by_speed.ignition
    assert len(by_speed.trips) == 2 and by_speed.trips[1].distance_m == pytest.approx(2000, rel=0.02)


def test_ignition_before_the_range_is_carried_in(db: Conn) -> None:
    register(db, "gw-carry")
    s = Scenario(T0 + timedelta(hours=9), *HOME)
    s.key(4).park(600).drive_north(1800, 36).key(2).park(600)
    write(db, "gw-carry", s)
    # From 09:05: the only ignition sample inside the range says OFF at 09:40.
    got = trips_and_stops(db, "gw-carry", at(9, 5), at(12, 0))
    assert got.ignition and len(got.trips) == 1
    assert near(got.trips[0].start, at(9, 5)) and near(got.trips[0].end, at(9, 40))


def test_no_fix_rows_and_empty_ranges(db: Conn) -> None:
    register(db, "gw-empty")
    assert trips_and_stops(db, "gw-empty", T0, T0 + timedelta(days=1)).trips == []
    s = Scenario(T0, *HOME).park(600, fix_type=0).drive_north(600, 36).park(600)
    write(db, "gw-empty", s)
    got = trips_and_stops(db, "gw-empty", T0, T0 + timedelta(days=1))
    assert len(got.trips) == 1 and near(got.trips[0].start, T0 + timedelta(minutes=10))
    # The leading stop starts at the first fix, not at a fix-less row.
    assert all(stop.start >= T0 + timedelta(minutes=10) for stop in got.stops)


def test_json_form(db: Conn) -> None:
    register(db, "gw-json")
    write(db, "gw-json", day_by_speed())
    body = trips_and_stops(db, "gw-json", T0, T0 + timedelta(days=1)).as_json()
    assert body["motion_from"] == "speed"
    trip = body["trips"][0]
    assert trip["start"].endswith("Z") and trip["avg_speed_kmh"] == pytest.approx(34.8, abs=1.0)
    assert body["stops"][0]["point_of_interest"] == "home"


@pytest.mark.parametrize("rules", [
    {"trip_min_m": -1}, {"stop_min_s": 0}, {"gap_s": float("nan")}, {"moving_kmh": 1e9},
    {"use_ignition": "yes"}])
def test_bad_rules_are_refused(rules: dict[str, object]) -> None:
    with pytest.raises(AnalyticsError):
        TripRules(**rules)  # type: ignore[arg-type]


def test_bad_ranges_are_refused(db: Conn) -> None:
    with pytest.raises(AnalyticsError, match="before"):
        trips_and_stops(db, "gw", T0, T0)
    with pytest.raises(AnalyticsError, match="days"):
        trips_and_stops(db, "gw", T0, T0 + timedelta(days=200))
    with pytest.raises(AnalyticsError, match="time zone"):
        trips_and_stops(db, "gw", T0.replace(tzinfo=None), T0.replace(tzinfo=None) + timedelta(days=1))


