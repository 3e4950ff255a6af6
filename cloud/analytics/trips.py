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

How: the fixes come as numpy columns from `cloud.analytics.track.fetch_fixes`; the ignition
samples of the range and the last one before it from one small query (the partial index of
migration 0007), carried onto the fixes with `np.searchsorted`. Every segment is classified at
once with array operations, the trigonometry only where it is needed (distances of moving
segments; the implied speed where a fix has no speed); state changes cut the segments into runs
(`reduceat`), and the few runs make the candidates, trips and stops. A month at one fix a minute
is about 5 ms of numpy after `fetch_fixes`; the one SQL statement with window functions that did
this before (#16; now the oracle of tests/cloud/test_analytics_trips_sql_oracle.py) took 240-320 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import numpy as np
import numpy.typing as npt

from cloud.analytics.common import check_number, check_range, iso
from cloud.analytics.errors import AnalyticsError
from cloud.analytics.track import NO_FIX, fetch_fixes
from cloud.store.copybin import PG_EPOCH_US
from cloud.store.db import Conn
from cloud.store.errors import StoreError

IGNITION_SIGNAL_ID = 42  # Vehicle.LowVoltageSystemState: 0 UNDEFINED, 1 LOCK, 2 OFF, 3 ACC, 4 ON, 5 START
IGNITION_ON = 4
IGNITION_LOOKBACK = timedelta(days=7)  # how far before `from` the last ignition value is looked for
# lienwatch_haversine_km (migration 0001): 2 x the mean Earth radius, 6371.0088 km
EARTH_DIAMETER_KM = 2 * 6371.0088
EARTH_DIAMETER_M = 12_742_017.6

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



# Segment states.
STOPPED, MOVING, GAP = 0, 1, 2

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.int64]

_SAMPLE = np.dtype([("time", ">i8"), ("value", ">f8")])
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
    fixes = fetch_fixes(conn, device_id, start, end, significance=False)
    fixed = fixes.fix_type != NO_FIX
    time_ns, lat, lon = fixes.time_ns[fixed], fixes.lat_deg[fixed], fixes.lon_deg[fixed]
    result = TripsAndStops(ignition=ignition)
    if len(time_ns) < 2:
        return result  # no segment: neither trip nor stop
    speed = fixes.speed_kmh[fixed].astype(np.float64)
    state_on = _carry_forward(sample_ns, sample_value, time_ns) if ignition else None
    state, distance_m = _classify(time_ns, lat, lon, speed, state_on, rules)
    segments = _Spans(time_ns[:-1], time_ns[1:], lat[:-1], lon[:-1], lat[1:], lon[1:], distance_m,
                      np.fmax(speed[:-1], speed[1:]))
    first = _changes(state)
    runs, run_state = segments.merged(first), state[first]
    long_stop = (run_state == STOPPED) & (runs.end_ns - runs.start_ns >= _ns(rules.stop_min_s))
    breaker = (run_state == GAP) | long_stop
    moving = np.flatnonzero(run_state == MOVING)
    # moving runs with no breaker between them (a short stop inside is no distance) make a candidate
    candidates = runs.take(moving).merged(_changes(np.cumsum(breaker)[moving]))
    trips = candidates.take(np.flatnonzero(
        (candidates.distance_m >= rules.trip_min_m)
        & (candidates.end_ns - candidates.start_ns >= _ns(rules.trip_min_s))))
    result.trips.extend(_trip_list(trips))
    if stops:
        result.stops.extend(_stops(conn, device_id, segments, trips,
                                   runs.take(np.flatnonzero(run_state == GAP)), rules))
    return result


@dataclass(frozen=True)
class _Spans:
    """Spans of time over the segments (segments, runs, trips) as columns."""

    start_ns: TimeArray
    end_ns: TimeArray
    start_lat: FloatArray
    start_lon: FloatArray
    end_lat: FloatArray
    end_lon: FloatArray
    distance_m: FloatArray
    max_speed_kmh: FloatArray  # NaN: no speed reported

    def take(self, index: npt.NDArray[np.intp]) -> _Spans:
        return _Spans(self.start_ns[index], self.end_ns[index], self.start_lat[index], self.start_lon[index],
                      self.end_lat[index], self.end_lon[index], self.distance_m[index],
                      self.max_speed_kmh[index])

    def merged(self, first: npt.NDArray[np.intp]) -> _Spans:
        """One span per group of consecutive spans, the groups starting at the indices `first`."""
        if not len(first):
            return self.take(first)
        last = np.r_[first[1:] - 1, len(self.start_ns) - 1]
        return _Spans(self.start_ns[first], self.end_ns[last], self.start_lat[first], self.start_lon[first],
                      self.end_lat[last], self.end_lon[last], np.add.reduceat(self.distance_m, first),
                      np.fmax.reduceat(self.max_speed_kmh, first))


