"""Daily summaries per device and local day: the inputs of the lender's 30-day vehicle report.

Maintained incrementally, in two ways that both survive duplicates and out-of-order arrival:

* Order-free figures are merged into the day's row with every ingest batch: max speed
  (GREATEST), minimum 12 V voltage (LEAST), latest EV state of health (by time) — idempotent, so
  duplicates do no harm; the receiver's decoder folds each message's samples with numpy
  (`aggregate_samples`), so the database only merges one small row per device and day — and harsh
  acceleration/braking/cornering counts, incremented only by events that were newly inserted —
  and the device's own daily driving counters (Status key 13: harsh acceleration/braking/
  cornering, overspeed and long idling, cumulative per local day), merged with GREATEST
  (`MERGE_DRIVING_SQL`): a repeated or late status never lowers a count.
* Figures that need consecutive positions (distance, driving, night driving, stationary time)
  are recomputed for (device, day) pairs that ingest marked dirty in `summary_dirty`, from that
  day's positions plus the neighbours just outside it (`refresh_dirty`), like TimescaleDB's
  continuous-aggregate invalidation log. Only touched days are read, each once per refresh.

Definitions (local day and night in the device's time zone):
* A segment joins two consecutive fixes; its speed is the GNSS speed at its start, or the
  implied speed (distance / time) when the fix has none.
* moving: speed >= 5 km/h and the segment spans <= 300 s (a longer gap is lost coverage).
  Distance and driving minutes add up moving segments only, which ignores GNSS drift of a parked car.
* stationary: speed < 5 km/h and implied speed < 5 km/h, of any length (a parked car reports rarely).
* A segment crossing midnight is split at midnight in proportion to time (distance too).
* night: moving time between 22:00 and 06:00 local, by the segment's local start hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import LiteralString
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from cloud.store import track_days
from cloud.store.db import Conn
from protocol.messages import DrivingDay

MOVING_KMH = 5.0
MAX_GAP_S = 300.0
NIGHT_START_HOUR = 22
NIGHT_END_HOUR = 6
HARSH_DETECTORS = {
    "harsh_accel_count": ("harsh_acceleration", "harsh_accel"),
    "harsh_brake_count": ("harsh_braking", "harsh_brake"),
    "harsh_corner_count": ("harsh_cornering", "harsh_corner"),
}
SPEED_SIGNAL_IDS = (1, 26)  # Vehicle.Speed, GNSS speed over ground
SUPPLY_SIGNAL_ID = 40  # Vehicle.LowVoltageBattery.CurrentVoltage
SOH_SIGNAL_ID = 71  # Vehicle.Powertrain.TractionBattery.StateOfHealth
_SUMMARY_SIGNALS = (*SPEED_SIGNAL_IDS, SUPPLY_SIGNAL_ID, SOH_SIGNAL_ID)
_DAY_NS = 86_400 * 10**9


MARK_DIRTY_SQL: LiteralString = """
        INSERT INTO summary_dirty (device_id, day)
        SELECT device_id, day FROM unnest(%(device)s::text[], %(day)s::date[]) AS d(device_id, day)
        WHERE day >= %(oldest_day)s
        ON CONFLICT DO NOTHING"""


# An ignition sample changes the motion runs packed with every day from its own to the day of the
# next sample (the value is carried forward; none later: to today). The literal 42 is
# motion.IGNITION_SIGNAL_ID, for the partial index of migration 0007.
MARK_IGNITION_DIRTY_SQL: LiteralString = """
        INSERT INTO summary_dirty (device_id, day)
        SELECT s.device_id, g::date
        FROM unnest(%(device)s::text[], %(first_at)s::timestamptz[], %(last_at)s::timestamptz[])
            AS s(device_id, first_at, last_at)
        JOIN devices d ON d.device_id = s.device_id
        CROSS JOIN LATERAL (SELECT min(x.time) AS next_at FROM signal_samples x
                            WHERE x.device_id = s.device_id AND x.signal_id = 42 AND x.time > s.last_at) n
        CROSS JOIN LATERAL generate_series(
            (s.first_at AT TIME ZONE d.time_zone)::date,
            (coalesce(n.next_at, greatest(s.last_at, %(now)s)) AT TIME ZONE d.time_zone)::date,
            interval '1 day') g
        WHERE g::date >= %(oldest_day)s
        ON CONFLICT DO NOTHING"""


def dirty_days(into: set[tuple[str, int]], device_id: str, time_zone: str,
               fix_time_ns: npt.NDArray[np.int64]) -> None:
    """Mark the local days of a message's fixes, and the day on each side (a segment joining a
    new fix to its neighbour may cross midnight), for a recompute by `refresh_dirty`."""
    ends = local_days(np.array([fix_time_ns.min(), fix_time_ns.max()], dtype=np.int64), time_zone)
    for day in range(int(ends[0]) - 1, int(ends[1]) + 2):
        into.add((device_id, day))


def dirty_params(days: set[tuple[str, int]]) -> dict[str, object]:
    keys = sorted(days)
    epoch = date(1970, 1, 1)
    return {"device": [k[0] for k in keys], "day": [epoch + timedelta(days=k[1]) for k in keys]}


@dataclass
class DayFigures:
    """Order-free figures of one (device, local day) from a batch's samples (duplicates harmless)."""

    max_speed_kmh: float | None = None
    min_supply_v: float | None = None
    soh_at_ns: int | None = None
    soh_pct: float | None = None

    def merge(self, other: DayFigures) -> None:
        if other.max_speed_kmh is not None:
            self.max_speed_kmh = max(other.max_speed_kmh, self.max_speed_kmh or other.max_speed_kmh)
        if other.min_supply_v is not None:
            self.min_supply_v = min(other.min_supply_v, self.min_supply_v or other.min_supply_v)
        if other.soh_at_ns is not None and (self.soh_at_ns is None or other.soh_at_ns >= self.soh_at_ns):
            self.soh_at_ns, self.soh_pct = other.soh_at_ns, other.soh_pct


