"""Raise once, clear once: server-side events in the devices' `events` / `event_lifecycle` tables.

A server event has boot_id -1, a negative event_id (-n, n from `watcher_event_ids`) and the
detector `server.<watcher>` (migration 0007): no device can produce any of the three.
`watcher_state` holds one row per raised condition; its primary key (device, watcher) makes the
raise happen once however many processes run the watchers, and `DELETE ... RETURNING` the clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from cloud.store.db import Conn
from cloud.store.migrate import recorded_mode
from cloud.store.partitions import PartitionKeeper

SERVER_BOOT_ID = -1
CLOCK_QUALITY_NTP = 2  # protocol ClockQuality.NTP: the server's clock


@dataclass(frozen=True)
class Finding:
    """A condition that holds for one device now."""

    detail: str
    evidence: dict[str, float | str | None] = field(default_factory=dict)
    lat_deg: float | None = None
    lon_deg: float | None = None


@dataclass(frozen=True)
class Raised:
    device_id: str
    watcher: str
    event_id: int
    event_time: datetime


_EVENT = """
    INSERT INTO events (device_id, time, boot_id, seq, event_id, detector, severity, lat_deg, lon_deg,
                        evidence, detail, clock_quality, received_at, transition, raised_at, condition)
    VALUES (%(device)s, %(time)s, -1, %(seq)s, %(event_id)s, %(detector)s, %(severity)s, %(lat)s, %(lon)s,
            %(evidence)s, %(detail)s, 2, %(time)s, %(transition)s, %(raised_at)s, %(watcher)s)"""


class EventWriter:
    """Writes the events of the watchers through one connection (autocommit)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._plain = recorded_mode(conn) == "plain"
        self._partitions = PartitionKeeper()

    def _ensure_partitions(self, now: datetime) -> None:
        if self._plain:
            for table in ("events", "event_lifecycle"):
                self._partitions.ensure(self.conn, table, now.date(), now.date())

    def open_conditions(self, watcher: str) -> dict[str, Raised]:
        rows = self.conn.execute("SELECT device_id, event_id, event_time FROM watcher_state "
                                 "WHERE watcher = %s", (watcher,)).fetchall()
        return {r[0]: Raised(r[0], watcher, r[1], r[2]) for r in rows}

    def raise_event(self, device_id: str, watcher: str, severity: str, finding: Finding,
                    now: datetime) -> bool:
        """Raise `watcher` for `device_id` unless it is raised already; whether it was raised now."""
        self._ensure_partitions(now)
        with self.conn.transaction():
            row = self.conn.execute(
                "INSERT INTO watcher_state (device_id, watcher, event_id, event_time, seq, severity, "
                "evidence) SELECT %s, %s, -n, %s, n, %s, %s FROM nextval('watcher_event_ids') n "
                "ON CONFLICT DO NOTHING RETURNING seq",
                (device_id, watcher, now, severity, Jsonb(finding.evidence))).fetchone()
            if row is None:
                return False
            seq = int(row[0])
            self.conn.execute(_EVENT, self._params(device_id, watcher, severity, finding, now, seq, -seq,
                                                   "raised", now))
            self.conn.execute(
                "INSERT INTO event_lifecycle (device_id, event_time, boot_id, seq, event_id, state) "
                "VALUES (%s, %s, -1, %s, %s, 'open')", (device_id, now, seq, -seq))
        return True

    def clear_event(self, device_id: str, watcher: str, detail: str, now: datetime) -> bool:
        """Clear the raised `watcher` of `device_id`; whether there was one to clear."""
        self._ensure_partitions(now)
        with self.conn.transaction():
            row = self.conn.execute(
                "DELETE FROM watcher_state WHERE device_id = %s AND watcher = %s "
                "RETURNING event_id, event_time, severity", (device_id, watcher)).fetchone()
            if row is None:
                return False
            event_id, raised_at, severity = row
            seq_row = self.conn.execute("SELECT nextval('watcher_event_ids')").fetchone()
            assert seq_row is not None
            self.conn.execute(_EVENT, self._params(device_id, watcher, severity, Finding(detail), now,
                                                   int(seq_row[0]), event_id, "cleared", raised_at))
            self.conn.execute(
                "UPDATE event_lifecycle SET state = 'resolved', updated_at = %s, updated_by = 'server', "
                "note = %s WHERE device_id = %s AND event_time = %s AND boot_id = -1 AND event_id = %s "
                "AND state IN ('open', 'acknowledged')", (now, detail, device_id, raised_at, event_id))
        return True

    @staticmethod
    def _params(device_id: str, watcher: str, severity: str, finding: Finding, now: datetime, seq: int,
                event_id: int, transition: str, raised_at: datetime) -> dict[str, Any]:
        return {"device": device_id, "time": now, "seq": seq, "event_id": event_id,
                "detector": f"server.{watcher}", "severity": severity, "lat": finding.lat_deg,
                "lon": finding.lon_deg, "evidence": Jsonb(finding.evidence), "detail": finding.detail,
                "transition": transition, "raised_at": raised_at, "watcher": watcher}
