"""Reports: daily summaries over a range, and the lender's 30-day vehicle report (JSON and CSV).

Everything comes from tables kept small for the purpose: `daily_summaries` (cloud/store/
summaries.py) for km, driving and night driving, harsh events and the battery's state of health;
`device_status` for the 12 V supply and the tracker's backup battery; trips and stops
(cloud/analytics/trips.py) for where the car stood still; `events` with their lifecycle. Days are
the device's local days (its registered time zone).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from cloud.analytics.common import iso
from cloud.analytics.errors import AnalyticsError
from cloud.analytics.trips import TripRules, trips_and_stops
from cloud.store.db import Conn

MAX_SUMMARY_DAYS = 366
REPORT_DAYS = 30
STATIONARY_MIN_S = 3600.0  # the report lists stationary periods of at least an hour
DTC_COUNT_SIGNAL_ID = 15  # Vehicle.Diagnostics.DTCCount
MAX_REPORT_EVENTS = 1000
SUMMARY_COLUMNS = (
    "distance_km", "driving_minutes", "night_driving_minutes", "stationary_hours", "harsh_accel_count",
    "harsh_brake_count", "harsh_corner_count", "overspeed_count", "overspeed_s", "idle_long_count",
    "idle_long_s", "max_speed_kmh", "min_supply_v", "ev_soh_pct", "positions_count")
_SUMMARIES = f"""
    SELECT day, {", ".join(SUMMARY_COLUMNS)} FROM daily_summaries
    WHERE device_id = %s AND day >= %s AND day <= %s ORDER BY day"""  # constants only
_STATUS_DAYS = """
    SELECT (time AT TIME ZONE %(tz)s)::date, min(supply_v), max(supply_v), min(backup_v), max(backup_v),
           count(*)
    FROM device_status WHERE device_id = %(device)s AND time >= %(start)s AND time < %(end)s GROUP BY 1"""
_DTC_DAYS = """
    SELECT (time AT TIME ZONE %(tz)s)::date, max(value) FROM signal_samples
    WHERE device_id = %(device)s AND signal_id = 15 AND time >= %(start)s AND time < %(end)s GROUP BY 1"""
_EVENTS = """
    SELECT e.time, e.event_id, e.detector, e.severity, e.condition, e.detail, l.state, l.updated_by
    FROM events e LEFT JOIN event_lifecycle l ON l.device_id = e.device_id AND l.event_time = e.time
        AND l.boot_id = e.boot_id AND l.seq = e.seq
    WHERE e.device_id = %(device)s AND e.time >= %(start)s AND e.time < %(end)s AND e.transition = 'raised'
    ORDER BY e.time LIMIT %(limit)s"""


def _check_days(first: date, last: date, max_days: int) -> None:
    if not isinstance(first, date) or not isinstance(last, date):
        raise AnalyticsError("from and to must be dates (YYYY-MM-DD)")
    if last < first:
        raise AnalyticsError(f"to ({last}) must not be before from ({first})")
    if (last - first).days + 1 > max_days:
        raise AnalyticsError(f"at most {max_days} days at once (asked for {(last - first).days + 1})")


def _number(value: object) -> float | int | None:
    if value is None:
        return None
    return value if isinstance(value, int) else round(float(value), 3)  # type: ignore[arg-type]


def daily_summaries(conn: Conn, device_id: str, first: date, last: date) -> list[dict[str, Any]]:
    """The stored daily summaries of `device_id` for local days first..last (days without one are
    absent: nothing was received for them)."""
    _check_days(first, last, MAX_SUMMARY_DAYS)
    rows = conn.execute(_SUMMARIES, (device_id, first, last)).fetchall()  # type: ignore[call-overload]
    return [{"day": row[0].isoformat(),
             **{c: _number(v) for c, v in zip(SUMMARY_COLUMNS, row[1:], strict=True)}} for row in rows]


def time_zone_of(conn: Conn, device_id: str) -> str | None:
    row = conn.execute("SELECT time_zone FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    return None if row is None else str(row[0])


def _slope_per_day(values: list[float | None]) -> float | None:
    """Least-squares slope (units per day) of the known values, None with fewer than 3."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 3:
        return None
    x, y = np.array([k[0] for k in known], dtype=float), np.array([k[1] for k in known], dtype=float)
    return round(float(np.polyfit(x, y, 1)[0]), 5)


