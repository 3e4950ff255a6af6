"""Track playback as GeoJSON: the fixes of one device and time range, simplified on request.

The fixes come packed by the server into one bytea (as `cloud.store.tracks`, plus the fix type),
so a month at one fix a minute is one value and one `numpy.frombuffer`. Output, a
FeatureCollection (RFC 7946, longitude first):

* one LineString (`kind: "track"`) through the kept fixes, and one Point per kept fix
  (`kind: "fix"`) with its `time` and `speed_kmh`;
* one Point per stretch without a GNSS fix (`kind: "no_fix"`, fix type 0): where the car was last
  known (`position: "last_known"`, geometry null if nothing was known before), `from`, `to` (the
  next fix) and the number of fix-less rows. Fix-less rows never enter the line; the fixes on each
  side of a stretch are always kept, so the line's vertices bracket it;
* on request, one Point per event in the range (`kind: "event"`), at the position the event
  reported, else at the last fix before it (`position: "track"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from cloud.analytics.common import check_number, check_range, iso, iso_times
from cloud.analytics.simplify import simplify
from cloud.store.copybin import PG_EPOCH_US
from cloud.store.db import Conn
from cloud.store.errors import StoreError

MAX_TOLERANCE_M = 10_000.0
NO_FIX = 0
MAX_EVENTS = 5000
_FIX = np.dtype([("time", ">i8"), ("lat", ">f8"), ("lon", ">f8"), ("speed", ">f4"), ("fix", ">i2")])
_QUERY = """
    SELECT string_agg(timestamptz_send(time) || float8send(lat_deg) || float8send(lon_deg)
                      || float4send(coalesce(speed_kmh, 'NaN'::real))
                      || int2send(coalesce(fix_type, -1::smallint)), ''::bytea ORDER BY time)
    FROM positions WHERE device_id = %s AND time >= %s AND time < %s"""
_EVENTS = """
    SELECT e.time, e.event_id, e.detector, e.severity, e.transition, e.lat_deg, e.lon_deg,
           e.speed_kmh, e.detail, l.state
    FROM events e LEFT JOIN event_lifecycle l ON l.device_id = e.device_id AND l.event_time = e.time
        AND l.boot_id = e.boot_id AND l.seq = e.seq
    WHERE e.device_id = %s AND e.time >= %s AND e.time < %s ORDER BY e.time LIMIT %s"""


@dataclass(frozen=True)
class Fixes:
    """Stored positions in time order; `fix_type` -1 where none was stored."""

    time_ns: npt.NDArray[np.int64]
    lat_deg: npt.NDArray[np.float64]
    lon_deg: npt.NDArray[np.float64]
    speed_kmh: npt.NDArray[np.float32]
    fix_type: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return len(self.time_ns)


def fetch_fixes(conn: Conn, device_id: str, start: datetime, end: datetime) -> Fixes:
    """The positions of `device_id` with start <= time < end, as numpy columns."""
    row = conn.execute(_QUERY, (device_id, start, end), binary=True).fetchone()
    data = bytes(row[0]) if row is not None and row[0] is not None else b""
    if len(data) % _FIX.itemsize:
        raise StoreError("fetch_fixes(): packed fixes are not of the expected width")
    fixes = np.frombuffer(data, dtype=_FIX)
    return Fixes((fixes["time"].astype(np.int64) + PG_EPOCH_US) * 1000, fixes["lat"].astype(np.float64),
                 fixes["lon"].astype(np.float64), fixes["speed"].astype(np.float32),
                 fixes["fix"].astype(np.int16))


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[first, last] index pairs of the runs of True in `mask`."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist(),
                    strict=True))


def _speed(value: float) -> float | None:
    return None if value != value else round(value, 1)


def playback(conn: Conn, device_id: str, start: datetime, end: datetime, *,
             tolerance_m: float | None = None, events: bool = False) -> dict[str, Any]:
    """The track of `device_id` in [start, end) as a GeoJSON FeatureCollection (see the module)."""
    check_range(start, end)
    if tolerance_m is not None:
        check_number("tolerance_m", tolerance_m, 0.0, MAX_TOLERANCE_M)
    fixes = fetch_fixes(conn, device_id, start, end)
    has_fix = fixes.fix_type != NO_FIX
    fixed = np.flatnonzero(has_fix)
    gaps: list[dict[str, Any]] = []
    forced = np.zeros(len(fixed), dtype=bool)
    no_fix = _runs(~has_fix)
    times = fixes.time_ns
    for first, last in no_fix:
        before = first - 1  # rows before `first` are fixed (runs are maximal)
        after = last + 1 if last + 1 < len(fixes) else None
        at = np.searchsorted(fixed, first)  # index in `fixed` of the first fix after the stretch
        if at > 0:
            forced[at - 1] = True
        if at < len(fixed):
            forced[at] = True
        geometry = None if before < 0 else {
            "type": "Point", "coordinates": [round(float(fixes.lon_deg[before]), 6),
                                             round(float(fixes.lat_deg[before]), 6)]}
        end_ns = int(times[after] if after is not None else times[last])
        gaps.append({"type": "Feature", "geometry": geometry, "properties": {
            "kind": "no_fix", "position": "unknown" if before < 0 else "last_known",
            "from": iso_times(times[first:first + 1])[0],
            "to": iso_times(np.array([end_ns], dtype=np.int64))[0],
            "duration_s": round((end_ns - int(times[first])) / 1e9, 3), "rows": last - first + 1}})
    lat, lon = fixes.lat_deg[fixed], fixes.lon_deg[fixed]
    kept = fixed[simplify(lat, lon, tolerance_m, forced)] if tolerance_m else fixed
    coordinates = np.column_stack((np.round(fixes.lon_deg[kept], 6), np.round(fixes.lat_deg[kept], 6)))
    coords = coordinates.tolist()
    point_features = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": c},
         "properties": {"kind": "fix", "time": t, "speed_kmh": _speed(v)}}
        for c, t, v in zip(coords, iso_times(times[kept]), fixes.speed_kmh[kept].tolist(), strict=True)]
    line = [{"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
             "properties": {"kind": "track"}}] if len(coords) >= 2 else []
    features = line + point_features + gaps
    if events:
        features.extend(_event_features(conn, device_id, start, end, fixes, fixed))
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features, "properties": {
        "device_id": device_id, "from": iso(start), "to": iso(end), "fixes": len(fixes),
        "points": len(kept), "tolerance_m": tolerance_m or 0.0, "no_fix_stretches": len(no_fix)}}
    if len(coords):
        collection["bbox"] = [float(coordinates[:, 0].min()), float(coordinates[:, 1].min()),
                              float(coordinates[:, 0].max()), float(coordinates[:, 1].max())]
    return collection


def _event_features(conn: Conn, device_id: str, start: datetime, end: datetime, fixes: Fixes,
                    fixed: npt.NDArray[np.intp]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rows = conn.execute(_EVENTS, (device_id, start, end, MAX_EVENTS)).fetchall()
    fixed_times = fixes.time_ns[fixed]
    for at, event_id, detector, severity, transition, lat, lon, speed, detail, state in rows:
        position = "reported"
        if lat is None or lon is None:
            at_ns = int(at.timestamp()) * 10**9 + at.microsecond * 1000
            before = int(np.searchsorted(fixed_times, at_ns, side="right")) - 1
            if before >= 0:
                lat, lon = fixes.lat_deg[fixed[before]], fixes.lon_deg[fixed[before]]
                position = "track"
            else:
                position = "unknown"
        geometry = None if position == "unknown" else {
            "type": "Point", "coordinates": [round(float(lon), 6), round(float(lat), 6)]}
        out.append({"type": "Feature", "geometry": geometry, "properties": {
            "kind": "event", "time": iso(at), "event_id": event_id, "detector": detector,
            "severity": severity, "transition": transition, "state": state, "detail": detail,
            "speed_kmh": None if speed is None else _speed(float(speed)), "position": position}})
    return out


def to_json(collection: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a collection (orjson: a month of points in a few milliseconds)."""
    return orjson.dumps(collection)
