"""deploy/postgres/roles.sql and grants.sql on a real PostgreSQL: the receiver works as
lienwatch_ingest and can destroy nothing; retention runs as the owner (`lienwatch cloud maintain`)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from cloud.ingest.receiver import Receiver
from cloud.store.db import Conn, connect
from cloud.store.layout import BY_NAME, TIME_SERIES
from cloud.store.migrate import migrate
from cloud.store.partitions import PartitionKeeper, list_partitions, partition_for
from hil.services import REPO_ROOT, MosquittoBroker, PostgresServer
from lienwatch.cli import main
from protocol.messages import MessageKind
from protocol.topics import uplink_topic
from tests.cloud.helpers import Publisher, event, receiver_config, telemetry
from tests.cloud.test_ingest import count, wait_for
from tests.conftest import started_postgres
from tests.edge_agent.conftest import wait_until

DEVICE = "veh-roles"
POSTGRES_DIR = REPO_ROOT / "deploy/postgres"


class Cluster:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def dsn(self, role: str, database: str = "lienwatch") -> str:
        return f"postgresql://{role}@127.0.0.1:{self.server.port}/{database}"

    def psql(self, dsn: str, script: str) -> None:
        subprocess.run([str(self.server.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                        "-f", str(POSTGRES_DIR / script)], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A server of its own (roles are cluster-wide): roles.sql as superuser, migrate and grants.sql
    as lienwatch_migrate, exactly as deploy/postgres/README.md says."""
    server = started_postgres()
    try:
        cluster = Cluster(server)
        cluster.psql(cluster.dsn("postgres", "postgres"), "roles.sql")
        migrate(cluster.dsn("lienwatch_migrate"))
        cluster.psql(cluster.dsn("lienwatch_migrate"), "grants.sql")
        with connect(cluster.dsn("lienwatch_migrate")) as owner:
            owner.execute("INSERT INTO devices (device_id, time_zone) VALUES (%s, 'UTC')", (DEVICE,))
        yield cluster
    finally:
        server.stop()


@pytest.fixture
def ingest(cluster: Cluster) -> Iterator[Conn]:
    with connect(cluster.dsn("lienwatch_ingest")) as conn:
        yield conn


def test_the_receiver_stores_everything_as_the_ingest_role(
        cluster: Cluster, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    old_ns = (datetime.now(UTC) - timedelta(days=20)).replace(hour=12).timestamp()
    old_day = datetime.fromtimestamp(old_ns, UTC).date()
    with connect(cluster.dsn("lienwatch_migrate")) as owner:
        assert partition_for(BY_NAME["signal_samples"], old_day).name not in {
            p.name for p in list_partitions(owner, BY_NAME["signal_samples"])}
    receiver = Receiver(receiver_config(cluster.dsn("lienwatch_ingest"), mosquitto.port, "rx-roles",
                                        group="roles"))
    receiver.start()
    publisher = Publisher(mosquitto.port, "pub-roles")
    try:
        with connect(cluster.dsn("lienwatch_migrate")) as owner:
            # `start()` returns once SUBSCRIBE is sent, not acknowledged: garbage until one is
            # kept aside (as lienwatch_ingest) shows the subscription is in place.
            for _ in range(20):
                publisher.publish([(uplink_topic(MessageKind.TELEMETRY, DEVICE), b"\xff not cbor")])
                if wait_until(lambda: count(owner, "rejected_messages") > 0, 1.0):
                    break
            publisher.send([telemetry(DEVICE, 1, samples=30, fixes=3),  # partitions exist (made ahead)
                            telemetry(DEVICE, 2, samples=10, fixes=0, start_ns=int(old_ns) * 10**9),
                            event(DEVICE, 3)])
            wait_for(lambda: count(owner, "signal_samples") == 40 and count(owner, "events") == 1,
                     what="every row stored as lienwatch_ingest")
            # Only the garbage was kept aside: nothing the receiver wrote was refused (store_error).
            reasons = owner.execute("SELECT DISTINCT reason_code FROM rejected_messages").fetchall()
            assert reasons == [("malformed_message",)]
            assert count(owner, "positions") == 3 and count(owner, "device_latest") == 1
            # The device list's kept state (migration 0014) was written by its owner-run triggers,
            # though the receiver's role may not write those tables (DESTRUCTIVE below).
            assert count(owner, "open_events") == 1 and count(owner, "event_ranks") == 1
            # The partition for the old day was made on demand, by the owner's function.
            made = owner.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = %s",
                                 (partition_for(BY_NAME["signal_samples"], old_day).name,)).fetchone()
            assert made == ("lienwatch_owner",)
        assert receiver.failure is None
    finally:
        publisher.close()
        receiver.stop()
    # Maintenance at start (partitions ahead, retention, summaries) raised nothing: retention is
    # skipped, and says so, instead of failing every hour.
    assert not [r for r in caplog.records if "maintenance failed" in r.getMessage()]
    assert [r for r in caplog.records if "retention skipped" in r.getMessage()]


