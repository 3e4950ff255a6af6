"""The audit trail beyond the routes: location ranges of an account manager, a write that cannot
be stored fails the request, and retention by the `audit` data class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import AwareDatetime

from cloud.api.app import create_app
from cloud.api.auth import Caller, get_caller, require_device_access
from cloud.api.keys import create_key
from cloud.config import _retention
from cloud.store.db import connect
from cloud.store.layout import BY_NAME
from cloud.store.partitions import PartitionKeeper, list_partitions, partition_for
from cloud.store.retention import RetentionPolicy, apply_retention
from lienwatch.clock import ManualClock
from tests.cloud.api.conftest import NOW_NS, config_for, register
from tests.cloud.api.test_app import is_problem


def track_app(dsn: str) -> FastAPI:
    """The app with a route shaped like the track route (api-analytics'): a ranged location read."""
    app = create_app(config_for(dsn, account_manager_track_days=30), clock=ManualClock(wall_ns=NOW_NS))

    @app.get("/devices/{device_id}/probe")
    def probe(device_id: str, caller: Annotated[Caller, Depends(get_caller)],
              start: Annotated[AwareDatetime, Query(alias="from")],
              end: Annotated[AwareDatetime, Query(alias="to")]) -> dict[str, str]:
        require_device_access(caller, device_id, action="track", location=True, range_from=start,
                              range_to=end)
        return {"ok": device_id}

    return app


def test_a_ranged_location_read_is_audited_and_bounded_for_account_managers(migrated_db: str) -> None:
    now = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
    with connect(migrated_db) as conn, TestClient(track_app(migrated_db)) as client:
        register(conn, "veh-t", assign_to="am")
        _, manager = create_key(conn, "am", "account_manager")
        _, officer = create_key(conn, "ro", "risk_officer")
        recent = {"from": (now - timedelta(days=7)).isoformat(), "to": now.isoformat()}
        old = {"from": (now - timedelta(days=90)).isoformat(), "to": now.isoformat()}
        assert client.get("/devices/veh-t/probe", params=recent,
                          headers={"Authorization": f"Bearer {manager}"}).status_code == 200
        body = is_problem(client.get("/devices/veh-t/probe", params=old,
                                     headers={"Authorization": f"Bearer {manager}"}), 403)
        assert "30 days" in body["detail"]
        assert client.get("/devices/veh-t/probe", params=old,
                          headers={"Authorization": f"Bearer {officer}"}).status_code == 200
        rows = conn.execute("SELECT user_name, allowed, range_from, range_to FROM audit_log "
                            "WHERE action = 'track' ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("am", True), ("am", False), ("ro", True)]
    assert rows[1][2] == now - timedelta(days=90) and rows[1][3] == now


def test_a_read_that_cannot_be_audited_is_not_served(migrated_db: str) -> None:
    with connect(migrated_db) as conn, TestClient(create_app(config_for(migrated_db)),
                                                  raise_server_exceptions=False) as client:
        register(conn, "veh-u")
        _, token = create_key(conn, "ro", "risk_officer")
        conn.execute("ALTER TABLE audit_log ADD CONSTRAINT no_more CHECK (time < '2000-01-01')")
        response = client.get("/devices/veh-u", headers={"Authorization": f"Bearer {token}"})
        is_problem(response, 500)
        assert "time_zone" not in response.text and "CheckViolation" not in response.text


@pytest.mark.plain_only
def test_audit_records_expire_with_the_audit_data_class(migrated_db: str) -> None:
    now = datetime.now(UTC)
    six_years = (now - timedelta(days=6 * 365)).date()
    two_years = (now - timedelta(days=2 * 365)).date()
    with connect(migrated_db) as conn:
        keeper = PartitionKeeper()
        for day in (six_years, two_years):
            keeper.ensure(conn, "audit_log", day, day)
        table = BY_NAME["audit_log"]
        result = apply_retention(conn, RetentionPolicy(), now, "plain")
        assert partition_for(table, six_years).name in result.removed  # default: 5 years
        assert partition_for(table, two_years).name in {p.name for p in list_partitions(conn, table)}
        shorter = _retention({"audit_days": 365})
        assert shorter.days["audit"] == 365
        assert partition_for(table, two_years).name in apply_retention(conn, shorter, now, "plain").removed


def test_a_record_for_a_month_without_partition_is_stored_alone_and_inside_a_transaction(
        migrated_db: str) -> None:
    """The missing-partition path of `audit.write`: on an autocommit connection (a request's) and
    inside a caller's transaction, which goes on and commits its own work too."""
    from cloud.api import audit

    def record(year: int) -> audit.AuditRecord:
        return audit.AuditRecord(time=datetime(year, 3, 5, tzinfo=UTC), action="track", allowed=True,
                                 status=200, device_id="veh-x", detail=f"year {year}")

    with connect(migrated_db) as conn:
        audit.write(conn, record(2031))
        with conn.transaction():
            register(conn, "veh-in-tx")
            audit.write(conn, record(2032))
        rows = conn.execute("SELECT detail FROM audit_log WHERE time >= '2031-01-01' "
                            "ORDER BY time").fetchall()
        assert rows == [("year 2031",), ("year 2032",)]
        assert conn.execute("SELECT 1 FROM devices WHERE device_id = 'veh-in-tx'").fetchone() == (1,)
