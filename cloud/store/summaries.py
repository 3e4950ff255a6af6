"""Daily summaries per device and local day: the inputs of the lender's 30-day vehicle report.

Maintained incrementally, in two ways that both survive duplicates and out-of-order arrival:

* Order-free figures are merged into the day's row with every ingest batch (`merge_*_sql`):
  max speed (GREATEST), minimum 12 V voltage (LEAST), latest EV state of health (by time) —
  idempotent, so they may read the staged rows, duplicates included — and harsh
  acceleration/braking/cornering counts, incremented only by events that were newly inserted.
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

from typing import LiteralString

from cloud.store.db import Conn

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


def mark_dirty_sql(staged_positions: LiteralString) -> LiteralString:
    """Mark the local days of staged positions, and the day on each side, for a refresh."""
    return f"""
        INSERT INTO summary_dirty (device_id, day)
        SELECT r.device_id, g.day::date
        FROM (SELECT s.device_id, d.time_zone, min(s.time) AS t_min, max(s.time) AS t_max
              FROM {staged_positions} s JOIN devices d ON d.device_id = s.device_id
              GROUP BY s.device_id, d.time_zone) r
        CROSS JOIN LATERAL generate_series(
            (r.t_min AT TIME ZONE r.time_zone)::date - 1,
            (r.t_max AT TIME ZONE r.time_zone)::date + 1, interval '1 day') AS g(day)
        WHERE g.day >= %(oldest_day)s
        ON CONFLICT DO NOTHING"""


def merge_signals_sql(staged_signals: LiteralString) -> LiteralString:
    """Merge max speed, min 12 V voltage and latest SoH of staged samples into daily rows."""
    return f"""
        INSERT INTO daily_summaries AS t (device_id, day, max_speed_kmh, min_supply_v, ev_soh_pct, ev_soh_at)
        SELECT s.device_id, (s.time AT TIME ZONE d.time_zone)::date,
               max(s.value) FILTER (WHERE s.signal_id IN {SPEED_SIGNAL_IDS}),
               min(s.value) FILTER (WHERE s.signal_id = {SUPPLY_SIGNAL_ID}),
               (array_agg(s.value ORDER BY s.time DESC) FILTER (WHERE s.signal_id = {SOH_SIGNAL_ID}))[1],
               max(s.time) FILTER (WHERE s.signal_id = {SOH_SIGNAL_ID})
        FROM {staged_signals} s JOIN devices d ON d.device_id = s.device_id
        WHERE s.signal_id IN ({SPEED_SIGNAL_IDS[0]}, {SPEED_SIGNAL_IDS[1]}, {SUPPLY_SIGNAL_ID},
                              {SOH_SIGNAL_ID})
          AND (s.time AT TIME ZONE d.time_zone)::date >= %(oldest_day)s
        GROUP BY 1, 2
        {_MERGE_ORDER_FREE}"""


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


_MERGE_ORDER_FREE: LiteralString = """
        ON CONFLICT (device_id, day) DO UPDATE SET
            max_speed_kmh = GREATEST(t.max_speed_kmh, EXCLUDED.max_speed_kmh),
            min_supply_v = LEAST(t.min_supply_v, EXCLUDED.min_supply_v),
            ev_soh_pct = CASE WHEN EXCLUDED.ev_soh_at IS NOT NULL
                                   AND (t.ev_soh_at IS NULL OR EXCLUDED.ev_soh_at >= t.ev_soh_at)
                              THEN EXCLUDED.ev_soh_pct ELSE t.ev_soh_pct END,
            ev_soh_at = GREATEST(t.ev_soh_at, EXCLUDED.ev_soh_at),
            updated_at = now()"""


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
    DELETE FROM summary_dirty WHERE (device_id, day) IN (
        SELECT device_id, day FROM summary_dirty ORDER BY marked_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING device_id, day
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


def refresh_dirty(conn: Conn, *, oldest_day: object, limit: int = 5000) -> int:
    """Recompute the position-derived figures of up to `limit` dirty (device, day) pairs in one
    transaction; returns how many summary rows were written. Safe to run from several receivers
    (claims rows with SKIP LOCKED)."""
    with conn.transaction():
        cursor = conn.execute(_REFRESH, {"limit": limit, "oldest_day": oldest_day})
        return cursor.rowcount