DESTRUCTIVE = [
    "DROP TABLE positions",
    "DROP TABLE devices CASCADE",
    "TRUNCATE signal_samples",
    "TRUNCATE devices CASCADE",
    "DELETE FROM positions",
    "DELETE FROM events",
    "DELETE FROM devices",
    "UPDATE devices SET vin = 'WVWZZZ1KZAW000666'",
    "UPDATE signal_samples SET value = 0",
    "INSERT INTO devices (device_id, time_zone) VALUES ('rogue', 'UTC')",
    "INSERT INTO commands (command_id, device_id, nonce, kind) VALUES ('c1', 'veh-roles', '\\x00', 'reboot')",
    "ALTER TABLE positions ADD COLUMN x int",
    "CREATE TABLE scratch (x int)",
    "ALTER TABLE signal_samples DETACH PARTITION {signal_partition}",
    "DROP TABLE {signal_partition}",
    "CREATE TABLE signal_samples_p20990101 PARTITION OF signal_samples "
    "FOR VALUES FROM ('2099-01-01') TO ('2099-01-02')",
    "DROP FUNCTION lienwatch_create_partition(text, date, date)",
    # the device list's kept state (migration 0014) is written by its triggers, as the owner
    "DELETE FROM open_events",
    "INSERT INTO event_ranks (device_id, event_id, rank) VALUES ('veh-roles', 1, 3)",
    "DELETE FROM event_ranks",
]


@pytest.mark.parametrize("statement", DESTRUCTIVE)
def test_the_ingest_role_cannot_drop_truncate_delete_or_rewrite(ingest: Conn, statement: str) -> None:
    partition = list_partitions(ingest, BY_NAME["signal_samples"])[0].name
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        ingest.execute(statement.format(signal_partition=partition))


@pytest.mark.parametrize("table", [t.name for t in TIME_SERIES])
def test_the_partition_function_makes_only_scheme_partitions(ingest: Conn, table: str) -> None:
    """The function's table list and granularities agree with cloud/store/layout.py, and it refuses
    every other table, size or name."""
    start = date.today().replace(day=1) + timedelta(days=40)
    start = start.replace(day=1)  # the first of a month ahead: valid for either granularity
    right = partition_for(BY_NAME[table], start)
    wrong_end = right.start + (timedelta(days=1) if right.end != right.start + timedelta(days=1)
                               else timedelta(days=2))
    with pytest.raises(psycopg.errors.RaiseException):
        ingest.execute("SELECT lienwatch_create_partition(%s, %s, %s)", (table, right.start, wrong_end))
    row = ingest.execute("SELECT lienwatch_create_partition(%s, %s, %s)",
                         (table, right.start, right.end)).fetchone()
    assert row is not None and isinstance(row[0], bool)
    assert right.name in {p.name for p in list_partitions(ingest, BY_NAME[table])}
    for other, first, last in (("devices", right.start, right.end), ("pg_class", right.start, right.end),
                               (table, right.start + timedelta(days=3000), right.end + timedelta(days=3000))):
        with pytest.raises(psycopg.errors.RaiseException):
            ingest.execute("SELECT lienwatch_create_partition(%s, %s, %s)", (other, first, last))


def test_public_may_not_connect_and_only_the_receiver_has_temp_tables(cluster: Cluster) -> None:
    with connect(cluster.dsn("postgres", "postgres")) as superuser:
        superuser.execute("DROP ROLE IF EXISTS stranger")
        superuser.execute("CREATE ROLE stranger LOGIN")
    with pytest.raises(Exception, match="permission denied for database"):
        connect(cluster.dsn("stranger"))
    with connect(cluster.dsn("lienwatch_api")) as api, pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.execute("CREATE TEMP TABLE t (x int)")
    with connect(cluster.dsn("lienwatch_ingest")) as ingest:
        ingest.execute("CREATE TEMP TABLE t (x int)")


