"""Motion of a car between its fixes: each segment (two consecutive fixes) stopped, moving or a
data gap, runs of equal segments, and a day's runs packed with its track (cloud/store/track_days.py).

`cloud.analytics.trips` defines trips and stops on these runs (see its module for the rules).
A day's runs, computed when the receiver packs the day under the default classification
(`RUNS_GAP_S`, `RUNS_MOVING_KMH`, ignition used), let a month's trips read ~30 small values
instead of every fix of the month (78 MB at one fix a second). They are exact for a range that
wholly contains the day: runs depend on the day's fixes and on the ignition value carried into
it, and the receiver marks a day dirty (to be packed again) when fixes or ignition samples that
reach it arrive (`cloud/ingest/writer.py`). `DayRuns.carried_ns` says which ignition value the
day started with, so a range whose ignition lookback does not reach it reads the day's fixes.

Packed format 1 (little-endian): a `HEAD` (format, fixed rows, carried ignition time, the first
and last fixed rows: time, lat, lon, speed, ignition value), then `RUN` rows in time order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.store.copybin import PG_EPOCH_US
from cloud.store.errors import StoreError

IGNITION_SIGNAL_ID = 42  # Vehicle.LowVoltageSystemState: 0 UNDEFINED, 1 LOCK, 2 OFF, 3 ACC, 4 ON, 5 START
IGNITION_ON = 4
IGNITION_LOOKBACK = timedelta(days=7)  # how far before `from` the last ignition value is looked for
# lienwatch_haversine_km (migration 0001): 2 x the mean Earth radius, 6371.0088 km
EARTH_DIAMETER_KM = 2 * 6371.0088
EARTH_DIAMETER_M = 12_742_017.6
RUNS_GAP_S = 3600.0  # the classification a day's packed runs are computed under (TripRules' defaults)
RUNS_MOVING_KMH = 5.0

# Segment states.
STOPPED, MOVING, GAP = 0, 1, 2

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.int64]

SAMPLE = np.dtype([("time", ">i8"), ("value", ">f8")])  # ignition samples as the server packs them
RUNS_FORMAT = 1
NO_TIME = np.iinfo(np.int64).min
_END = np.dtype([("time_ns", "<i8"), ("lat", "<f8"), ("lon", "<f8"), ("speed", "<f8"), ("on", "<f8")])
HEAD = np.dtype([("format", "<i2"), ("fixes", "<i4"), ("carried_ns", "<i8"), ("first", _END), ("last", _END)])
RUN = np.dtype([("state", "<i1"), ("start_ns", "<i8"), ("end_ns", "<i8"), ("start_lat", "<f8"),
                ("start_lon", "<f8"), ("end_lat", "<f8"), ("end_lon", "<f8"), ("distance_m", "<f8"),
                ("max_speed_kmh", "<f8")])


@dataclass(frozen=True)
class Spans:
    """Spans of time over the segments (segments, runs, trips) as columns."""

    start_ns: TimeArray
    end_ns: TimeArray
    start_lat: FloatArray
    start_lon: FloatArray
    end_lat: FloatArray
    end_lon: FloatArray
    distance_m: FloatArray
    max_speed_kmh: FloatArray  # NaN: no speed reported

    def take(self, index: npt.NDArray[np.intp]) -> Spans:
        return Spans(self.start_ns[index], self.end_ns[index], self.start_lat[index], self.start_lon[index],
                     self.end_lat[index], self.end_lon[index], self.distance_m[index],
                     self.max_speed_kmh[index])

    def merged(self, first: npt.NDArray[np.intp]) -> Spans:
        """One span per group of consecutive spans, the groups starting at the indices `first`."""
        if not len(first):
            return self.take(first)
        last = np.r_[first[1:] - 1, len(self.start_ns) - 1]
        return Spans(self.start_ns[first], self.end_ns[last], self.start_lat[first], self.start_lon[first],
                     self.end_lat[last], self.end_lon[last], np.add.reduceat(self.distance_m, first),
                     np.fmax.reduceat(self.max_speed_kmh, first))

    @staticmethod
    def joined(parts: list[Spans]) -> Spans:
        return Spans(*(np.concatenate([getattr(p, name) for p in parts]) for name in _SPAN_FIELDS))


_SPAN_FIELDS = ("start_ns", "end_ns", "start_lat", "start_lon", "end_lat", "end_lon", "distance_m",
                "max_speed_kmh")


def changes(key: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Indices where `key` differs from the element before it (0 included when not empty)."""
    if not len(key):
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.r_[True, key[1:] != key[:-1]])


