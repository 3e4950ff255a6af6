"""Trips and stops of one device, computed in numpy from its fixes and its ignition samples.

Definitions (the field's defaults, every one overridable in `TripRules`):

* Consecutive fixes (GNSS fix type other than 0; a row without a fix type counts as a fix) form a
  *segment*. A segment spanning `gap_s` (1 h) or more is a data gap: it ends a trip, nothing is
  inferred across it.
* A segment is *moving* if the ignition (`Vehicle.LowVoltageSystemState` >= ON, the last value
  sent at or before either end, looked for up to `IGNITION_LOOKBACK` before `from`; a parked car's
  bus sleeps after saying OFF) is on at either end. Where neither end has an ignition value yet, or
  for a device that sent no ignition in the range or the lookback, it is moving if the GNSS speed
  (or, without one, the implied speed) at either end is at least `moving_kmh`. Otherwise it is
  *stopped*. Only moving segments count distance (haversine; a parked car's drift is no distance).
* Runs of moving segments separated by stopped runs shorter than `stop_min_s` (a traffic light)
  form a trip candidate; a candidate of at least `trip_min_m` (500 m) and `trip_min_s` (300 s)
  is a trip. Shorter candidates are dropped (a car moved in its own drive).
* A *stop* is the time between two trips (and before the first / after the last, bounded by the
  first and last fix) of at least `stop_min_s` (300 s), located where the earlier trip ended, with
  the nearest registered point of interest it lies in, if any, and whether a data gap lies inside it.

How: under the default classification (1 h gap, 5 km/h, ignition used) the days wholly inside
the range come as the runs packed with each (cloud/analytics/motion.py: a few hundred bytes a day
instead of its every fix), where they are exact for the range: not dirty, packed in the device's
time zone, and the ignition value the day started with is one the range's lookback reaches. The
rest of the range (the days it cuts, and any other) comes as fixes from
`cloud.analytics.track.fetch_fixes`, with the ignition samples of the range and the last one before
it carried onto them (`np.searchsorted`), classified segment by segment with array operations and
cut into runs (`reduceat`); the segment joining two pieces is classified the same way. The runs,
merged where equal, make the candidates, trips and stops. The one SQL statement with window
functions that did this before (#16; now the oracle of tests/cloud/test_analytics_trips_sql_oracle.py
and tests/cloud/test_trip_runs.py) took 240-320 ms for a month at one fix a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import numpy as np
import numpy.typing as npt

from cloud.analytics import motion
from cloud.analytics.common import check_number, check_range, iso
from cloud.analytics.errors import AnalyticsError
from cloud.analytics.motion import (
    EARTH_DIAMETER_KM,
    GAP,
    MOVING,
    RUNS_GAP_S,
    RUNS_MOVING_KMH,
    STOPPED,
    FloatArray,
    Spans,
    TimeArray,
    Track,
    carry_forward,
    changes,
    decode_ignition,
    half_angle,
    ns,
    runs_of,
)
from cloud.analytics.track import NO_FIX, Fixes, fetch_fixes
from cloud.store import track_days
from cloud.store.db import Conn
from cloud.store.track_days import epoch_us


@dataclass(frozen=True)
class TripRules:
    """What makes a trip and a stop (Traccar's defaults: 500 m, 300 s, 300 s, 1 h)."""

    trip_min_m: float = 500.0
    trip_min_s: float = 300.0
    stop_min_s: float = 300.0
    gap_s: float = RUNS_GAP_S
    moving_kmh: float = RUNS_MOVING_KMH
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

    def as_json(self) -> dict[str, float]:
        return {"lat_deg": self.lat_deg, "lon_deg": self.lon_deg}  # dataclasses.asdict deep-copies


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
                       "distance_m": round(t.distance_m, 1), "start_place": t.start_place.as_json(),
                       "end_place": t.end_place.as_json(),
                       "max_speed_kmh": None if t.max_speed_kmh is None else round(t.max_speed_kmh, 1),
                       "avg_speed_kmh": round(t.distance_m / t.duration_s * 3.6, 1) if t.duration_s else None}
                      for t in self.trips],
            "stops": [{"start": iso(s.start), "end": iso(s.end), "duration_s": s.duration_s,
                       "place": s.place.as_json(), "point_of_interest": s.point_of_interest,
                       "point_of_interest_kind": s.point_of_interest_kind, "data_gap": s.data_gap,
                       "last": s.last} for s in self.stops],
        }