def test_retention_runs_as_the_owner_and_not_as_the_receiver(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    old = datetime.now(UTC).date() - timedelta(days=45)  # rejected messages are kept 30 days
    name = partition_for(BY_NAME["rejected_messages"], old).name
    with connect(cluster.dsn("lienwatch_migrate")) as owner:
        PartitionKeeper().ensure(owner, "rejected_messages", old, old)
        assert main(["cloud", "maintain", "--dsn", cluster.dsn("lienwatch_ingest")]) == 2
        assert "does not own" in capsys.readouterr().err
        assert name in {p.name for p in list_partitions(owner, BY_NAME["rejected_messages"])}
        assert main(["cloud", "maintain", "--dsn", cluster.dsn("lienwatch_migrate")]) == 0
        assert name in capsys.readouterr().out
        assert name not in {p.name for p in list_partitions(owner, BY_NAME["rejected_messages"])}
    # An empty DSN: tests/cloud/test_dsn_and_timeouts.py (every command that connects).
    assert main(["cloud", "maintain", "--dsn", cluster.dsn("lienwatch_migrate"),
                 "--config", "/nonexistent"]) == 2
    assert capsys.readouterr().err.startswith("lienwatch: ConfigError: ")


API_CANNOT = [
    "DELETE FROM audit_log",
    "UPDATE audit_log SET allowed = true",
    "TRUNCATE audit_log",
    "DROP TABLE audit_log",
    "DELETE FROM api_keys",
    "DELETE FROM devices",
    "DELETE FROM positions",
    "INSERT INTO positions (device_id, time, boot_id, seq, row_idx, lat_deg, lon_deg, clock_quality) "
    "VALUES ('veh-roles', now(), 1, 1, 0, 0, 0, 0)",
    "UPDATE event_actions SET comment = ''",
    "CREATE TABLE scratch (x int)",
    "DELETE FROM open_events",
    "INSERT INTO event_ranks (device_id, event_id, rank) VALUES ('veh-roles', 1, 3)",
]


@pytest.mark.parametrize("statement", API_CANNOT)
def test_the_api_role_cannot_rewrite_the_audit_log_or_stored_data(cluster: Cluster, statement: str) -> None:
    with connect(cluster.dsn("lienwatch_api")) as api, pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.execute(statement)


def test_the_api_serves_as_the_api_role(cluster: Cluster) -> None:
    """The API on lienwatch_api: ready, registers and provisions, audits a read (making next
    month's audit partition through the owner's function), refusals included."""
    from fastapi.testclient import TestClient

    from cloud.api.app import create_app
    from cloud.api.keys import create_key
    from lienwatch.clock import ManualClock
    from tests.cloud.api.conftest import config_for

    with connect(cluster.dsn("lienwatch_migrate")) as owner:
        _, token = create_key(owner, "ro-roles", "risk_officer")
        _, manager = create_key(owner, "am-roles", "account_manager")
    later = datetime.now(UTC) + timedelta(days=62)  # a month whose audit partition nobody made yet
    clock = ManualClock(wall_ns=int(later.timestamp() * 1e9))
    app = create_app(config_for(cluster.dsn("lienwatch_api")), clock=clock)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        assert client.get(f"/devices/{DEVICE}", headers=auth).status_code == 200
        refused = client.get(f"/devices/{DEVICE}", headers={"Authorization": f"Bearer {manager}"})
        assert refused.status_code == 403
        created = client.post("/devices", headers=auth, json={
            "device_id": "veh-api-role", "time_zone": "Europe/Berlin",
            "points_of_interest": [{"name": "home", "kind": "home", "lat_deg": 52.5, "lon_deg": 13.4}]})
        assert created.status_code == 201, created.text
        changed = client.patch("/devices/veh-api-role", headers=auth, json={"points_of_interest": []})
        assert changed.status_code == 200 and changed.json()["points_of_interest"] == []
    with connect(cluster.dsn("lienwatch_migrate")) as owner:
        rows = owner.execute("SELECT user_name, allowed FROM audit_log WHERE device_id = %s "
                             "ORDER BY time, id", (DEVICE,)).fetchall()
        assert rows[-2:] == [("ro-roles", True), ("am-roles", False)]
        made = partition_for(BY_NAME["audit_log"], later.date()).name
        assert made in {p.name for p in list_partitions(owner, BY_NAME["audit_log"])}
