"""Trips and stops of one device, computed in PostgreSQL with window functions.

Definitions (the field's defaults, every one overridable in `TripRules`):

* Consecutive fixes (GNSS fix type other than 0) form a *segment*. A segment spanning
  `gap_s` (1 h) or more is a data gap: it ends a trip, nothing is inferred across it.
* A segment is *moving* if the ignition (`Vehicle.LowVoltageSystemState` >= ON, the last value
  sent before either end; a parked car's bus sleeps after saying OFF) is on at either end; for a
  device that sends no ignition, if the GNSS speed (or, without one, the implied speed) at either
  end is at least `moving_kmh`. Otherwise it is *stopped*.
* Runs of moving segments separated by stopped runs shorter than `stop_min_s` (a traffic light)
  form a trip candidate; a candidate of at least `trip_min_m` (500 m) and `trip_min_s` (300 s)
  is a trip. Shorter candidates are dropped (a car moved in its own drive).
* A *stop* is the time between two trips (and before the first / after the last, bounded by the
  first and last fix) of at least `stop_min_s` (300 s), located where the earlier trip ended, with
  the registered point of interest it lies in, if any, and whether a data gap lies inside it.

One query per call; the database reads the device's positions of the range once (its
(device_id, time) index) and its ignition samples through the partial index of migration 0007.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, LiteralString

from cloud.analytics.common import check_number, check_range, iso
from cloud.analytics.errors import AnalyticsError
from cloud.store.db import Conn

IGNITION_SIGNAL_ID = 42  # Vehicle.LowVoltageSystemState: 0 UNDEFINED, 1 LOCK, 2 OFF, 3 ACC, 4 ON, 5 START
IGNITION_ON = 4
IGNITION_LOOKBACK = timedelta(days=7)  # how far before `from` the last ignition value is looked for


@dataclass(frozen=True)
class TripRules:
    """What makes a trip and a stop (Traccar's defaults: 500 m, 300 s, 300 s, 1 h)."""

    trip_min_m: float = 500.0
    trip_min_s: float = 300.0
    stop_min_s: float = 300.0
    gap_s: float = 3600.0
    moving_kmh: float = 5.0
    use_ignition: bool = True

    def __post_init__(self) -> None:
        check_number("trip_min_m", self.trip_min_m, 0.0, 1_000_000.0)
        check_number("trip_min_s", self.trip_min_s, 0.0, 7 * 86_400.0)
        check_number("stop_min_s", self.stop_min_s, 1.0, 7 * 86_400.0)
        check_number("gap_s", self.gap_s, 1.0, 7 * 86_400.0)
        check_number("moving_kmh", self.moving_kmh, 0.1, 300.0)
        if not isinstance(self.use_ignition, bool):
            raise AnalyticsError(f"use_ignition must be true or false (got {self.use_ignition!r})")


@dataclass(frozen=True)
class Place:
    lat_deg: float
    lon_deg: float


@dataclass(frozen=True)
class Trip:
    start: datetime
    end: datetime
    distance_m: float
    start_place: Place
    end_place: Place
    max_speed_kmh: float | None

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Stop:
    start: datetime
    end: datetime
    place: Place
    point_of_interest: str | None = None
    point_of_interest_kind: str | None = None
    data_gap: bool = False  # a data gap of gap_s or more lies inside the stop
    last: bool = False  # the stop lasts until the last fix of the range (the car may still be there)

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class TripsAndStops:
    trips: list[Trip] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    ignition: bool = False  # whether the device's ignition decided motion

    def as_json(self) -> dict[str, Any]:
        return {
            "motion_from": "ignition" if self.ignition else "speed",
            "trips": [{"start": iso(t.start), "end": iso(t.end), "duration_s": t.duration_s,
                       "distance_m": round(t.distance_m, 1), "start_place": asdict(t.start_place),
                       "end_place": asdict(t.end_place),
                       "max_speed_kmh": None if t.max_speed_kmh is None else round(t.max_speed_kmh, 1),
                       "avg_speed_kmh": round(t.distance_m / t.duration_s * 3.6, 1) if t.duration_s else None}
                      for t in self.trips],
            "stops": [{"start": iso(s.start), "end": iso(s.end), "duration_s": s.duration_s,
                       "place": asdict(s.place), "point_of_interest": s.point_of_interest,
                       "point_of_interest_kind": s.point_of_interest_kind, "data_gap": s.data_gap,
                       "last": s.last} for s in self.stops],
        }


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


def trips_and_stops(conn: Conn, device_id: str, start: datetime, end: datetime,
                    rules: TripRules | None = None) -> TripsAndStops:
    """The trips and stops of `device_id` in [start, end) under `rules` (see the module)."""
    check_range(start, end)
    rules = rules or TripRules()
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