# The last ignition value before the range and those inside it, packed like cloud.analytics.track's
# fixes; the literal 42 (IGNITION_SIGNAL_ID) lets the planner prove the partial index of 0007.
_IGNITION: LiteralString = """
    SELECT string_agg(timestamptz_send(time) || float8send(value), ''::bytea ORDER BY time, value) FROM (
        (SELECT time, value FROM signal_samples
         WHERE device_id = %(device)s AND signal_id = 42 AND time >= %(ign_from)s AND time < %(start)s
         ORDER BY time DESC, value DESC LIMIT 1)
        UNION ALL
        SELECT time, value FROM signal_samples
        WHERE device_id = %(device)s AND signal_id = 42 AND time >= %(start)s AND time < %(end)s) ign"""
_POINTS_OF_INTEREST: LiteralString = """
    SELECT name, kind, lat_deg, lon_deg, radius_m FROM points_of_interest
    WHERE device_id = %s ORDER BY name"""
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def trips_and_stops(conn: Conn, device_id: str, start: datetime, end: datetime,
                    rules: TripRules | None = None, *, stops: bool = True) -> TripsAndStops:
    """The trips and stops of `device_id` in [start, end) under `rules` (see the module);
    `stops=False` leaves the stops out (no points-of-interest query: the trips alone)."""
    check_range(start, end)
    rules = rules or TripRules()
    sample_ns, sample_value = _ignition_samples(conn, device_id, start, end) if rules.use_ignition \
        else (np.zeros(0, np.int64), np.zeros(0))
    ignition = len(sample_ns) > 0
    default = (rules.gap_s, rules.moving_kmh, rules.use_ignition) == (RUNS_GAP_S, RUNS_MOVING_KMH, True)
    # Days wholly inside the range come as their packed runs where those are exact for it: the
    # ignition value the day started with is one this range's lookback reaches (or there is none).
    lookback_ns = epoch_us(start - motion.IGNITION_LOOKBACK) * 1000
    packed = [day for day in track_days.usable_runs(conn, device_id, start, end)
              if day.runs.carried_ns is None or day.runs.carried_ns >= lookback_ns] if default else []
    pieces: list[tuple[Spans, npt.NDArray[np.int8], Track, Track]] = []
    at = start
    for day in [*packed, None]:
        stop_at = end if day is None else day.t0
        if stop_at > at:  # the rest of the range from its fixes
            track = _track(fetch_fixes(conn, device_id, at, stop_at, significance=False), sample_ns,
                           sample_value if ignition else None)
            if len(track):
                runs, state = runs_of(track, rules.gap_s, rules.moving_kmh)
                pieces.append((runs, state, _row(track, 0), _row(track, -1)))
        if day is not None:
            if day.runs.fixes:
                pieces.append((day.runs.runs, day.runs.run_state, day.runs.first, day.runs.last))
            at = day.t1
    result = TripsAndStops(ignition=ignition)
    parts: list[Spans] = []
    states: list[npt.NDArray[np.int8]] = []
    for i, (runs, state, first, _) in enumerate(pieces):
        if i:  # the segment from the piece before's last fixed row to this one's first
            before = pieces[i - 1][3]
            joint = Track(np.r_[before.time_ns, first.time_ns], np.r_[before.lat, first.lat],
                          np.r_[before.lon, first.lon], np.r_[before.speed, first.speed],
                          np.r_[_on(before), _on(first)] if ignition else None)
            joint_runs, joint_state = runs_of(joint, rules.gap_s, rules.moving_kmh)
            parts.append(joint_runs)
            states.append(joint_state)
        parts.append(runs)
        states.append(state)
    if not parts or not sum(len(s) for s in states):
        return result  # no segment: neither trip nor stop
    spans, state = Spans.joined(parts), np.concatenate(states)
    first_run = changes(state)
    runs, run_state = spans.merged(first_run), state[first_run]
    long_stop = (run_state == STOPPED) & (runs.end_ns - runs.start_ns >= ns(rules.stop_min_s))
    breaker = (run_state == GAP) | long_stop
    moving = np.flatnonzero(run_state == MOVING)
    # moving runs with no breaker between them (a short stop inside is no distance) make a candidate
    candidates = runs.take(moving).merged(changes(np.cumsum(breaker)[moving]))
    trips = candidates.take(np.flatnonzero(
        (candidates.distance_m >= rules.trip_min_m)
        & (candidates.end_ns - candidates.start_ns >= ns(rules.trip_min_s))))
    result.trips.extend(_trip_list(trips))
    if stops:
        result.stops.extend(_stops(conn, device_id, runs, trips,
                                   runs.take(np.flatnonzero(run_state == GAP)), rules))
    return result


