"""Schema migrations: applied once, recorded, idempotent, and never run against a newer schema."""

from __future__ import annotations

import re
from importlib import resources

import psycopg
import pytest

from cloud.store.db import connect
from cloud.store.errors import SchemaError, StoreError
from cloud.store.layout import TIME_SERIES
from cloud.store.migrate import (
    StorageMode,
    available_migrations,
    check_schema,
    detect_mode,
    latest_version,
    migrate,
)
from cloud.store.retention import REFRESH_END_OFFSET, REFRESH_SCHEDULE, RetentionPolicy, timescale_settings
from lienwatch.cli import main

TABLES = {"devices", "points_of_interest", "positions", "signal_samples", "events", "event_lifecycle",
          "device_status", "commands", "command_acks", "rejected_messages", "daily_summaries",
          "schema_migrations", "lienwatch_storage", "device_latest", "summary_dirty"}


def _server_runs_timescaledb(dsn: str) -> bool:
    with connect(dsn) as conn:
        return detect_mode(conn) == "timescaledb"


def test_migrate_creates_every_table_and_records_plain_mode(fresh_db: str) -> None:
    result = migrate(fresh_db, mode="plain")
    assert result.mode == "plain"
    assert result.applied == tuple(range(1, latest_version() + 1))
    with connect(fresh_db) as conn:
        names = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        names |= {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'p'")}  # partitioned parents
        assert names >= TABLES
        mode, version = conn.execute("SELECT mode, server_version FROM lienwatch_storage").fetchone() or ()
        assert mode == "plain" and version
        assert check_schema(conn) == "plain"
        kinds: dict[str, str] = dict(conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname IN ('positions', 'signal_samples')"))
        assert kinds == {"positions": "p", "signal_samples": "p"}


def test_auto_mode_detects_the_server(fresh_db: str) -> None:
    with connect(fresh_db) as conn:
        available = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    result = migrate(fresh_db)
    expected = "timescaledb" if _server_runs_timescaledb(fresh_db) else "plain"
    assert result.mode == expected
    if available == (0,):
        assert result.mode == "plain"
    with connect(fresh_db) as conn:
        assert check_schema(conn) == expected
        assert migrate(fresh_db, mode="auto").applied == ()  # the recorded mode wins from now on
    other: StorageMode = "plain" if expected == "timescaledb" else "timescaledb"
    with pytest.raises(SchemaError, match="set up in storage mode"):
        migrate(fresh_db, mode=other)


def test_migrate_twice_applies_nothing_the_second_time(fresh_db: str) -> None:
    migrate(fresh_db, mode="plain")
    again = migrate(fresh_db, mode="plain")
    assert again.applied == ()
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (latest_version(),)


def test_migrate_refuses_a_newer_schema(fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    migrate(fresh_db, mode="plain")
    with connect(fresh_db) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')")
    with pytest.raises(SchemaError, match="newer"):
        migrate(fresh_db)
    assert main(["cloud", "migrate", "--dsn", fresh_db]) == 2
    err = capsys.readouterr().err
    assert "SchemaError" in err and "newer" in err and err.count("\n") == 1
    with connect(fresh_db) as conn, pytest.raises(SchemaError, match="newer"):
        check_schema(conn)


def test_migrate_refuses_a_migration_changed_after_it_was_applied(fresh_db: str) -> None:
    migrate(fresh_db, mode="plain")
    with connect(fresh_db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(SchemaError, match="changed after it was applied"):
        migrate(fresh_db)


def test_check_schema_says_to_migrate_an_empty_database(fresh_db: str) -> None:
    with connect(fresh_db) as conn, pytest.raises(SchemaError, match="cloud migrate"):
        check_schema(conn)


def test_forcing_timescaledb_where_it_is_missing_is_a_clear_error(fresh_db: str) -> None:
    if _server_runs_timescaledb(fresh_db):
        pytest.skip("this server runs TimescaleDB, so it cannot be missing here; "
                    "tests/cloud/test_timescaledb.py forces TimescaleDB mode on such a server")
    with pytest.raises(StoreError, match="timescaledb"):
        migrate(fresh_db, mode="timescaledb")


def test_unreachable_database_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cloud", "migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"])
    assert code == 2
    assert "cannot connect to the database" in capsys.readouterr().err


def test_garbage_dsn_is_a_typed_error() -> None:
    with pytest.raises(StoreError):
        migrate("this is = not a dsn ===")


def _columns(sql: str) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\)", sql, flags=re.S):
        tables[name] = [line.split()[0] for line in body.strip().splitlines()
                        if line.strip() and not line.strip().startswith(("PRIMARY", "CHECK", "--"))
                        and not line.startswith(" " * 8)]
    return tables


def test_both_storage_modes_define_the_same_tables_and_columns() -> None:
    plain = "\n".join(m.sql for m in available_migrations("plain"))
    timescale = "\n".join(m.sql for m in available_migrations("timescaledb"))
    assert _columns(plain) == _columns(timescale)
    assert len(_columns(plain)) >= 12
    # The TimescaleDB path uses the documented 2.x API for every time-series table.
    for call in ("create_hypertable", "add_compression_policy",
                 "timescaledb.compress_segmentby = 'device_id'", "timescaledb.continuous",
                 "add_continuous_aggregate_policy"):
        assert call in timescale
    assert "PARTITION BY RANGE" in plain and "PARTITION BY" not in timescale


def test_shipped_migration_files_are_package_data() -> None:
    names = [e.name for e in resources.files("cloud.store").joinpath("migrations").iterdir()]
    assert "0001_core.sql" in names


def test_a_failing_migration_leaves_no_trace(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE positions (x int)")  # collides with migration 0002
    with pytest.raises(StoreError, match="0002"):
        migrate(fresh_db, mode="plain")
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('signal_samples')").fetchone() == (None,)


def test_the_timescaledb_policy_migration_says_what_the_retention_defaults_say() -> None:
    """Migration 0003 spells the default horizons out in SQL; they must be DEFAULT_DAYS (checked
    here without a server; tests/cloud/test_timescaledb.py checks the jobs on a real one)."""
    sql = next(m.sql for m in available_migrations("timescaledb") if m.version == 3)
    # Tables of later migrations (0006: audit_log, 0009: track_days) get their policy in their own migration.
    later = "\n".join(m.sql for m in available_migrations("timescaledb") if m.version > 3)
    retention = {name: int(days) for name, days in re.findall(
        r"add_retention_policy\('(\w+)', drop_after => INTERVAL '(\d+) days', if_not_exists => true\)",
        sql + later)}
    wanted = timescale_settings(RetentionPolicy())
    assert retention == {s.relation: s.days for s in wanted if s.proc == "policy_retention"}
    refresh = re.findall(r"start_offset => INTERVAL '(\d+) days', end_offset => INTERVAL '([^']+)',\s*"
                         r"schedule_interval => INTERVAL '([^']+)'", sql)
    start = next(s.days for s in wanted if s.proc == "policy_refresh_continuous_aggregate")
    assert refresh == [(str(start), REFRESH_END_OFFSET, REFRESH_SCHEDULE)]
    assert f"jsonb_build_object('start_offset', '{start} days')" in sql
    # Every default (time) index create_hypertable made in 0002 is dropped.
    dropped = set(re.findall(r"DROP INDEX IF EXISTS (\w+);", sql))
    made_later = set(re.findall(r"create_hypertable\('(\w+)', .*create_default_indexes => false\)", later))
    assert made_later == {"audit_log", "track_days"}
    assert dropped == {f"{t.name}_{t.time_column}_idx" for t in TIME_SERIES if t.name not in made_later}
    assert "materialized_only = false" in sql


def test_a_version_2_database_is_upgraded_in_place(fresh_db: str) -> None:
    assert migrate(fresh_db, mode="plain", until=2).applied == (1, 2)
    with connect(fresh_db) as conn:
        with pytest.raises(SchemaError, match="needs"):
            check_schema(conn)
        conn.execute("CREATE TABLE signal_samples_p20260101 PARTITION OF signal_samples "
                     "FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-01-02 00:00+00')")
        conn.execute("INSERT INTO signal_samples VALUES ('gw', '2026-01-01 12:00+00', 1, 1, 0, 1, 4.5)")
    assert migrate(fresh_db).applied == tuple(range(3, latest_version() + 1))
    with connect(fresh_db) as conn:
        assert check_schema(conn) == "plain"
        assert conn.execute("SELECT value FROM signal_samples").fetchall() == [(4.5,)]
