"""Track playback as GeoJSON: the fixes of one device and time range, simplified on request.

The fixes come as numpy columns: whole local days from their packed rows (cloud/store/track_days.py,
with each fix's Douglas-Peucker significance, so simplifying them is one comparison), the rest of
the range packed by the server into one bytea per stretch. The line is simplified stretch by
stretch (a packed day, or a stretch read from positions), each stretch's first and last fix kept.
Output, a FeatureCollection (RFC 7946, longitude first):

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

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import numpy as np
import numpy.typing as npt
import orjson

from cloud.analytics.common import check_number, check_range, iso, iso_times
from cloud.analytics.simplify import track_significance
from cloud.store.db import Conn
from cloud.store.track_days import RAW_FIX_SQL, DayColumns, decode_raw, epoch_us, local_midnights, usable_days
from cython_ext.geojson import fix_points

MAX_TOLERANCE_M = 10_000.0
NO_FIX = 0
MAX_EVENTS = 5000
_RAW: LiteralString = f"""
    SELECT (SELECT {RAW_FIX_SQL} FROM positions p
            WHERE p.device_id = %(device)s AND p.time >= r.a AND p.time < r.b)
    FROM unnest(%(a)s::timestamptz[], %(b)s::timestamptz[]) WITH ORDINALITY AS r(a, b, i) ORDER BY r.i"""
_EVENTS = """
    SELECT e.time, e.event_id, e.detector, e.severity, e.transition, e.lat_deg, e.lon_deg,
           e.speed_kmh, e.detail, l.state
    FROM events e LEFT JOIN event_lifecycle l ON l.device_id = e.device_id AND l.event_time = e.time
        AND l.boot_id = e.boot_id AND l.seq = e.seq
    WHERE e.device_id = %s AND e.time >= %s AND e.time < %s ORDER BY e.time LIMIT %s"""


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of a `Fixes` read as one stretch: a packed day or a range of positions."""

    start: int
    stop: int
    packed: bool


@dataclass(frozen=True)
class Fixes:
    """Stored positions in time order; `fix_type` -1 where none was stored. `significance` is
    the stored Douglas-Peucker significance of packed days' rows (NaN elsewhere); `pieces` the
    stretches the rows were read as (none: one stretch from positions)."""

    time_ns: npt.NDArray[np.int64]
    lat_deg: npt.NDArray[np.float64]
    lon_deg: npt.NDArray[np.float64]
    speed_kmh: npt.NDArray[np.float32]
    fix_type: npt.NDArray[np.int16]
    significance: npt.NDArray[np.float64] | None = None
    pieces: tuple[Piece, ...] = ()
    stored: int | None = None  # rows stored in the range (None: all are here)

    def __len__(self) -> int:
        return len(self.time_ns)

    @property
    def stored_rows(self) -> int:
        """How many positions the range holds, also those a simplified read left out."""
        return len(self) if self.stored is None else self.stored


def fetch_fixes(conn: Conn, device_id: str, start: datetime, end: datetime, *,
                tolerance_m: float | None = None, significance: bool = True) -> Fixes:
    """The positions of `device_id` with start <= time < end, as numpy columns: whole local days
    from their packed rows (cloud/store/track_days.py) where those are exact, the rest from
    `positions` in one query. With `tolerance_m` (a simplified read), a packed day without
    fix-less rows brings only its fixes that may be kept at that tolerance: every fix a
    simplification at `tolerance_m` or above keeps, each day's first and last fix among them
    (they cut the line), so the rows on each side of a fix-less stretch are the same.
    `significance=False` (trips) leaves the stored significance unread: None."""
    packed = usable_days(conn, device_id, start, end, tolerance_m=tolerance_m, significance=significance)
    # (start, rows, their stored significance applies, cut at local midnights): a day cut to the
    # range is simplified as the same rows read from positions would be, in one piece.
    stretches: list[tuple[datetime, DayColumns, bool, bool]] = [
        (day.t0, day.columns, day.whole, False) for day in packed]
    holes: list[tuple[datetime, datetime]] = []
    at = start
    for day in packed:  # in time order, never overlapping (one time zone's local days)
        if day.t0 > at:
            holes.append((at, day.t0))
        at = day.t1
    if at < end:
        holes.append((at, end))
    if holes:
        rows = conn.execute(_RAW, {"device": device_id, "a": [h[0] for h in holes],
                                   "b": [h[1] for h in holes]}, binary=True).fetchall()
        stretches.extend((hole[0], decode_raw(None if row[0] is None else bytes(row[0])), False, True)
                         for hole, row in zip(holes, rows, strict=True))
    stretches.sort(key=lambda item: item[0])
    # Rows read from positions are cut at the device's local midnights too, so a range is
    # simplified day by day whether or not its days are packed yet: the answer does not change
    # when the receiver packs a day.
    midnights_us = np.array([epoch_us(m) for m in local_midnights(conn, device_id, start, end)]
                            if any(cut for *_, cut in stretches) else [], dtype=np.int64)
    pieces: list[Piece] = []
    first = 0
    for _, columns, is_packed, cut in stretches:
        cuts = [0, *np.searchsorted(columns.time_us, midnights_us).tolist(), len(columns)] if cut else \
            [0, len(columns)]
        for lo, hi in itertools.pairwise(cuts):
            if hi > lo:
                pieces.append(Piece(first + lo, first + hi, is_packed))
        first += len(columns)
    parts = [columns for _, columns, *_ in stretches]

    def joined(name: str) -> Any:
        return np.concatenate([getattr(part, name) for part in parts]) if parts else \
            np.zeros(0, dtype=getattr(decode_raw(None), name).dtype)

    left_out = sum(day.fix_count - len(day.columns) for day in packed)
    return Fixes(joined("time_us") * 1000, joined("lat_deg"), joined("lon_deg"), joined("speed_kmh"),
                 joined("fix_type"), joined("significance") if significance else None, tuple(pieces),
                 stored=sum(len(part) for part in parts) + left_out)


