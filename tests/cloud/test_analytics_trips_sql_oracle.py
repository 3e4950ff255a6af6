"""The numpy trips and stops equal the SQL definition they replaced, on random tracks.

The oracle is the single window-function statement `cloud.analytics.trips` used before it computed
in numpy (kept here verbatim, tests only). Random tracks (drives, parks with GNSS jitter, crawls
around `moving_kmh`, fixes without speed, rows without a fix type or without a fix, silences
around `gap_s`, ignition absent / on key changes / periodic / only before `from` / starting late,
ranges cutting into the track, overlapping points of interest, random rules) are written into the
real test PostgreSQL and both answers compared: times exactly, distances and places to 1e-6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import LiteralString

import numpy as np
import pytest

from cloud.analytics.motion import IGNITION_LOOKBACK
from cloud.analytics.trips import (
    Place,
    Stop,
    Trip,
    TripRules,
    TripsAndStops,
    trips_and_stops,
)
from cloud.store.db import Conn
from cloud.store.devices import Device, PointOfInterest, add_device
from tests.cloud.seed import METRES_PER_DEG_LAT, T0, Fix, write_fixes, write_ignition

CASES = 64
REL = 1e-6

# -- the oracle: cloud/analytics/trips.py before #16, verbatim --
_IGNITION_KNOWN: LiteralString = """
    SELECT EXISTS (SELECT 1 FROM signal_samples WHERE device_id = %(device)s AND signal_id = 42
                   AND time >= %(ign_from)s AND time < %(end)s)"""

# Fixes with the ignition value carried forward onto each (the count of ignition rows so far
# numbers the groups; each group starts with its ignition row).
_FIXES_WITH_IGNITION: LiteralString = """
    ign AS (
        SELECT time, value FROM signal_samples
        WHERE device_id = %(device)s AND signal_id = 42 AND time >= %(start)s AND time < %(end)s
        UNION ALL
        (SELECT time, value FROM signal_samples
         WHERE device_id = %(device)s AND signal_id = 42 AND time >= %(ign_from)s AND time < %(start)s
         ORDER BY time DESC LIMIT 1)
    ), stream AS (
        SELECT time, lat_deg, lon_deg, speed_kmh, NULL::float8 AS ign, 1 AS is_fix
        FROM positions WHERE device_id = %(device)s AND time >= %(start)s AND time < %(end)s
            AND fix_type IS DISTINCT FROM 0
        UNION ALL
        SELECT time, NULL, NULL, NULL, value, 0 FROM ign
    ), carried AS (
        SELECT *, count(ign) OVER (ORDER BY time, is_fix) AS grp FROM stream
    ), fx AS (
        SELECT time, lat, lon, v, ign FROM (
            SELECT time, lat_deg AS lat, lon_deg AS lon, speed_kmh AS v, is_fix,
                   max(ign) OVER (PARTITION BY grp) AS ign
            FROM carried) c
        WHERE is_fix = 1
    )"""

_FIXES_ONLY: LiteralString = """
    fx AS (
        SELECT time, lat_deg AS lat, lon_deg AS lon, speed_kmh AS v, NULL::float8 AS ign
        FROM positions WHERE device_id = %(device)s AND time >= %(start)s AND time < %(end)s
            AND fix_type IS DISTINCT FROM 0
    )"""

_TRIPS_AND_STOPS: LiteralString = """
    , pairs AS (
        SELECT lag(time) OVER w AS t0, time AS t1, lag(lat) OVER w AS lat0, lag(lon) OVER w AS lon0,
               lat AS lat1, lon AS lon1, lag(v) OVER w AS v0, v AS v1, lag(ign) OVER w AS ign0, ign AS ign1
        FROM fx WINDOW w AS (ORDER BY time)
    ), measured AS (
        SELECT *, extract(epoch FROM t1 - t0) AS dt_s FROM pairs WHERE t0 IS NOT NULL
    ), classified AS (
        SELECT *, CASE WHEN t1 - t0 >= %(gap)s THEN 'gap'
                    WHEN ign0 IS NOT NULL OR ign1 IS NOT NULL THEN
                        CASE WHEN coalesce(ign0, 0) >= 4 OR coalesce(ign1, 0) >= 4
                             THEN 'moving' ELSE 'stopped' END
                    -- the implied speed (and its trigonometry) only where a fix has no speed
                    WHEN greatest(coalesce(v0, lienwatch_haversine_km(lat0, lon0, lat1, lon1) * 3600
                                               / nullif(dt_s, 0)),
                                  coalesce(v1, lienwatch_haversine_km(lat0, lon0, lat1, lon1) * 3600
                                               / nullif(dt_s, 0))) >= %(moving_kmh)s
                        THEN 'moving'
                    ELSE 'stopped' END AS state
        FROM measured
    ), segs AS (
        -- distances of moving segments only (a parked car's drift is no distance): most segments
        -- of a month are parked and skip the trigonometry
        SELECT t0, t1, lat0, lon0, lat1, lon1, greatest(v0, v1) AS v_max, state,
               CASE WHEN state = 'moving' THEN
                   12742017.6 * asin(sqrt(power(sin(radians(lat1 - lat0) / 2), 2)
                       + cos(radians(lat0)) * cos(radians(lat1)) * power(sin(radians(lon1 - lon0) / 2), 2)))
               ELSE 0 END AS d_m
        FROM classified
    ), marked AS (
        -- ordered by t1 (the fixes' own order, as `pairs` left it): no sort between the windows
        SELECT *, state IS DISTINCT FROM lag(state) OVER w AS starts,
                  state IS DISTINCT FROM lead(state) OVER w AS ends
        FROM segs WINDOW w AS (ORDER BY t1)
    ), numbered AS (
        SELECT *, sum(starts::int) OVER (ORDER BY t1) AS run FROM marked
    ), runs AS (
        SELECT run, min(state) AS state, min(t0) AS t_start, max(t1) AS t_end, sum(d_m) AS d_m,
               max(v_max) AS v_max,
               min(lat0) FILTER (WHERE starts) AS lat_start, min(lon0) FILTER (WHERE starts) AS lon_start,
               min(lat1) FILTER (WHERE ends) AS lat_end, min(lon1) FILTER (WHERE ends) AS lon_end
        FROM numbered GROUP BY run
    ), grouped AS (
        SELECT *, sum(breaker::int) OVER (ORDER BY t_start) AS grp FROM (
            SELECT *, state = 'gap' OR (state = 'stopped' AND t_end - t_start >= %(stop_min)s) AS breaker
            FROM runs) r
    ), candidates AS (
        SELECT min(t_start) FILTER (WHERE state = 'moving') AS t_start,
               max(t_end) FILTER (WHERE state = 'moving') AS t_end,
               sum(d_m) FILTER (WHERE state = 'moving') AS d_m,
               max(v_max) FILTER (WHERE state = 'moving') AS v_max,
               (array_agg(lat_start ORDER BY t_start) FILTER (WHERE state = 'moving'))[1] AS lat_start,
               (array_agg(lon_start ORDER BY t_start) FILTER (WHERE state = 'moving'))[1] AS lon_start,
               (array_agg(lat_end ORDER BY t_start DESC) FILTER (WHERE state = 'moving'))[1] AS lat_end,
               (array_agg(lon_end ORDER BY t_start DESC) FILTER (WHERE state = 'moving'))[1] AS lon_end
        FROM grouped WHERE NOT breaker GROUP BY grp HAVING bool_or(state = 'moving')
    ), trips AS (
        SELECT * FROM candidates WHERE d_m >= %(trip_min_m)s AND t_end - t_start >= %(trip_min_s)s
    ), bounds AS (  -- from the few runs, not the many segments
        SELECT f.t_start AS first_t, (SELECT max(t_end) FROM runs) AS last_t, f.lat_start AS first_lat,
               f.lon_start AS first_lon
        FROM (SELECT 1) one LEFT JOIN (SELECT t_start, lat_start, lon_start FROM runs
                                       ORDER BY t_start LIMIT 1) f ON true
    ), spans AS (
        SELECT coalesce(lag(t_end) OVER o, b.first_t) AS s_start, t_start AS s_end,
               coalesce(lag(lat_end) OVER o, b.first_lat) AS lat,
               coalesce(lag(lon_end) OVER o, b.first_lon) AS lon, false AS last
        FROM trips CROSS JOIN bounds b WINDOW o AS (ORDER BY t_start)
        UNION ALL
        SELECT coalesce(t.t_end, b.first_t), b.last_t, coalesce(t.lat_end, b.first_lat),
               coalesce(t.lon_end, b.first_lon), true
        FROM bounds b LEFT JOIN (SELECT * FROM trips ORDER BY t_start DESC LIMIT 1) t ON true
        WHERE b.first_t IS NOT NULL
    ), stops AS (
        SELECT s.*, EXISTS (SELECT 1 FROM runs g WHERE g.state = 'gap' AND g.t_start >= s.s_start
                            AND g.t_end <= s.s_end) AS data_gap
        FROM spans s WHERE s.s_end - s.s_start >= %(stop_min)s
    )
    SELECT 'trip', t_start, t_end, d_m, lat_start, lon_start, lat_end, lon_end, v_max, NULL, NULL, NULL, NULL
    FROM trips
    UNION ALL
    SELECT 'stop', s_start, s_end, NULL, lat, lon, NULL, NULL, NULL, p.name, p.kind, data_gap, last
    FROM stops s LEFT JOIN LATERAL (
        SELECT name, kind FROM points_of_interest
        WHERE device_id = %(device)s
            AND lienwatch_haversine_km(lat_deg, lon_deg, s.lat, s.lon) * 1000 <= radius_m
        ORDER BY lienwatch_haversine_km(lat_deg, lon_deg, s.lat, s.lon) LIMIT 1) p ON true
    ORDER BY 2, 1"""


def sql_trips_and_stops(conn: Conn, device_id: str, start: datetime, end: datetime,
                        rules: TripRules) -> TripsAndStops:
    """The trips and stops as the one window-function query computed them before numpy did."""
    params = {"device": device_id, "start": start, "end": end, "ign_from": start - IGNITION_LOOKBACK,
              "gap": timedelta(seconds=rules.gap_s), "stop_min": timedelta(seconds=rules.stop_min_s),
              "trip_min_s": timedelta(seconds=rules.trip_min_s), "trip_min_m": rules.trip_min_m,
              "moving_kmh": rules.moving_kmh}
    ignition = False
    if rules.use_ignition:
        row = conn.execute(_IGNITION_KNOWN, params).fetchone()
        ignition = bool(row and row[0])
    query = "WITH " + (_FIXES_WITH_IGNITION if ignition else _FIXES_ONLY) + _TRIPS_AND_STOPS
    result = TripsAndStops(ignition=ignition)
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '64MB'")  # a month of 1 Hz segments sorts in memory
        rows = conn.execute(query, params).fetchall()  # type: ignore[call-overload]
    for kind, t0, t1, d_m, lat0, lon0, lat1, lon1, v_max, poi, poi_kind, gap, last in rows:
        if kind == "trip":
            result.trips.append(Trip(t0, t1, float(d_m), Place(lat0, lon0), Place(lat1, lon1),
                                     None if v_max is None else float(v_max)))
        else:
            result.stops.append(Stop(t0, t1, Place(lat0, lon0), poi, poi_kind, bool(gap), bool(last)))
    return result


@dataclass
class Case:
    """One random device: its fixes, ignition samples, points of interest, range and rules."""

    rules: TripRules
    start: datetime
    end: datetime
    fixes: list[Fix] = field(default_factory=list)
    ignition: list[tuple[datetime, float]] = field(default_factory=list)
    points_of_interest: list[PointOfInterest] = field(default_factory=list)


def random_rules(rng: np.random.Generator) -> TripRules:
    if rng.random() < 0.6:
        return TripRules(use_ignition=bool(rng.random() < 0.9))
    return TripRules(trip_min_m=float(rng.uniform(0, 3000)), trip_min_s=float(rng.uniform(0, 1200)),
                     stop_min_s=float(rng.uniform(30, 1200)), gap_s=float(rng.uniform(300, 7200)),
                     moving_kmh=float(rng.uniform(1, 20)), use_ignition=bool(rng.random() < 0.7))


class Track:
    """A random walk of legs, one fix every `step_s` (jittered to the microsecond)."""

    def __init__(self, rng: np.random.Generator, rules: TripRules) -> None:
        self.rng, self.rules = rng, rules
        self.t = T0 + timedelta(seconds=float(rng.uniform(0, 86_400)))
        self.lat, self.lon = float(rng.uniform(40, 60)), float(rng.uniform(-5, 25))
        self.step_s = float(rng.choice([5.0, 10.0, 30.0, 60.0]))
        self.fixes: list[Fix] = []
        self.parks: list[tuple[float, float]] = []
        self.key_changes: list[tuple[datetime, float]] = []

    def _advance(self) -> None:
        self.t += timedelta(microseconds=int(self.step_s * 1e6 * self.rng.uniform(0.7, 1.3)))

    def _fix_type(self) -> int | None:
        return None if self.rng.random() < 0.1 else 2

    def park(self, seconds: float) -> None:
        jitter_m = float(self.rng.choice([0.0, 2.0, 8.0]))
        speed = self.rng.choice(["zero", "none", "noise"])
        fix_type = self._fix_type()
        self.parks.append((self.lat, self.lon))
        end = self.t + timedelta(seconds=seconds)
        while self.t < end:
            north, east = self.rng.normal(0, jitter_m, 2) / METRES_PER_DEG_LAT if jitter_m else (0.0, 0.0)
            v = 0.0 if speed == "zero" else None if speed == "none" else abs(float(self.rng.normal(0, 3)))
            lon = self.lon + east / math.cos(math.radians(self.lat))
            self.fixes.append(Fix(self.t, self.lat + north, lon, v, fix_type))
            self._advance()

    def drive(self, seconds: float, speed_kmh: float) -> None:
        reported = self.rng.random() < 0.8
        heading = float(self.rng.uniform(0, 2 * math.pi))
        fix_type = self._fix_type()
        end = self.t + timedelta(seconds=seconds)
        while self.t < end:
            v = max(0.0, speed_kmh + float(self.rng.normal(0, speed_kmh / 10)))
            self.fixes.append(Fix(self.t, self.lat, self.lon, v if reported else None,
                                  fix_type))
            before = self.t
            self._advance()
            step_m = v / 3.6 * (self.t - before).total_seconds()
            heading += float(self.rng.normal(0, 0.2))
            self.lat += step_m * math.cos(heading) / METRES_PER_DEG_LAT
            self.lon += step_m * math.sin(heading) / (METRES_PER_DEG_LAT * math.cos(math.radians(self.lat)))

    def no_fix(self, seconds: float) -> None:
        end = self.t + timedelta(seconds=seconds)
        while self.t < end:
            self.fixes.append(Fix(self.t, 0.0, 0.0, None, 0))
            self._advance()

    def silence(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def key(self, value: float) -> None:
        self.key_changes.append((self.t, value))

    def leg(self) -> None:
        kind = self.rng.choice(["park", "drive", "crawl", "no_fix", "silence"], p=[0.3, 0.35, 0.1, 0.1, 0.15])
        if kind == "park":
            self.key(float(self.rng.choice([0.0, 1.0, 2.0, 3.0])))
            self.park(float(self.rng.choice([60, 200, 400, 1800, 7200])) * float(self.rng.uniform(0.8, 1.2)))
        elif kind == "drive":
            self.key(float(self.rng.choice([4.0, 5.0])))
            self.drive(float(self.rng.uniform(30, 2400)), float(self.rng.uniform(10, 100)))
        elif kind == "crawl":  # around the speed threshold, ignition either way (a tow, a push)
            self.key(float(self.rng.choice([2.0, 4.0])))
            speed_kmh = self.rules.moving_kmh * float(self.rng.uniform(0.5, 1.5))
            self.drive(float(self.rng.uniform(60, 900)), speed_kmh)
        elif kind == "no_fix":
            self.no_fix(float(self.rng.uniform(30, 1200)))
        else:
            self.silence(self.rules.gap_s * float(self.rng.choice([0.5, 0.99, 1.0, 1.5, 3.0])))


def random_ignition(rng: np.random.Generator, track: Track, start: datetime,
                    end: datetime) -> list[tuple[datetime, float]]:
    mode = rng.choice(["none", "changes", "periodic", "before_only", "late"])
    if mode == "none":
        return []
    if mode == "before_only":
        back = IGNITION_LOOKBACK * float(rng.choice([0.5, 1.2]))  # inside / outside the lookback
        return [(start - back, float(rng.choice([2.0, 4.0])))]
    changes = track.key_changes
    if mode == "late":
        changes = changes[len(changes) // 2:]
    if mode != "periodic":
        return changes
    samples, at, value = [], changes[0][0], changes[0][1]
    every = timedelta(seconds=float(rng.choice([30, 300])))
    for when, new in [*changes[1:], (end, changes[-1][1])]:
        while at < when:
            samples.append((at, value))
            at += every
        value = new
    return samples


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    rules = random_rules(rng)
    track = Track(rng, rules)
    track.park(float(rng.uniform(60, 1800)))
    for _ in range(int(rng.integers(3, 14))):
        track.leg()
    first, last = track.fixes[0].time, track.fixes[-1].time
    length = last - first
    # the range from before the track, from its first fix or from inside it
    start = first + length * float(rng.choice([-0.1, 0.0, 0.2]))
    end = last + length * float(rng.choice([-0.2, 0.0, 0.1])) + timedelta(seconds=1)
    case = Case(rules, start, end, track.fixes, random_ignition(rng, track, start, end))
    places = [*track.parks, (float(track.lat), float(track.lon))]
    for i in range(int(rng.integers(0, 4))):
        lat, lon = places[int(rng.integers(0, len(places)))]
        case.points_of_interest.append(PointOfInterest(
            f"poi-{i}", lat + float(rng.normal(0, 100)) / METRES_PER_DEG_LAT, lon,
            float(rng.uniform(30, 500)), str(rng.choice(["home", "work", "dealer"]))))
    return case


def assert_close(got: float, expected: float, what: str) -> None:
    assert got == pytest.approx(expected, rel=REL, abs=1e-9), what


def assert_place(got: Place, expected: Place, what: str) -> None:
    assert_close(got.lat_deg, expected.lat_deg, what + " lat")
    assert_close(got.lon_deg, expected.lon_deg, what + " lon")


def assert_same_trip(got: Trip, expected: Trip, what: str) -> None:
    assert (got.start, got.end) == (expected.start, expected.end), what
    assert_close(got.distance_m, expected.distance_m, what + " distance")
    assert_place(got.start_place, expected.start_place, what + " start")
    assert_place(got.end_place, expected.end_place, what + " end")
    assert got.max_speed_kmh == expected.max_speed_kmh, what


def assert_same_stop(got: Stop, expected: Stop, what: str) -> None:
    fields = ("start", "end", "point_of_interest", "point_of_interest_kind", "data_gap", "last")
    assert [getattr(got, f) for f in fields] == [getattr(expected, f) for f in fields], what
    assert_place(got.place, expected.place, what + " place")


def assert_equal(got: TripsAndStops, expected: TripsAndStops, what: str) -> None:
    assert got.ignition == expected.ignition, what
    assert len(got.trips) == len(expected.trips), f"{what}: {got.trips} != {expected.trips}"
    assert len(got.stops) == len(expected.stops), f"{what}: {got.stops} != {expected.stops}"
    for i, (a, b) in enumerate(zip(got.trips, expected.trips, strict=True)):
        assert_same_trip(a, b, f"{what} trip {i}")
    for i, (c, d) in enumerate(zip(got.stops, expected.stops, strict=True)):
        assert_same_stop(c, d, f"{what} stop {i}")


def test_numpy_trips_and_stops_equal_the_sql_definition(db: Conn) -> None:
    seen = {"trips": 0, "stops": 0, "data_gap": 0, "point_of_interest": 0, "last": 0, "by_ignition": 0,
            "by_speed": 0, "no_max_speed": 0}
    for seed in range(CASES):
        case = random_case(seed)
        device_id = f"gw-rand-{seed}"
        add_device(db, Device(device_id, points_of_interest=tuple(case.points_of_interest)))
        write_fixes(db, device_id, case.fixes)
        write_ignition(db, device_id, case.ignition)
        expected = sql_trips_and_stops(db, device_id, case.start, case.end, case.rules)
        got = trips_and_stops(db, device_id, case.start, case.end, case.rules)
        assert_equal(got, expected, f"seed {seed} ({case.rules})")
        seen["trips"] += len(got.trips)
        seen["stops"] += len(got.stops)
        seen["data_gap"] += sum(s.data_gap for s in got.stops)
        seen["point_of_interest"] += sum(s.point_of_interest is not None for s in got.stops)
        seen["last"] += sum(s.last for s in got.stops)
        seen["by_ignition" if got.ignition else "by_speed"] += 1
        seen["no_max_speed"] += sum(t.max_speed_kmh is None for t in got.trips)
    # the random tracks reach every part of the definition
    assert all(seen.values()), seen