def ns(seconds: float) -> int:
    """A rule's duration in nanoseconds, rounded to the microsecond as PostgreSQL's interval was."""
    return timedelta(seconds=seconds) // timedelta(microseconds=1) * 1000


def half_angle(lat0: FloatArray, lon0: FloatArray, lat1: FloatArray, lon1: FloatArray) -> FloatArray:
    """Half the central angle (radians) between the points: the haversine of the SQL function."""
    h = (np.square(np.sin(np.radians(lat1 - lat0) / 2)) + np.cos(np.radians(lat0)) * np.cos(np.radians(lat1))
         * np.square(np.sin(np.radians(lon1 - lon0) / 2)))
    angle: FloatArray = np.arcsin(np.sqrt(np.minimum(h, 1.0)))  # min: rounding past 1 (antipodes)
    return angle


def decode_ignition(data: bytes) -> tuple[TimeArray, FloatArray]:
    """Ignition samples packed as `SAMPLE` rows in time order (then value) as times (ns, one per
    instant: the largest value of an instant) and values (NaN as +inf: PostgreSQL orders NaN
    above every number, so NaN >= ON)."""
    if len(data) % SAMPLE.itemsize:
        raise StoreError("packed ignition samples are not of the expected width")
    samples = np.frombuffer(data, dtype=SAMPLE)
    time_ns = (samples["time"].astype(np.int64) + PG_EPOCH_US) * 1000
    value = np.nan_to_num(samples["value"].astype(np.float64), nan=np.inf)
    last_of_instant = np.flatnonzero(np.r_[time_ns[1:] != time_ns[:-1], True][:len(time_ns)])
    return time_ns[last_of_instant], value[last_of_instant]


def carry_forward(sample_ns: TimeArray, value: FloatArray, time_ns: TimeArray) -> FloatArray:
    """The last sample value at or before each time; NaN before the first sample."""
    if not len(sample_ns):
        return np.full(len(time_ns), np.nan)
    at = np.searchsorted(sample_ns, time_ns, side="right") - 1
    return np.where(at >= 0, value[np.maximum(at, 0)], np.nan)


def classify(time_ns: TimeArray, lat: FloatArray, lon: FloatArray, speed: FloatArray,
             state_on: FloatArray | None, gap_s: float,
             moving_kmh: float) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Each segment's state (STOPPED, MOVING, GAP) and driven distance (m, moving segments only)."""
    dt_ns = np.diff(time_ns)
    gap = dt_ns >= ns(gap_s)
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
        km = EARTH_DIAMETER_KM * half_angle(lat[i], lon[i], lat[j], lon[j])
        with np.errstate(divide="ignore", invalid="ignore"):
            implied = np.where(dt_s > 0, km * 3600 / dt_s, np.nan)
        v0[i] = np.where(np.isnan(v0[i]), implied, v0[i])
        v1[i] = np.where(np.isnan(v1[i]), implied, v1[i])
    state[by_speed & (np.fmax(v0, v1) >= moving_kmh)] = MOVING
    distance_m = np.zeros(len(dt_ns))
    moving = np.flatnonzero(state == MOVING)
    distance_m[moving] = EARTH_DIAMETER_M * half_angle(lat[moving], lon[moving], lat[moving + 1],
                                                       lon[moving + 1])
    return state, distance_m


@dataclass(frozen=True)
class Track:
    """Fixed rows in time order with the ignition value carried onto each (NaN: none known)."""

    time_ns: TimeArray
    lat: FloatArray
    lon: FloatArray
    speed: FloatArray  # NaN: none reported
    state_on: FloatArray | None  # None: the ignition is not used

    def __len__(self) -> int:
        return len(self.time_ns)