def local_days(time_ns: npt.NDArray[np.int64], time_zone: str) -> npt.NDArray[np.int64]:
    """The local calendar day (days since 1970-01-01) of each UTC ns instant in `time_zone`."""
    zone = ZoneInfo(time_zone)
    first, last = int(time_ns.min()), int(time_ns.max())
    offsets = {_offset_ns(first, zone), _offset_ns(last, zone)}
    if len(offsets) == 1:  # no DST change inside the span: one offset for every row
        return (time_ns + offsets.pop()) // _DAY_NS
    return np.fromiter(((t + _offset_ns(int(t), zone)) // _DAY_NS for t in time_ns), np.int64, len(time_ns))


def _offset_ns(time_ns: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(time_ns // 10**9, zone).utcoffset()
    return int(offset.total_seconds()) * 10**9 if offset else 0


def aggregate_samples(
    into: dict[tuple[str, int], DayFigures], device_id: str, time_zone: str,
    time_ns: npt.NDArray[np.int64], signal_id: npt.NDArray[np.int32], value: npt.NDArray[np.float64],
) -> None:
    """Fold one message's samples into per-(device, local day) figures: max speed, min 12 V
    voltage, latest state of health. Runs on the receiver's decoder thread, not in the database."""
    wanted = np.isin(signal_id, _SUMMARY_SIGNALS)
    if not wanted.any():
        return
    times, ids, values = time_ns[wanted], signal_id[wanted], value[wanted]
    days = local_days(times, time_zone)
    for day in np.unique(days):
        on_day = days == day
        figures = DayFigures()
        speed = on_day & np.isin(ids, SPEED_SIGNAL_IDS)
        if speed.any():
            figures.max_speed_kmh = float(values[speed].max())
        supply = on_day & (ids == SUPPLY_SIGNAL_ID)
        if supply.any():
            figures.min_supply_v = float(values[supply].min())
        soh = np.flatnonzero(on_day & (ids == SOH_SIGNAL_ID))
        if soh.size:
            latest = soh[np.argmax(times[soh])]
            figures.soh_at_ns, figures.soh_pct = int(times[latest]), float(values[latest])
        key = (device_id, int(day))
        if key in into:
            into[key].merge(figures)
        else:
            into[key] = figures


MERGE_DAY_FIGURES_SQL: LiteralString = """
        INSERT INTO daily_summaries AS t (device_id, day, max_speed_kmh, min_supply_v, ev_soh_pct, ev_soh_at)
        SELECT device_id, day, max_speed, min_supply, soh, soh_at
        FROM unnest(%(device)s::text[], %(day)s::date[], %(max_speed)s::real[], %(min_supply)s::real[],
                    %(soh)s::real[], %(soh_at)s::timestamptz[])
             AS f(device_id, day, max_speed, min_supply, soh, soh_at)
        WHERE day >= %(oldest_day)s
        ON CONFLICT (device_id, day) DO UPDATE SET
            max_speed_kmh = GREATEST(t.max_speed_kmh, EXCLUDED.max_speed_kmh),
            min_supply_v = LEAST(t.min_supply_v, EXCLUDED.min_supply_v),
            ev_soh_pct = CASE WHEN EXCLUDED.ev_soh_at IS NOT NULL
                                   AND (t.ev_soh_at IS NULL OR EXCLUDED.ev_soh_at >= t.ev_soh_at)
                              THEN EXCLUDED.ev_soh_pct ELSE t.ev_soh_pct END,
            ev_soh_at = GREATEST(t.ev_soh_at, EXCLUDED.ev_soh_at),
            updated_at = now()"""


def day_figures_params(figures: dict[tuple[str, int], DayFigures]) -> dict[str, object]:
    """Parameters of `MERGE_DAY_FIGURES_SQL` (without `oldest_day`)."""
    keys = sorted(figures)  # a fixed order: concurrent receivers lock summary rows alike
    epoch = date(1970, 1, 1)
    return {
        "device": [k[0] for k in keys],
        "day": [epoch + timedelta(days=k[1]) for k in keys],
        "max_speed": [figures[k].max_speed_kmh for k in keys],
        "min_supply": [figures[k].min_supply_v for k in keys],
        "soh": [figures[k].soh_pct for k in keys],
        "soh_at": [None if figures[k].soh_at_ns is None
                   else datetime.fromtimestamp(figures[k].soh_at_ns // 10**9, UTC).replace(  # type: ignore[operator]
                       microsecond=(figures[k].soh_at_ns // 1000) % 1_000_000)  # type: ignore[operator]
                   for k in keys],
    }


def merge_status_sql(staged_status: LiteralString) -> LiteralString:
    """Merge the minimum supply voltage reported in staged statuses into daily rows."""
    return f"""
        INSERT INTO daily_summaries AS t (device_id, day, min_supply_v)
        SELECT s.device_id, (s.time AT TIME ZONE d.time_zone)::date, min(s.supply_v)
        FROM {staged_status} s JOIN devices d ON d.device_id = s.device_id
        WHERE s.supply_v IS NOT NULL AND (s.time AT TIME ZONE d.time_zone)::date >= %(oldest_day)s
        GROUP BY 1, 2
        ON CONFLICT (device_id, day) DO UPDATE SET
            min_supply_v = LEAST(t.min_supply_v, EXCLUDED.min_supply_v), updated_at = now()"""


DRIVING_COLUMNS = {  # DrivingDay field -> daily_summaries column
    "harsh_accel": "harsh_accel_count", "harsh_brake": "harsh_brake_count",
    "harsh_corner": "harsh_corner_count", "overspeed": "overspeed_count", "overspeed_s": "overspeed_s",
    "idle_long": "idle_long_count", "idle_long_s": "idle_long_s",
}


def fold_driving(into: dict[tuple[str, str], DrivingDay], device_id: str,
                 days: tuple[DrivingDay, ...]) -> None:
    """Fold a status's driving counters into a batch's, per (device, local day): the maximum of
    each counter, as the counters only grow within a day."""
    for day in days:
        key = (device_id, day.day)
        known = into.get(key)
        into[key] = day if known is None else DrivingDay(day.day, *(
            max(getattr(day, name), getattr(known, name)) for name in DRIVING_COLUMNS))


def driving_params(days: dict[tuple[str, str], DrivingDay]) -> dict[str, object]:
    """Parameters of `MERGE_DRIVING_SQL` (without `oldest_day`)."""
    keys = sorted(days)  # a fixed order: concurrent receivers lock summary rows alike
    params: dict[str, object] = {"device": [k[0] for k in keys],
                                 "day": [date.fromisoformat(k[1]) for k in keys]}
    for name in DRIVING_COLUMNS:
        params[name] = [getattr(days[k], name) for k in keys]
    return params


_DRIVING_COLUMN_LIST = ", ".join(DRIVING_COLUMNS.values())
# Everything interpolated here is a module constant, never input.
MERGE_DRIVING_SQL: LiteralString = f"""
        INSERT INTO daily_summaries AS t (device_id, day, {_DRIVING_COLUMN_LIST})
        SELECT * FROM unnest(%(device)s::text[], %(day)s::date[],
                             {", ".join(f"%({n})s::integer[]" for n in DRIVING_COLUMNS)})
             AS f(device_id, day, {_DRIVING_COLUMN_LIST})
        WHERE day >= %(oldest_day)s
        ON CONFLICT (device_id, day) DO UPDATE SET
            {", ".join(f"{c} = GREATEST(t.{c}, EXCLUDED.{c})" for c in DRIVING_COLUMNS.values())},
            updated_at = now()"""  # type: ignore[assignment]


def _in_list(names: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{name}'" for name in names) + ")"


def count_harsh_sql(inserted_events: LiteralString) -> LiteralString:
    """Add newly inserted harsh-driving events (a CTE or table of rows) to their day's counts."""
    filters = ", ".join(
        f"count(*) FILTER (WHERE e.detector IN {_in_list(names)})" for names in HARSH_DETECTORS.values()
    )
    columns = ", ".join(HARSH_DETECTORS)
    updates = ", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in HARSH_DETECTORS)
    every = _in_list(tuple(n for group in HARSH_DETECTORS.values() for n in group))
    # Everything interpolated here is a module constant, never input.
    return f"""
        INSERT INTO daily_summaries AS t (device_id, day, {columns})
        SELECT e.device_id, (e.time AT TIME ZONE d.time_zone)::date, {filters}
        FROM {inserted_events} e JOIN devices d ON d.device_id = e.device_id
        WHERE e.detector IN {every} AND (e.time AT TIME ZONE d.time_zone)::date >= %(oldest_day)s
        GROUP BY 1, 2
        ON CONFLICT (device_id, day) DO UPDATE SET {updates}, updated_at = now()"""  # type: ignore[return-value]


_REFRESH: LiteralString = f"""
WITH claimed AS (
    SELECT * FROM unnest(%(device)s::text[], %(day)s::date[]) AS c(device_id, day)
), bounds AS (
    SELECT c.device_id, c.day, d.time_zone,
           (c.day::timestamp AT TIME ZONE d.time_zone) AS t0,
           ((c.day + 1)::timestamp AT TIME ZONE d.time_zone) AS t1
    FROM claimed c JOIN devices d ON d.device_id = c.device_id
    WHERE c.day >= %(oldest_day)s
), pts AS (
    SELECT b.device_id, b.day, p.time, p.lat_deg, p.lon_deg, p.speed_kmh, true AS inside
    FROM bounds b JOIN positions p ON p.device_id = b.device_id AND p.time >= b.t0 AND p.time < b.t1
    UNION ALL
    SELECT b.device_id, b.day, n.time, n.lat_deg, n.lon_deg, n.speed_kmh, false
    FROM bounds b CROSS JOIN LATERAL (
        SELECT time, lat_deg, lon_deg, speed_kmh FROM positions p
        WHERE p.device_id = b.device_id AND p.time >= b.t1 ORDER BY p.time LIMIT 1) n
    UNION ALL
    SELECT b.device_id, b.day, n.time, n.lat_deg, n.lon_deg, n.speed_kmh, false
    FROM bounds b CROSS JOIN LATERAL (
        SELECT time, lat_deg, lon_deg, speed_kmh FROM positions p
        WHERE p.device_id = b.device_id AND p.time < b.t0 ORDER BY p.time DESC LIMIT 1) n
), seg AS (
    SELECT device_id, day, time AS t_start, lead(time) OVER w AS t_end, speed_kmh,
           lienwatch_haversine_km(lat_deg, lon_deg, lead(lat_deg) OVER w, lead(lon_deg) OVER w) AS dist_km
    FROM pts WINDOW w AS (PARTITION BY device_id, day ORDER BY time)
), seg2 AS (
    SELECT s.device_id, s.day, b.time_zone, s.dist_km,
           greatest(s.t_start, b.t0) AS c_start,
           extract(epoch FROM s.t_end - s.t_start) AS dt_s,
           extract(epoch FROM least(s.t_end, b.t1) - greatest(s.t_start, b.t0)) AS clipped_s,
           coalesce(s.speed_kmh,
                    s.dist_km * 3600 / nullif(extract(epoch FROM s.t_end - s.t_start), 0)) AS v_kmh,
           s.dist_km * 3600 / nullif(extract(epoch FROM s.t_end - s.t_start), 0) AS implied_kmh
    FROM seg s JOIN bounds b ON b.device_id = s.device_id AND b.day = s.day
    WHERE s.t_end IS NOT NULL AND s.t_end > b.t0 AND s.t_start < b.t1
), cls AS (
    SELECT *, CASE
        WHEN dt_s <= 0 THEN 'none'
        WHEN v_kmh >= {MOVING_KMH} AND dt_s <= {MAX_GAP_S} THEN 'moving'
        WHEN v_kmh < {MOVING_KMH} AND implied_kmh < {MOVING_KMH} THEN 'stationary'
        ELSE 'none' END AS state,
        extract(hour FROM c_start AT TIME ZONE time_zone) AS local_hour
    FROM seg2
), agg AS (
    SELECT b.device_id, b.day,
           coalesce(sum(c.dist_km * c.clipped_s / c.dt_s) FILTER (WHERE c.state = 'moving'), 0)
               AS distance_km,
           coalesce(sum(c.clipped_s) FILTER (WHERE c.state = 'moving'), 0) / 60 AS driving_minutes,
           coalesce(sum(c.clipped_s) FILTER (WHERE c.state = 'moving' AND
               (c.local_hour >= {NIGHT_START_HOUR} OR c.local_hour < {NIGHT_END_HOUR})), 0) / 60
               AS night_driving_minutes,
           coalesce(sum(c.clipped_s) FILTER (WHERE c.state = 'stationary'), 0) / 3600 AS stationary_hours
    FROM bounds b LEFT JOIN cls c ON c.device_id = b.device_id AND c.day = b.day
    GROUP BY b.device_id, b.day
), inside AS (
    SELECT device_id, day, max(speed_kmh) AS max_speed_kmh, count(*) AS positions_count
    FROM pts WHERE inside GROUP BY device_id, day
)
INSERT INTO daily_summaries AS t (device_id, day, distance_km, driving_minutes, night_driving_minutes,
                                  stationary_hours, max_speed_kmh, positions_count)
SELECT a.device_id, a.day, a.distance_km, a.driving_minutes, a.night_driving_minutes,
       a.stationary_hours, i.max_speed_kmh, coalesce(i.positions_count, 0)
FROM agg a LEFT JOIN inside i ON i.device_id = a.device_id AND i.day = a.day
WHERE i.positions_count IS NOT NULL OR a.distance_km > 0 OR a.stationary_hours > 0
   OR a.driving_minutes > 0
ON CONFLICT (device_id, day) DO UPDATE SET
    distance_km = EXCLUDED.distance_km, driving_minutes = EXCLUDED.driving_minutes,
    night_driving_minutes = EXCLUDED.night_driving_minutes,
    stationary_hours = EXCLUDED.stationary_hours, positions_count = EXCLUDED.positions_count,
    max_speed_kmh = GREATEST(t.max_speed_kmh, EXCLUDED.max_speed_kmh), updated_at = now()
"""


def dirty_day_range(conn: Conn) -> tuple[object, object] | None:
    """The first and last dirty day (so partitions can be made before a refresh), or None."""
    row = conn.execute("SELECT min(day), max(day) FROM summary_dirty").fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


_CLAIM: LiteralString = """
    DELETE FROM summary_dirty WHERE (device_id, day) IN (
        SELECT device_id, day FROM summary_dirty ORDER BY marked_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING device_id, day"""


def refresh_dirty(conn: Conn, *, oldest_day: date, limit: int = 5000) -> int:
    """Recompute the position-derived figures of up to `limit` dirty (device, day) pairs, and
    repack their tracks (cloud/store/track_days.py), in one transaction; returns how many summary
    rows were written. Safe to run from several receivers (claims rows with SKIP LOCKED)."""
    with conn.transaction():
        claimed = conn.execute(_CLAIM, {"limit": limit}).fetchall()
        if not claimed:
            return 0
        days = [(device_id, day) for device_id, day in claimed if day >= oldest_day]
        cursor = conn.execute(_REFRESH, {"device": [d for d, _ in days], "day": [day for _, day in days],
                                         "oldest_day": oldest_day})
        written = cursor.rowcount
        track_days.pack_days(conn, days)
        return written