def vehicle_report(conn: Conn, device_id: str, last_day: date, *, days: int = REPORT_DAYS,
                   time_zone: str | None = None) -> dict[str, Any]:
    """The vehicle report of `device_id` for the `days` local days ending with `last_day`."""
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 92:
        raise AnalyticsError(f"days must be an integer from 1 to 92 (got {days!r})")
    first_day = last_day - timedelta(days=days - 1)
    tz_name = time_zone or time_zone_of(conn, device_id) or "UTC"
    zone = ZoneInfo(tz_name)
    start = datetime.combine(first_day, time(0), zone)
    end = datetime.combine(last_day + timedelta(days=1), time(0), zone)
    params = {"device": device_id, "tz": tz_name, "start": start, "end": end, "limit": MAX_REPORT_EVENTS}
    summaries = {row["day"]: row for row in daily_summaries(conn, device_id, first_day, last_day)}
    status = {r[0].isoformat(): r[1:] for r in conn.execute(_STATUS_DAYS, params)}
    dtcs = {r[0].isoformat(): r[1] for r in conn.execute(_DTC_DAYS, params)}
    events = [{"time": iso(t), "event_id": eid, "detector": det, "severity": sev, "condition": cond,
               "detail": detail, "state": state or "open", "updated_by": by}
              for t, eid, det, sev, cond, detail, state, by in conn.execute(_EVENTS, params)]
    events_per_day: dict[str, int] = {}
    for event in events:
        local = datetime.fromisoformat(event["time"]).astimezone(zone).date().isoformat()
        events_per_day[local] = events_per_day.get(local, 0) + 1
    rows: list[dict[str, Any]] = []
    for offset in range(days):
        day = (first_day + timedelta(days=offset)).isoformat()
        summary = summaries.get(day, {})
        supply = status.get(day)
        rows.append({
            "day": day, **{c: summary.get(c, 0 if c.endswith(("_count", "_s", "_km", "_minutes", "_hours"))
                                          else None) for c in SUMMARY_COLUMNS},
            "supply_v_min": _number(supply[0]) if supply else None,
            "supply_v_max": _number(supply[1]) if supply else None,
            "backup_v_min": _number(supply[2]) if supply else None,
            "backup_v_max": _number(supply[3]) if supply else None,
            "statuses": int(supply[4]) if supply else 0,
            "dtc_count": _number(dtcs.get(day)), "events": events_per_day.get(day, 0)})
    motion = trips_and_stops(conn, device_id, start, end, TripRules())
    stationary = [{"start": iso(s.start), "end": iso(s.end), "duration_h": round(s.duration_s / 3600, 2),
                   "lat_deg": round(s.place.lat_deg, 6), "lon_deg": round(s.place.lon_deg, 6),
                   "point_of_interest": s.point_of_interest, "data_gap": s.data_gap}
                  for s in motion.stops if s.duration_s >= STATIONARY_MIN_S]
    severities = {name: sum(1 for e in events if e["severity"] == name) for name in ("WARNING", "ALERT",
                                                                                      "EMERGENCY")}
    total = {c: round(sum(float(r[c] or 0) for r in rows), 3) for c in (
        "distance_km", "driving_minutes", "night_driving_minutes", "stationary_hours", "harsh_accel_count",
        "harsh_brake_count", "harsh_corner_count", "overspeed_count", "idle_long_count")}
    dtc_days = [r["dtc_count"] for r in rows]
    return {
        "device_id": device_id, "time_zone": tz_name, "first_day": first_day.isoformat(),
        "last_day": last_day.isoformat(), "days": rows,
        "totals": {**total, "trips": len(motion.trips), "events": len(events),
                   "events_by_severity": severities},
        "battery": {"supply_v_min_slope_per_day": _slope_per_day([r["supply_v_min"] for r in rows]),
                    "backup_v_min_slope_per_day": _slope_per_day([r["backup_v_min"] for r in rows]),
                    "ev_soh_pct_slope_per_day": _slope_per_day([r["ev_soh_pct"] for r in rows]),
                    "supply_v_min": min((r["supply_v_min"] for r in rows if r["supply_v_min"] is not None),
                                        default=None)},
        "dtcs": {"max_count": max((d for d in dtc_days if d is not None), default=None),
                 "days_with_codes": sum(1 for d in dtc_days if d),
                 "events": [e for e in events if "dtc" in f"{e['detector']} {e['condition']}".lower()]},
        "stationary": stationary,
        "events": events,
        "events_truncated": len(events) >= MAX_REPORT_EVENTS,
    }


CSV_PARTS = ("days", "stationary", "events")


def report_csv(report: dict[str, Any], part: str = "days") -> str:
    """One part of a vehicle report as CSV (a header row, then one row per day / period / event)."""
    if part not in CSV_PARTS:
        raise AnalyticsError(f"part must be one of {', '.join(CSV_PARTS)} (got {part!r})")
    rows: list[dict[str, Any]] = report[part]
    out = io.StringIO()
    columns = list(rows[0]) if rows else {"days": ["day"], "stationary": ["start"], "events": ["time"]}[part]
    writer = csv.DictWriter(out, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