def runs_of(track: Track, gap_s: float, moving_kmh: float) -> tuple[Spans, npt.NDArray[np.int8]]:
    """The runs of equal segments of `track` and their states (none with fewer than two fixes)."""
    if len(track) < 2:
        return _no_spans(), np.zeros(0, np.int8)
    state, distance_m = classify(track.time_ns, track.lat, track.lon, track.speed, track.state_on, gap_s,
                                 moving_kmh)
    segments = Spans(track.time_ns[:-1], track.time_ns[1:], track.lat[:-1], track.lon[:-1], track.lat[1:],
                     track.lon[1:], distance_m, np.fmax(track.speed[:-1], track.speed[1:]))
    first = changes(state)
    return segments.merged(first), state[first]


def _no_spans() -> Spans:
    empty_t, empty_f = np.zeros(0, np.int64), np.zeros(0)
    return Spans(empty_t, empty_t, empty_f, empty_f, empty_f, empty_f, empty_f, empty_f)


@dataclass(frozen=True)
class DayRuns:
    """A packed day's runs under the default classification, its first and last fixed rows (with
    their carried ignition values) and the time of the ignition sample carried into it."""

    runs: Spans
    run_state: npt.NDArray[np.int8]
    fixes: int
    carried_ns: int | None  # the last ignition sample before the day (None: there is none)
    first: Track  # one row each (empty: the day has no fixed row)
    last: Track


def pack_runs(track: Track, carried_ns: int | None) -> bytes:
    """Format 1 bytes of a day's `track` (default classification) and its carried ignition time."""
    runs, run_state = runs_of(track, RUNS_GAP_S, RUNS_MOVING_KMH)
    head = np.zeros(1, dtype=HEAD)
    head["format"], head["fixes"] = RUNS_FORMAT, len(track)
    head["carried_ns"] = NO_TIME if carried_ns is None else carried_ns
    on = track.state_on if track.state_on is not None else np.full(len(track), np.nan)
    for end, at in (("first", 0), ("last", len(track) - 1)):
        if len(track):
            head[end] = (track.time_ns[at], track.lat[at], track.lon[at], track.speed[at], on[at])
    rows = np.empty(len(run_state), dtype=RUN)
    rows["state"] = run_state
    for name in _SPAN_FIELDS:
        rows[name] = getattr(runs, name)
    return head.tobytes() + rows.tobytes()


def unpack_runs(data: bytes) -> DayRuns:
    """The `DayRuns` of a format 1 value (`StoreError` if it is not one)."""
    if len(data) < HEAD.itemsize or (len(data) - HEAD.itemsize) % RUN.itemsize:
        raise StoreError(f"packed runs of {len(data)} bytes are not a head and whole "
                         f"{RUN.itemsize}-byte runs")
    head = np.frombuffer(data, dtype=HEAD, count=1)[0]
    if int(head["format"]) != RUNS_FORMAT:
        raise StoreError(f"packed runs of format {int(head['format'])}, not {RUNS_FORMAT}")
    rows = np.frombuffer(data, dtype=RUN, offset=HEAD.itemsize)
    runs = Spans(*(np.ascontiguousarray(rows[name]) for name in _SPAN_FIELDS))
    fixes = int(head["fixes"])
    if fixes < 0 or (fixes < 2) != (len(rows) == 0):
        raise StoreError(f"packed runs: {len(rows)} runs for {fixes} fixed rows")

    def end(name: str) -> Track:
        row = head[name]
        count = 1 if fixes else 0
        return Track(np.full(count, row["time_ns"], np.int64), np.full(count, row["lat"]),
                     np.full(count, row["lon"]), np.full(count, row["speed"]), np.full(count, row["on"]))

    carried = int(head["carried_ns"])
    return DayRuns(runs, np.ascontiguousarray(rows["state"]).astype(np.int8), fixes,
                   None if carried == NO_TIME else carried, end("first"), end("last"))
