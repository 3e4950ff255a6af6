"""What each watcher looks for. Each returns the devices where its condition holds now, and the
devices it cannot judge (too little data: nothing is raised or cleared for them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from cloud.analytics.geo import haversine_m
from cloud.store.db import Conn
from cloud.watchers.config import HeartbeatConfig, NightParkingConfig, OfflineConfig
from cloud.watchers.store import Finding


@dataclass
class Verdict:
    holds: dict[str, Finding] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)


_ACTIVE = "SELECT d.device_id, d.registered_at, l.last_received_at, l.lat_deg, l.lon_deg " \
          "FROM devices d LEFT JOIN device_latest l USING (device_id) WHERE d.monitoring_state = 'active'"


def offline(conn: Conn, now: datetime, config: OfflineConfig) -> Verdict:
    """Nothing received for more than `after_h` (per device: `devices`), counted from the
    registration for a device that never sent anything."""
    verdict = Verdict()
    for device_id, registered_at, last_received, lat, lon in conn.execute(_ACTIVE):
        since = last_received or registered_at
        limit_h = config.after_h_for(device_id)
        silent_h = (now - since).total_seconds() / 3600
        if silent_h > limit_h:
            seen = "never sent anything" if last_received is None else f"last message {since.isoformat()}"
            verdict.holds[device_id] = Finding(
                f"offline for {silent_h:.1f} h (limit {limit_h:g} h); {seen}",
                {"offline_h": round(silent_h, 2), "after_h": limit_h,
                 "last_received_at": None if last_received is None else last_received.isoformat()}, lat, lon)
    return verdict


def heartbeat(conn: Conn, now: datetime, config: HeartbeatConfig) -> Verdict:
    """The device sends (something received within `after_h`) but no status for `after_h`."""
    verdict = Verdict()
    since = now - timedelta(hours=config.after_h)
    rows = conn.execute(
        "SELECT d.device_id, l.lat_deg, l.lon_deg, (SELECT max(time) FROM device_status s "
        "    WHERE s.device_id = d.device_id AND s.time > %(lookback)s) AS last_status "
        "FROM devices d JOIN device_latest l USING (device_id) "
        "WHERE d.monitoring_state = 'active' AND l.last_received_at > %(since)s "
        "  AND d.registered_at < %(since)s",
        {"since": since, "lookback": now - timedelta(days=30)}).fetchall()
    for device_id, lat, lon, last_status in rows:
        if last_status is None or last_status <= since:
            when = "none in 30 days" if last_status is None else f"last {last_status.isoformat()}"
            verdict.holds[device_id] = Finding(
                f"the device sends but no heartbeat (status) for {config.after_h:g} h ({when})",
                {"after_h": config.after_h, "last_status_at": None if last_status is None
                 else last_status.isoformat()}, lat, lon)
    return verdict


_NIGHTS = """
    WITH homes AS (
        SELECT d.device_id, d.time_zone FROM devices d
        WHERE d.monitoring_state = 'active'
          AND EXISTS (SELECT 1 FROM points_of_interest p WHERE p.device_id = d.device_id AND p.kind = 'home')
    ), nights AS (
        SELECT h.device_id, n.k,
               (((%(now)s AT TIME ZONE h.time_zone)::date - n.k)::timestamp
                + make_interval(hours => %(hour)s)) AT TIME ZONE h.time_zone AS at
        FROM homes h CROSS JOIN generate_series(0, %(nights)s - 1) n(k)
    )
    SELECT n.device_id, n.at, f.lat_deg, f.lon_deg
    FROM nights n LEFT JOIN LATERAL (
        SELECT lat_deg, lon_deg FROM positions p
        WHERE p.device_id = n.device_id AND p.time <= n.at AND p.time > n.at - interval '6 hours'
          AND p.fix_type IS DISTINCT FROM 0
        ORDER BY p.time DESC LIMIT 1) f ON true
    WHERE n.at <= %(now)s"""


def night_parking(conn: Conn, now: datetime, config: NightParkingConfig) -> Verdict:
    """The car's place at `night_hour` local on each of the last `nights` nights: raised when at
    least `min_share` of the nights with a position put it at one place (within `cluster_m` of the
    median of the nights away) that is not a registered home (its radius + `away_m`)."""
    homes: dict[str, list[tuple[float, float, float]]] = {}
    for device_id, lat, lon, radius in conn.execute(
            "SELECT device_id, lat_deg, lon_deg, radius_m FROM points_of_interest WHERE kind = 'home'"):
        homes.setdefault(device_id, []).append((lat, lon, radius))
    places: dict[str, list[tuple[float, float]]] = {device_id: [] for device_id in homes}
    for device_id, _, lat, lon in conn.execute(_NIGHTS, {"now": now, "hour": config.night_hour,
                                                         "nights": config.nights}):
        if device_id in places and lat is not None:
            places[device_id].append((lat, lon))
    verdict = Verdict()
    for device_id, seen in places.items():
        if len(seen) < config.min_nights:
            verdict.unknown.add(device_id)
            continue
        lat, lon = np.array([p[0] for p in seen]), np.array([p[1] for p in seen])
        away = np.ones(len(seen), dtype=bool)
        for h_lat, h_lon, radius in homes[device_id]:
            from_home = haversine_m(lat, lon, np.full_like(lat, h_lat), np.full_like(lon, h_lon))
            away &= from_home > radius + config.away_m
        if not away.any():
            continue
        m_lat, m_lon = float(np.median(lat[away])), float(np.median(lon[away]))
        there = away & (haversine_m(lat, lon, np.full_like(lat, m_lat), np.full_like(lon, m_lon))
                        <= config.cluster_m)
        share = float(there.sum()) / len(seen)
        if share >= config.min_share:
            h_lat, h_lon, _ = homes[device_id][0]
            place_m = float(haversine_m(np.array([m_lat]), np.array([m_lon]), np.array([h_lat]),
                                        np.array([h_lon]))[0])
            verdict.holds[device_id] = Finding(
                f"parked at night {int(there.sum())} of {len(seen)} nights at one place "
                f"{place_m / 1000:.1f} km from the registered home",
                {"nights": len(seen), "nights_there": int(there.sum()), "share": round(share, 3),
                 "place_lat_deg": round(m_lat, 6), "place_lon_deg": round(m_lon, 6),
                 "from_home_m": round(place_m)}, m_lat, m_lon)
    return verdict