def _significance(fixes: Fixes, has_fix: npt.NDArray[np.bool_],
                  tolerance_m: float) -> npt.NDArray[np.float64]:
    """Each row's significance at `tolerance_m`: stored for packed days, computed for the rest
    (exact for every tolerance >= the one asked for, `simplify.significance`)."""
    value = fixes.significance.copy() if fixes.significance is not None else np.full(len(fixes), np.nan)
    for piece in fixes.pieces or (Piece(0, len(fixes), False),):
        if not piece.packed:
            rows = slice(piece.start, piece.stop)
            value[rows] = track_significance(fixes.lat_deg[rows], fixes.lon_deg[rows], has_fix[rows],
                                             floor_m=tolerance_m)
    return value


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[first, last] index pairs of the runs of True in `mask`."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist(),
                    strict=True))


def _speed(value: float) -> float | None:
    return None if value != value else round(value, 1)


def playback(conn: Conn, device_id: str, start: datetime, end: datetime, *,
             tolerance_m: float | None = None, events: bool = False,
             event_detail: bool = True) -> dict[str, Any]:
    """The track of `device_id` in [start, end) as a GeoJSON FeatureCollection (see the module)."""
    parsed: dict[str, Any] = orjson.loads(playback_json(conn, device_id, start, end, tolerance_m=tolerance_m,
                                                        events=events, event_detail=event_detail))
    return parsed


def playback_json(conn: Conn, device_id: str, start: datetime, end: datetime, *,
                  tolerance_m: float | None = None, events: bool = False,
                  event_detail: bool = True) -> bytes:
    """`playback` as compact JSON bytes, what the API sends (`event_detail=False` leaves the
    events' detail out: an account manager's view)."""
    check_range(start, end)
    if tolerance_m is not None:
        check_number("tolerance_m", tolerance_m, 0.0, MAX_TOLERANCE_M)
    # Events are placed at the last fix before them, so they need every fix; only a simplified
    # track needs the stored significance.
    fixes = fetch_fixes(conn, device_id, start, end, tolerance_m=None if events else tolerance_m,
                        significance=bool(tolerance_m))
    has_fix = fixes.fix_type != NO_FIX
    fixed = np.flatnonzero(has_fix)
    gaps: list[dict[str, Any]] = []
    no_fix = _runs(~has_fix)
    times = fixes.time_ns
    for first, last in no_fix:
        before = first - 1  # rows before `first` are fixed (runs are maximal)
        after = last + 1 if last + 1 < len(fixes) else None
        geometry = None if before < 0 else {
            "type": "Point", "coordinates": [round(float(fixes.lon_deg[before]), 6),
                                             round(float(fixes.lat_deg[before]), 6)]}
        end_ns = int(times[after] if after is not None else times[last])
        gaps.append({"type": "Feature", "geometry": geometry, "properties": {
            "kind": "no_fix", "position": "unknown" if before < 0 else "last_known",
            "from": iso_times(times[first:first + 1])[0],
            "to": iso_times(np.array([end_ns], dtype=np.int64))[0],
            "duration_s": round((end_ns - int(times[first])) / 1e9, 3), "rows": last - first + 1}})
    kept = np.flatnonzero(has_fix & (_significance(fixes, has_fix, tolerance_m) > tolerance_m)) \
        if tolerance_m else fixed
    lon, lat = np.round(fixes.lon_deg[kept], 6), np.round(fixes.lat_deg[kept], 6)
    kept_ns = times[kept]
    parts: list[bytes] = []
    if len(kept) >= 2:
        parts.append(b'{"type":"Feature","geometry":{"type":"LineString","coordinates":'
                     + orjson.dumps(np.column_stack((lon, lat)), option=orjson.OPT_SERIALIZE_NUMPY)
                     + b'},"properties":{"kind":"track"}}')
    if len(kept):
        parts.append(fix_points(lon, lat, kept_ns // 1000, fixes.speed_kmh[kept],
                                millis=bool(np.any(kept_ns % 1_000_000_000))))
    extra: list[dict[str, Any]] = gaps
    if events:
        extra = gaps + _event_features(conn, device_id, start, end, fixes, fixed, event_detail)
    parts.extend(orjson.dumps(feature) for feature in extra)
    collection: dict[str, Any] = {"type": "FeatureCollection",
                                  "features": orjson.Fragment(b"[" + b",".join(parts) + b"]"), "properties": {
        "device_id": device_id, "from": iso(start), "to": iso(end), "fixes": fixes.stored_rows,
        "points": len(kept), "tolerance_m": tolerance_m or 0.0, "no_fix_stretches": len(no_fix)}}
    if len(kept):
        collection["bbox"] = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    return orjson.dumps(collection)


def _event_features(conn: Conn, device_id: str, start: datetime, end: datetime, fixes: Fixes,
                    fixed: npt.NDArray[np.intp], detail: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rows = conn.execute(_EVENTS, (device_id, start, end, MAX_EVENTS)).fetchall()
    fixed_times = fixes.time_ns[fixed]
    for at, event_id, detector, severity, transition, lat, lon, speed, event_detail, state in rows:
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
            "severity": severity, "transition": transition, "state": state,
            "detail": event_detail if detail else None,
            "speed_kmh": None if speed is None else _speed(float(speed)), "position": position}})
    return out


def to_json(collection: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a collection (orjson: a month of points in a few milliseconds)."""
    return orjson.dumps(collection)