def _changes(key: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Indices where `key` differs from the element before it (0 included when not empty)."""
    if not len(key):
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.r_[True, key[1:] != key[:-1]])


def _trip_list(trips: _Spans) -> list[Trip]:
    return [Trip(_instant(t0), _instant(t1), d, Place(lat0, lon0), Place(lat1, lon1), _speed(v))
            for t0, t1, d, lat0, lon0, lat1, lon1, v in zip(
                trips.start_ns.tolist(), trips.end_ns.tolist(), trips.distance_m.tolist(),
                trips.start_lat.tolist(), trips.start_lon.tolist(), trips.end_lat.tolist(),
                trips.end_lon.tolist(), trips.max_speed_kmh.tolist(), strict=True)]


def _speed(value: float) -> float | None:
    """A stored (float4) speed as PostgreSQL reads it out: its shortest decimal digits; NaN: none."""
    return None if value != value else float(str(np.float32(value)))


def _stops(conn: Conn, device_id: str, segments: _Spans, trips: _Spans, gaps: _Spans,
           rules: TripRules) -> list[Stop]:
    """The stops before, between and after the trips, bounded by the first and the last fix."""
    start_ns = np.r_[segments.start_ns[:1], trips.end_ns]
    end_ns = np.r_[trips.start_ns, segments.end_ns[-1:]]
    lat, lon = np.r_[segments.start_lat[:1], trips.end_lat], np.r_[segments.start_lon[:1], trips.end_lon]
    last = np.arange(len(start_ns)) == len(start_ns) - 1
    kept = np.flatnonzero(end_ns - start_ns >= _ns(rules.stop_min_s))
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
    km = EARTH_DIAMETER_KM * _half_angle(np.array(poi_lat)[None, :], np.array(poi_lon)[None, :],
                                         lat[:, None], lon[:, None])
    km = np.where(km * 1000 <= np.array(radius_m)[None, :], km, np.inf)
    nearest = np.argmin(km, axis=1).tolist()
    return [(names[k], kinds[k]) if km[i, k] < np.inf else (None, None) for i, k in enumerate(nearest)]


def _ns(seconds: float) -> int:
    """A rule's duration in nanoseconds, rounded to the microsecond as PostgreSQL's interval was."""
    return timedelta(seconds=seconds) // timedelta(microseconds=1) * 1000


def _instant(ns: int) -> datetime:
    return _UNIX_EPOCH + timedelta(microseconds=ns // 1000)


def _ignition_samples(conn: Conn, device_id: str, start: datetime,
                      end: datetime) -> tuple[TimeArray, FloatArray]:
    """Ignition sample times (ns, ascending, one per instant) and values; empty: none is sent."""
    row = conn.execute(_IGNITION, {"device": device_id, "start": start, "end": end,
                                   "ign_from": start - IGNITION_LOOKBACK}, binary=True).fetchone()
    data = bytes(row[0]) if row is not None and row[0] is not None else b""
    if len(data) % _SAMPLE.itemsize:
        raise StoreError("trips_and_stops(): packed ignition samples are not of the expected width")
    samples = np.frombuffer(data, dtype=_SAMPLE)
    time_ns = (samples["time"].astype(np.int64) + PG_EPOCH_US) * 1000
    # PostgreSQL orders NaN above every number (so NaN >= ON): as +inf here
    value = np.nan_to_num(samples["value"].astype(np.float64), nan=np.inf)
    last_of_instant = np.flatnonzero(np.r_[time_ns[1:] != time_ns[:-1], True][:len(time_ns)])
    return time_ns[last_of_instant], value[last_of_instant]  # sorted by value: the largest of an instant


def _carry_forward(sample_ns: TimeArray, value: FloatArray, time_ns: TimeArray) -> FloatArray:
    """The last sample value at or before each time; NaN before the first sample."""
    at = np.searchsorted(sample_ns, time_ns, side="right") - 1
    return np.where(at >= 0, value[np.maximum(at, 0)], np.nan)


def _half_angle(lat0: FloatArray, lon0: FloatArray, lat1: FloatArray, lon1: FloatArray) -> FloatArray:
    """Half the central angle (radians) between the points: the haversine of the SQL function."""
    h = (np.square(np.sin(np.radians(lat1 - lat0) / 2)) + np.cos(np.radians(lat0)) * np.cos(np.radians(lat1))
         * np.square(np.sin(np.radians(lon1 - lon0) / 2)))
    angle: FloatArray = np.arcsin(np.sqrt(np.minimum(h, 1.0)))  # min: rounding past 1 (antipodes)
    return angle


def _classify(time_ns: TimeArray, lat: FloatArray, lon: FloatArray, speed: FloatArray,
              state_on: FloatArray | None, rules: TripRules) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Each segment's state (STOPPED, MOVING, GAP) and driven distance (m, moving segments only)."""
    dt_ns = np.diff(time_ns)
    gap = dt_ns >= _ns(rules.gap_s)
    state = np.where(gap, GAP, STOPPED).astype(np.int8)
    by_speed = ~gap
    if state_on is not None:
        on0, on1 = state_on[:-1], state_on[1:]
        by_ignition = by_speed & ~(np.isnan(on0) & np.isnan(on1))
        state[by_ignition & ((on0 >= IGNITION_ON) | (on1 >= IGNITION_ON))] = MOVING
        by_speed &= ~by_ignition
    v0, v1 = speed[:-1].copy(), speed[1:].copy()
    # the implied speed (and its trigonometry) only where a fix has no speed
    implied_at = np.flatnonzero(by_speed & (np.isnan(v0) | np.isnan(v1)))
    if len(implied_at):
        i, j = implied_at, implied_at + 1
        dt_s = dt_ns[implied_at] / 1e9
        km = EARTH_DIAMETER_KM * _half_angle(lat[i], lon[i], lat[j], lon[j])
        with np.errstate(divide="ignore", invalid="ignore"):
            implied = np.where(dt_s > 0, km * 3600 / dt_s, np.nan)
        v0[i] = np.where(np.isnan(v0[i]), implied, v0[i])
        v1[i] = np.where(np.isnan(v1[i]), implied, v1[i])
    state[by_speed & (np.fmax(v0, v1) >= rules.moving_kmh)] = MOVING
    distance_m = np.zeros(len(dt_ns))
    moving = np.flatnonzero(state == MOVING)
    distance_m[moving] = EARTH_DIAMETER_M * _half_angle(lat[moving], lon[moving], lat[moving + 1],
                                                        lon[moving + 1])
    return state, distance_m