def _track(fixes: Fixes, sample_ns: TimeArray, sample_value: FloatArray | None) -> Track:
    """The fixed rows of `fixes` with the ignition carried onto them (None: not used)."""
    fixed = fixes.fix_type != NO_FIX
    time_ns = fixes.time_ns[fixed]
    on = None if sample_value is None else carry_forward(sample_ns, sample_value, time_ns)
    speed = fixes.speed_kmh[fixed].astype(np.float64)
    return Track(time_ns, fixes.lat_deg[fixed], fixes.lon_deg[fixed], speed, on)


def _row(track: Track, at: int) -> Track:
    """Row `at` of `track` alone."""
    rows = slice(at, (at + 1) or None)
    return Track(track.time_ns[rows], track.lat[rows], track.lon[rows], track.speed[rows],
                 None if track.state_on is None else track.state_on[rows])


def _on(row: Track) -> FloatArray:
    return row.state_on if row.state_on is not None else np.full(len(row), np.nan)


def _trip_list(trips: Spans) -> list[Trip]:
    return [Trip(_instant(t0), _instant(t1), d, Place(lat0, lon0), Place(lat1, lon1), _speed(v))
            for t0, t1, d, lat0, lon0, lat1, lon1, v in zip(
                trips.start_ns.tolist(), trips.end_ns.tolist(), trips.distance_m.tolist(),
                trips.start_lat.tolist(), trips.start_lon.tolist(), trips.end_lat.tolist(),
                trips.end_lon.tolist(), trips.max_speed_kmh.tolist(), strict=True)]


def _speed(value: float) -> float | None:
    """A stored (float4) speed as PostgreSQL reads it out: its shortest decimal digits; NaN: none."""
    return None if value != value else float(str(np.float32(value)))


def _stops(conn: Conn, device_id: str, segments: Spans, trips: Spans, gaps: Spans,
           rules: TripRules) -> list[Stop]:
    """The stops before, between and after the trips, bounded by the first and the last fix."""
    start_ns = np.r_[segments.start_ns[:1], trips.end_ns]
    end_ns = np.r_[trips.start_ns, segments.end_ns[-1:]]
    lat, lon = np.r_[segments.start_lat[:1], trips.end_lat], np.r_[segments.start_lon[:1], trips.end_lon]
    last = np.arange(len(start_ns)) == len(start_ns) - 1
    kept = np.flatnonzero(end_ns - start_ns >= ns(rules.stop_min_s))
    start_ns, end_ns, lat, lon, last = start_ns[kept], end_ns[kept], lat[kept], lon[kept], last[kept]
    # gap runs are disjoint and in order: the first one starting inside a stop ends first
    at = np.searchsorted(gaps.start_ns, start_ns)
    data_gap = (at < len(gaps.start_ns)) & (gaps.end_ns[np.minimum(at, len(gaps.end_ns) - 1)] <= end_ns) \
        if len(gaps.start_ns) else np.zeros(len(kept), bool)
    places = _points_of_interest(conn, device_id, lat, lon)
    return [Stop(_instant(t0), _instant(t1), Place(la, lo), name, kind, gap, is_last)
            for t0, t1, la, lo, (name, kind), gap, is_last in zip(
                start_ns.tolist(), end_ns.tolist(), lat.tolist(), lon.tolist(), places, data_gap.tolist(),
                last.tolist(), strict=True)]


def _points_of_interest(conn: Conn, device_id: str, lat: FloatArray,
                        lon: FloatArray) -> list[tuple[str | None, str | None]]:
    """(name, kind) of the nearest point of interest of the device each place lies in, else Nones."""
    rows = conn.execute(_POINTS_OF_INTEREST, (device_id,)).fetchall() if len(lat) else []
    if not rows:
        return [(None, None)] * len(lat)
    names, kinds, poi_lat, poi_lon, radius_m = zip(*rows, strict=True)
    km = EARTH_DIAMETER_KM * half_angle(np.array(poi_lat)[None, :], np.array(poi_lon)[None, :],
                                         lat[:, None], lon[:, None])
    km = np.where(km * 1000 <= np.array(radius_m)[None, :], km, np.inf)
    nearest = np.argmin(km, axis=1).tolist()
    return [(names[k], kinds[k]) if km[i, k] < np.inf else (None, None) for i, k in enumerate(nearest)]


def _instant(ns: int) -> datetime:
    return _UNIX_EPOCH + timedelta(microseconds=ns // 1000)


def _ignition_samples(conn: Conn, device_id: str, start: datetime,
                      end: datetime) -> tuple[TimeArray, FloatArray]:
    """Ignition sample times (ns, ascending, one per instant) and values; empty: none is sent."""
    row = conn.execute(_IGNITION, {"device": device_id, "start": start, "end": end,
                                   "ign_from": start - motion.IGNITION_LOOKBACK}, binary=True).fetchone()
    return decode_ignition(bytes(row[0]) if row is not None and row[0] is not None else b"")
