"""Fixtures for the API tests: a migrated database, the app on a TestClient (lifespan run), a key
per role, and device data stored by the receiver's own writer (cloud/ingest/writer.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.config import AppConfig, parse_config
from cloud.api.keys import create_key
from cloud.ingest.validate import Accepted, Incoming
from cloud.ingest.writer import BatchWriter
from cloud.store.db import Conn, connect
from cloud.store.devices import Device, add_device
from cloud.store.retention import RetentionPolicy
from lienwatch.clock import ManualClock
from protocol.messages import (
    ClockQuality,
    CommandAck,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    PowerState,
    SampleColumns,
    Severity,
    Status,
    TelemetryBatch,
    Transition,
)

S = 10**9
NOW_NS = time.time_ns() // S * S
ROLES = ("admin", "risk_officer", "account_manager", "auditor")


@dataclass
class Api:
    """The running app, its clock and database, and a bearer token per role."""

    client: TestClient
    clock: ManualClock
    conn: Conn
    dsn: str
    tokens: dict[str, str] = field(default_factory=dict)
    seq: int = 0

    def get(self, path: str, role: str = "risk_officer", **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.auth(role), **kwargs)

    def post(self, path: str, role: str = "risk_officer", **kwargs: Any) -> Any:
        return self.client.post(path, headers={**self.auth(role), **kwargs.pop("headers", {})}, **kwargs)

    def patch(self, path: str, role: str = "risk_officer", **kwargs: Any) -> Any:
        return self.client.patch(path, headers=self.auth(role), **kwargs)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def audit_rows(self, **where: Any) -> list[dict[str, Any]]:
        clause = " AND ".join(f"{k} = %({k})s" for k in where) or "true"
        cur = self.conn.execute(f"SELECT * FROM audit_log WHERE {clause} ORDER BY time, id", where)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def config_for(dsn: str, **api: Any) -> AppConfig:
    return parse_config({"database": {"dsn": dsn}, "api": api})


@pytest.fixture
def api(migrated_db: str) -> Iterator[Api]:
    clock = ManualClock(wall_ns=NOW_NS)
    app = create_app(config_for(migrated_db, account_manager_track_days=30), clock=clock)
    with connect(migrated_db) as conn, TestClient(app) as client:
        harness = Api(client, clock, conn, migrated_db)
        for role in ROLES:
            _, harness.tokens[role] = create_key(conn, f"{role.replace('_', '-')}-1", role)
        yield harness


def register(conn: Conn, device_id: str, *, assign_to: str | None = None, time_zone: str = "UTC") -> None:
    add_device(conn, Device(device_id=device_id, time_zone=time_zone))
    if assign_to:
        conn.execute("INSERT INTO device_assignments (user_name, device_id) VALUES (%s, %s)",
                     (assign_to, device_id))


def store(conn: Conn, messages: list[Any], received_ns: int = NOW_NS) -> None:
    """Write uplink messages with the receiver's writer, as if they had arrived at `received_ns`."""
    writer = BatchWriter(conn, mode="plain", receiver_id="api-test", policy=RetentionPolicy())
    outcomes = [Accepted(Incoming("t", b"", i, 1, received_ns), m, 1) for i, m in enumerate(messages)]
    writer.write(outcomes, datetime.fromtimestamp(received_ns / S, UTC))  # type: ignore[arg-type]


def header(device: str, seq: int, at_ns: int) -> Header:
    return Header(device, 1, seq, at_ns, ClockQuality.GNSS)


def fixes(device: str, seq: int, at_ns: int, count: int = 3, lat: float = 52.52) -> TelemetryBatch:
    cols = FixColumns.from_fixes(GnssFix(at_ns + i * S, lat + i * 1e-4, 13.40, 40.0, 30.0, 90.0, 0.9, 10,
                                         FixType.FIX_3D) for i in range(count))
    return TelemetryBatch(header(device, seq, at_ns), cols, SampleColumns((), (), ()))


def status(device: str, seq: int, at_ns: int, power: PowerState = PowerState.SLEEP) -> Status:
    return Status(header(device, seq, at_ns), power, 12.4, 3.9, "1.4.2", 7, 0, energy_forecast_days=61.5)


def event(device: str, seq: int, event_id: int, at_ns: int, severity: Severity = Severity.ALERT,
          detector: str = "tow", transition: Transition = Transition.RAISED) -> Event:
    return Event(header(device, seq, at_ns), event_id, severity, detector, at_ns, {"distance_m": 120.0},
                 transition=transition, raised_ns=None if transition is Transition.RAISED else at_ns)


def ack(device: str, seq: int, at_ns: int, nonce: bytes, ok: bool = True) -> CommandAck:
    from protocol.messages import AckStatus

    return CommandAck(header(device, seq, at_ns), nonce, AckStatus.DONE if ok else AckStatus.FAILED)
