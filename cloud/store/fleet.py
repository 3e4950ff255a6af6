"""The fleet as the API shows it: device list with filters and keyset pagination, one device's
latest state (position, ignition, power, versions, open events), provisioning fields.

Every query is per device or bounded by a page: the device list reads device_latest and the open
events of each listed device (open_events: migration 0014) by index, never the time series.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from cloud.store.db import Conn
from cloud.store.devices import PointOfInterest, check_poi, to_coordinate_resolution
from cloud.store.errors import DeviceError
from protocol.catalog import default_catalog
from protocol.messages import ClockQuality

SEVERITIES = ("WARNING", "ALERT", "EMERGENCY")
MONITORING_STATES = ("active", "suspended", "retired")
POWER_STATES = ("UNKNOWN", "ACTIVE", "IDLE", "SLEEP", "DEEP_SLEEP", "BACKUP_BATTERY")
OPEN_STATES = ("open", "acknowledged")
MAX_POLYGON_POINTS = 2000
IGNITION_PATH = "Vehicle.LowVoltageSystemState"  # 0 UNDEFINED 1 LOCK 2 OFF 3 ACC 4 ON 5 START
IGNITION_LOOKBACK = timedelta(hours=24)
_SEVERITY_RANK = "CASE e.severity WHEN 'WARNING' THEN 1 WHEN 'ALERT' THEN 2 ELSE 3 END"


def check_polygon(polygon: object) -> dict[str, Any]:
    """A GeoJSON Polygon (RFC 7946): closed linear rings of >= 4 [lon, lat] positions in range,
    kept to 1e-7 degree like a point of interest."""
    if (
        not isinstance(polygon, dict)
        or polygon.get("type") != "Polygon"
        or set(polygon) - {"type", "coordinates"}
    ):
        raise DeviceError(
            'contract_polygon must be a GeoJSON Polygon: {"type": "Polygon", "coordinates": '
            "[[[lon, lat], ...]]}"
        )
    rings = polygon.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise DeviceError("contract_polygon.coordinates must be a list of linear rings")
    total = 0
    for r, ring in enumerate(rings):
        if not isinstance(ring, list) or len(ring) < 4:
            raise DeviceError(f"contract_polygon ring {r} needs at least 4 positions (closed: last = first)")
        for p, position in enumerate(ring):
            if (
                not isinstance(position, list)
                or len(position) not in (2, 3)
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                    for v in position
                )
            ):
                raise DeviceError(
                    f"contract_polygon ring {r} position {p} must be [lon, lat] as finite numbers"
                )
            if not (-180 <= position[0] <= 180 and -90 <= position[1] <= 90):
                raise DeviceError(
                    f"contract_polygon ring {r} position {p}: longitude must be in -180..180 "
                    "and latitude in -90..90 ([lon, lat] order, RFC 7946)"
                )
        if ring[0][:2] != ring[-1][:2]:
            raise DeviceError(
                f"contract_polygon ring {r} is not closed: its last position must equal its first"
            )
        total += len(ring)
    if total > MAX_POLYGON_POINTS:
        raise DeviceError(f"contract_polygon has {total} positions; at most {MAX_POLYGON_POINTS}")
    return {
        "type": "Polygon",
        "coordinates": [[[to_coordinate_resolution(float(v)) for v in pos[:2]] for pos in ring]
                        for ring in rings],
    }


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Filters of the device list (all optional) and its keyset page."""

    monitoring_state: str | None = None
    power_state: str | None = None
    online: bool | None = None
    seen_after: datetime | None = None
    seen_before: datetime | None = None
    min_severity: str | None = None  # devices with an open event of at least this severity
    assigned_to: str | None = None  # account managers: only their devices
    after_id: str | None = None
    limit: int = 100


# Power state and open events (with their event's highest severity) come from rows kept current as
# they are written (migration 0014: device_latest, open_events), not from the time series. The page
# is chosen first; its open events are then read in one range of device ids and grouped, not
# probed device by device.
_LIST = """
WITH page AS (
    SELECT d.device_id, d.vin, d.time_zone, d.contract_region, d.monitoring_state, d.registered_at,
           l.last_received_at, l.power_state
    FROM devices d LEFT JOIN device_latest l ON l.device_id = d.device_id
    WHERE {where}
    ORDER BY d.device_id
    LIMIT %(limit)s
), open AS (
    SELECT x.device_id, count(*) AS open_count, max(x.rank) AS max_rank FROM open_events x
    WHERE x.device_id BETWEEN (SELECT min(device_id) FROM page) AND (SELECT max(device_id) FROM page)
    GROUP BY x.device_id
)
SELECT p.*, coalesce(o.open_count, 0), o.max_rank
FROM page p LEFT JOIN open o ON o.device_id = p.device_id
ORDER BY p.device_id"""


def list_fleet(
    conn: Conn, flt: DeviceFilter, now: datetime, online_window: timedelta
) -> list[dict[str, Any]]:
    """One page (`limit` rows) of devices after `after_id`, by id, with their latest state."""
    where = ["true"]
    params: dict[str, Any] = {"limit": flt.limit, "online_since": now - online_window}
    if flt.after_id is not None:
        where.append("d.device_id > %(after_id)s")
        params["after_id"] = flt.after_id
    if flt.assigned_to is not None:
        where.append(
            "EXISTS (SELECT 1 FROM device_assignments a WHERE a.device_id = d.device_id "
            "AND a.user_name = %(assigned_to)s)"
        )
        params["assigned_to"] = flt.assigned_to
    if flt.monitoring_state is not None:
        where.append("d.monitoring_state = %(monitoring_state)s")
        params["monitoring_state"] = flt.monitoring_state
    if flt.power_state is not None:
        where.append("l.power_state = %(power_state)s")
        params["power_state"] = flt.power_state
    if flt.online is True:
        where.append("l.last_received_at >= %(online_since)s")
    elif flt.online is False:
        where.append("(l.last_received_at IS NULL OR l.last_received_at < %(online_since)s)")
    if flt.seen_after is not None:
        where.append("l.last_received_at >= %(seen_after)s")
        params["seen_after"] = flt.seen_after
    if flt.seen_before is not None:
        where.append("(l.last_received_at IS NULL OR l.last_received_at < %(seen_before)s)")
        params["seen_before"] = flt.seen_before
    if flt.min_severity is not None:
        where.append(
            "EXISTS (SELECT 1 FROM open_events x WHERE x.device_id = d.device_id "
            "AND x.rank >= %(min_rank)s)"
        )
        params["min_rank"] = SEVERITIES.index(flt.min_severity) + 1
    rows = conn.execute(_LIST.format(where=" AND ".join(where)), params).fetchall()
    online_since = params["online_since"]
    return [
        {
            "device_id": r[0],
            "vin": r[1],
            "time_zone": r[2],
            "contract_region": r[3],
            "monitoring_state": r[4],
            "registered_at": r[5],
            "last_seen_at": r[6],
            "online": r[6] is not None and r[6] >= online_since,
            "power_state": r[7],
            "open_events": int(r[8]),
            "open_max_severity": SEVERITIES[r[9] - 1] if r[9] else None,
        }
        for r in rows
    ]


def reconcile_open_events(conn: Conn) -> tuple[int, int]:
    """Remove the device list's open events whose lifecycle row is no longer open or stored (its
    partition or chunk dropped by retention: triggers do not see that) and the ranks no open event
    needs (an event and its lifecycle row are written in one transaction, so an uncommitted one is
    invisible here together with its rank); returns (open events, ranks) removed. Run by
    `lienwatch cloud maintain` as the owner."""
    gone = conn.execute(
        "DELETE FROM open_events o WHERE NOT EXISTS (SELECT 1 FROM event_lifecycle l "
        "WHERE l.device_id = o.device_id AND l.event_time = o.event_time AND l.boot_id = o.boot_id "
        "AND l.seq = o.seq AND l.state IN ('open', 'acknowledged'))").rowcount
    ranks = conn.execute(
        "DELETE FROM event_ranks r WHERE NOT EXISTS (SELECT 1 FROM open_events o "
        "WHERE o.device_id = r.device_id AND o.event_id = r.event_id)").rowcount
    return max(gone, 0), max(ranks, 0)


def open_events(conn: Conn, device_id: str) -> list[dict[str, Any]]:
    """The device's open and acknowledged events, newest first."""
    rows = conn.execute(
        f"""
        SELECT lc.event_id, lc.event_time, lc.state, r.detector, r.condition, r.rank
        FROM event_lifecycle lc
        CROSS JOIN LATERAL (SELECT min(e.detector) AS detector, min(e.condition) AS condition,
                                   max({_SEVERITY_RANK}) AS rank
                            FROM events e WHERE e.device_id = lc.device_id AND e.event_id = lc.event_id) r
        WHERE lc.device_id = %s AND lc.state IN ('open', 'acknowledged')
        ORDER BY lc.event_time DESC LIMIT 100""",
        (device_id,),
    ).fetchall()
    return [
        {
            "event_id": r[0],
            "raised_at": r[1],
            "state": r[2],
            "detector": r[3],
            "condition": r[4],
            "severity": SEVERITIES[(r[5] or 1) - 1],
        }
        for r in rows
    ]


def _clock_name(value: int | None) -> str | None:
    """What disciplined the device's clock when it stamped its status (protocol ClockQuality)."""
    if value is None:
        return None
    try:
        return ClockQuality(value).name
    except ValueError:
        return "UNKNOWN"


def device_detail(
    conn: Conn, device_id: str, now: datetime, online_window: timedelta, positions_since: datetime | None
) -> dict[str, Any] | None:
    """Registration and latest state of one device; None if it is not registered. The latest
    position is left out when it is older than `positions_since` (an account manager's window)."""
    row = conn.execute(
        "SELECT d.device_id, d.vin, d.cert_fingerprint, d.time_zone, d.contract_region, d.contract_polygon, "
        "d.monitoring_state, d.registered_at, l.last_message_at, l.last_received_at, l.last_position_at, "
        "l.lat_deg, l.lon_deg, l.speed_kmh FROM devices d LEFT JOIN device_latest l USING (device_id) "
        "WHERE d.device_id = %s",
        (device_id,),
    ).fetchone()
    if row is None:
        return None
    pois = [
        {"name": p[0], "kind": p[1], "lat_deg": p[2], "lon_deg": p[3], "radius_m": p[4]}
        for p in conn.execute(
            "SELECT name, kind, lat_deg, lon_deg, radius_m FROM points_of_interest "
            "WHERE device_id = %s ORDER BY name",
            (device_id,),
        ).fetchall()
    ]
    position = None
    if (
        row[10] is not None
        and row[11] is not None
        and (positions_since is None or row[10] >= positions_since)
    ):
        position = {
            "time": row[10],
            "age_s": max(0.0, (now - row[10]).total_seconds()),
            "lat_deg": row[11],
            "lon_deg": row[12],
            "speed_kmh": row[13],
        }
    status = conn.execute(
        "SELECT time, power_state, supply_v, backup_v, energy_forecast_days, firmware, config_version, "
        "queue_depth, clock_quality FROM device_status WHERE device_id = %s ORDER BY time DESC LIMIT 1",
        (device_id,),
    ).fetchone()
    return {
        "device_id": row[0],
        "vin": row[1],
        "cert_fingerprint": row[2],
        "time_zone": row[3],
        "contract_region": row[4],
        "contract_polygon": row[5],
        "monitoring_state": row[6],
        "registered_at": row[7],
        "points_of_interest": pois,
        "last_message_at": row[8],
        "last_seen_at": row[9],
        "online": row[9] is not None and row[9] >= now - online_window,
        "position": position,
        "ignition": ignition(conn, device_id, now, status[1] if status else None),
        "status": None
        if status is None
        else {
            "time": status[0],
            "power_state": status[1],
            "supply_v": status[2],
            "backup_v": status[3],
            "energy_forecast_days": status[4],
            "firmware": status[5],
            "config_version": status[6],
            "queue_depth": status[7],
            "clock_quality": _clock_name(status[8]),
        },
        "open_events": open_events(conn, device_id),
    }


def ignition(conn: Conn, device_id: str, now: datetime, power_state: str | None) -> dict[str, Any]:
    """Ignition from the newest LowVoltageSystemState sample of the last day (ON/START = on), else
    from the power state of the latest status (ACTIVE = on); `source` says which."""
    signal_id = default_catalog().id_of(IGNITION_PATH)
    row = conn.execute(
        "SELECT time, value FROM signal_samples WHERE device_id = %s AND time >= %s AND time <= %s "
        "AND signal_id = %s ORDER BY time DESC LIMIT 1",
        (device_id, now - IGNITION_LOOKBACK, now + timedelta(minutes=5), signal_id),
    ).fetchone()
    if row is not None:
        return {"on": row[1] >= 4, "time": row[0], "source": "signal"}
    if power_state in ("ACTIVE", "IDLE", "SLEEP", "DEEP_SLEEP"):
        return {"on": power_state == "ACTIVE", "time": None, "source": "power_state"}
    return {"on": None, "time": None, "source": "unknown"}


def update_registration(conn: Conn, device_id: str, fields: dict[str, Any]) -> None:
    """Change the registration columns present in `fields` (vin, cert_fingerprint, time_zone,
    contract_region, contract_polygon: a checked Polygon or None, monitoring_state) and replace the
    points of interest (`fields["points_of_interest"]`), in the caller's transaction."""
    if "monitoring_state" in fields and fields["monitoring_state"] not in MONITORING_STATES:
        raise DeviceError(
            f"monitoring_state {fields['monitoring_state']!r} is unknown "
            f"(known: {', '.join(MONITORING_STATES)})"
        )
    if fields.get("contract_polygon") is not None:
        fields = {**fields, "contract_polygon": json.dumps(check_polygon(fields["contract_polygon"]))}
    columns = [
        name
        for name in (
            "vin",
            "cert_fingerprint",
            "time_zone",
            "contract_region",
            "contract_polygon",
            "monitoring_state",
        )
        if name in fields
    ]
    try:
        if columns:
            assignments = ", ".join(f"{name} = %({name})s" for name in columns)
            values: dict[str, Any] = {name: fields[name] for name in columns}
            values["device_id"] = device_id
            conn.execute(f"UPDATE devices SET {assignments} WHERE device_id = %(device_id)s", values)
        if "points_of_interest" in fields:
            conn.execute("DELETE FROM points_of_interest WHERE device_id = %s", (device_id,))
            for poi in fields["points_of_interest"]:
                poi = check_poi(poi if isinstance(poi, PointOfInterest) else PointOfInterest(**poi))
                conn.execute(
                    "INSERT INTO points_of_interest (device_id, name, kind, lat_deg, lon_deg, radius_m) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (device_id, poi.name, poi.kind, poi.lat_deg, poi.lon_deg, poi.radius_m),
                )
    except psycopg.errors.UniqueViolation as error:
        what = (error.diag.constraint_name or "").replace("devices_", "").replace("_key", "")
        raise DeviceError(
            f"device {device_id!r}: {what or 'a key'} is already used by another device"
        ) from None
