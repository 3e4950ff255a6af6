"""TimescaleDB storage mode on a real TimescaleDB server (hypertables, indexes, compression,
policies, the real-time aggregate, retention by chunk drop, exactly-once into compressed chunks).

Runs whenever LIENWATCH_TEST_TSDB_DSN is the DSN of a superuser on a PostgreSQL server with
`shared_preload_libraries = 'timescaledb'` (each test makes and drops its own database there);
docs/DEVELOPING.md says how. Without it every test here is reported as skipped with a reason
saying the suite did NOT run (the harness starts no TimescaleDB: none can be installed here);
with it set to a server that cannot run TimescaleDB the tests fail, they are not skipped.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from cloud.ingest.receiver import Receiver
from cloud.ingest.validate import Accepted, Incoming
from cloud.ingest.writer import BatchWriter
from cloud.store.db import Conn, connect
from cloud.store.layout import TIME_SERIES
from cloud.store.migrate import check_schema, latest_version, migrate
from cloud.store.retention import (
    AGGREGATE,
    DEFAULT_DAYS,
    REFRESH_END_OFFSET,
    REFRESH_SCHEDULE,
    RetentionPolicy,
    reconcile_timescale_jobs,
    timescale_settings,
)
from hil.services import MosquittoBroker
from protocol.messages import TelemetryBatch
from tests.cloud.helpers import receiver_config, telemetry

TSDB_DSN = os.environ.get("LIENWATCH_TEST_TSDB_DSN", "")
NOT_RUN = ("TimescaleDB suite NOT RUN: LIENWATCH_TEST_TSDB_DSN is not set. Run it with "
           "LIENWATCH_TEST_TSDB_DSN=postgresql://SUPERUSER@HOST:PORT/postgres (a server with "
           "shared_preload_libraries=timescaledb), see docs/DEVELOPING.md")
pytestmark = pytest.mark.skipif(not TSDB_DSN, reason=NOT_RUN)

# The one unique key of each ingest table, in index order; the telemetry tables carry nothing else.
UNIQUE_KEYS = {
    "positions": ["device_id", "time", "boot_id", "seq", "row_idx"],
    "signal_samples": ["device_id", "time", "boot_id", "seq", "row_idx"],
    "events": ["device_id", "time", "boot_id", "seq"],
    "device_status": ["device_id", "time", "boot_id", "seq"],
    "command_acks": ["device_id", "time", "boot_id", "seq"],
}
TELEMETRY = ("positions", "signal_samples", "device_status", "command_acks")
# Migration 0007: a partial index over the two sparse signals trips and reports read (ignition,
# DTC count); ingest touches it only for those rows.
SPARSE = {"signal_samples": (False, ["device_id", "signal_id", "time"])}


@pytest.fixture(scope="module")
def tsdb_server() -> str:
    """The TimescaleDB server named by LIENWATCH_TEST_TSDB_DSN, checked to be one."""
    try:
        with psycopg.connect(TSDB_DSN, autocommit=True, connect_timeout=10) as conn:
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            available = conn.execute("SELECT default_version FROM pg_available_extensions "
                                     "WHERE name = 'timescaledb'").fetchone()
    except psycopg.Error as error:
        pytest.fail(f"LIENWATCH_TEST_TSDB_DSN: cannot connect: {error}", pytrace=False)
    if available is None or preload is None or "timescaledb" not in str(preload[0]):
        pytest.fail("LIENWATCH_TEST_TSDB_DSN names a server without TimescaleDB (extension available: "
                    f"{available}, shared_preload_libraries: {preload})", pytrace=False)
    return TSDB_DSN


@pytest.fixture
def tsdb_fresh(tsdb_server: str) -> Iterator[str]:
    """DSN of a new database on the TimescaleDB server, migrated in TimescaleDB mode, its policy
    jobs scheduled as `migrate` left them (the server's scheduler may run them at any time)."""
    name = f"tsdb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(tsdb_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    dsn = make_conninfo(tsdb_server, dbname=name)
    try:
        assert migrate(dsn, mode="timescaledb").mode == "timescaledb"
        yield dsn
    finally:
        with psycopg.connect(tsdb_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture
def tsdb(tsdb_fresh: str) -> str:
    """Like `tsdb_fresh`, with the background scheduling of its policy jobs paused: the tests run
    each job themselves (`run_job`), so a scheduled run cannot race their assertions."""
    with connect(tsdb_fresh) as conn:
        conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                     "WHERE hypertable_name IS NOT NULL")
    return tsdb_fresh


@pytest.fixture
def tdb(tsdb: str) -> Iterator[Conn]:
    with connect(tsdb) as conn:
        yield conn


@pytest.fixture
def fresh_conn(tsdb_fresh: str) -> Iterator[Conn]:
    with connect(tsdb_fresh) as conn:
        yield conn


def jobs(conn: Conn) -> dict[tuple[str, str], tuple[int, dict[str, Any], timedelta]]:
    """(relation, proc) -> (job id, config, schedule interval) of every policy job."""
    rows = conn.execute(
        "SELECT hypertable_name, proc_name, job_id, config, schedule_interval "
        "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL").fetchall()
    found = {(str(r[0]), str(r[1])): (int(r[2]), dict(r[3]), r[4]) for r in rows}
    assert len(found) == len(rows), "one job per relation and kind"
    return found


def job_id(conn: Conn, relation: str, proc: str) -> int:
    return jobs(conn)[(relation, proc)][0]


def run_job(conn: Conn, relation: str, proc: str) -> None:
    """Run a policy job now, in this session, as the scheduler would."""
    conn.execute("CALL run_job(%s)", (job_id(conn, relation, proc),))


def write(conn: Conn, messages: list[TelemetryBatch], merge: str = "copy_first") -> tuple[int, int]:
    """Store `messages` with the receiver's writer; (signal rows inserted, duplicates)."""
    writer = BatchWriter(conn, mode="timescaledb", receiver_id="t", policy=RetentionPolicy(),
                         merge=merge)  # type: ignore[arg-type]
    outcomes = [Accepted(Incoming("t", b"", 1, 1, time.time_ns()), m, len(m.samples)) for m in messages]
    result = writer.write(outcomes, datetime.now(UTC))  # type: ignore[arg-type]
    return result.inserted["signal_samples"], result.duplicates["signal_samples"]


def hours_ago_ns(hours: float) -> int:
    now_s = int(time.time()) // 3600 * 3600  # whole hours keep a message inside one bucket
    return int((now_s - hours * 3600) * 10**9)


def raw_hourly(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT device_id, signal_id, time_bucket(INTERVAL '1 hour', time), count(*), sum(value) "
        "FROM signal_samples GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()


def aggregate_hourly(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT device_id, signal_id, bucket, samples, round((avg_value * samples)::numeric, 6)::float8 "
        f"FROM {AGGREGATE} ORDER BY 1, 2, 3").fetchall()  # type: ignore[arg-type]


def rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(*r[:4], round(float(r[4]), 6)) for r in rows]


def chunks(conn: Conn, table: str) -> list[tuple[str, bool]]:
    """(schema.chunk, compressed?) of each chunk of `table`, oldest first."""
    return [(str(r[0]), bool(r[1])) for r in conn.execute(
        "SELECT format('%%I.%%I', chunk_schema, chunk_name), is_compressed "
        "FROM timescaledb_information.chunks "
        "WHERE hypertable_name = %s ORDER BY range_start", (table,))]


def test_every_time_series_table_is_a_hypertable_by_its_time_column(tdb: Conn) -> None:
    assert check_schema(tdb) == "timescaledb"
    dims: dict[str, str] = dict(tdb.execute(
        "SELECT d.hypertable_name, d.column_name FROM timescaledb_information.dimensions d "
        "JOIN timescaledb_information.hypertables h USING (hypertable_schema, hypertable_name) "
        "WHERE h.hypertable_schema = current_schema()").fetchall())
    assert dims == {t.name: t.time_column for t in TIME_SERIES}
    cagg = tdb.execute("SELECT hypertable_name, materialized_only FROM "
                       "timescaledb_information.continuous_aggregates WHERE view_name = %s",
                       (AGGREGATE,)).fetchone()
    assert cagg == ("signal_samples", False)  # real-time: the newest hour is visible
    version = tdb.execute("SELECT timescaledb_version FROM lienwatch_storage").fetchone()
    assert version and version[0]


def _indexes(conn: Conn, table: str) -> dict[str, tuple[bool, list[str]]]:
    rows = conn.execute(
        "SELECT c.relname, i.indisunique, array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY "
        "  k(attnum, n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY n) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(%s)",
        (table,)).fetchall()
    return {str(r[0]): (bool(r[1]), list(r[2])) for r in rows}


def test_each_hypertable_and_its_chunks_carry_only_the_unique_key(tdb: Conn) -> None:
    # The telemetry tables, where the ingest rate is made: exactly the one unique key.
    for table in TELEMETRY:
        sparse = {f"{table}_sparse": SPARSE[table]} if table in SPARSE else {}
        unique = {f"{table}_device_time_key": (True, UNIQUE_KEYS[table])}
        assert _indexes(tdb, table) == {**unique, **sparse}, table
    # Every hypertable: its unique key or primary key, and no default (time DESC) index from
    # create_hypertable (events and event_lifecycle also carry event-id indexes of their own).
    for t in TIME_SERIES:
        found = _indexes(tdb, t.name)
        key = f"{t.name}_device_time_key" if t.name in UNIQUE_KEYS else f"{t.name}_pkey"
        assert found[key][0], (t.name, found)
        assert f"{t.name}_{t.time_column}_idx" not in found, (t.name, found)
        assert not [cols for cols in (v[1] for v in found.values()) if cols == [t.time_column]], found
    write(tdb, [telemetry("gw-i", 1, start_ns=hours_ago_ns(30))])
    for table in ("signal_samples", "positions"):
        (chunk, _), = chunks(tdb, table)
        found = _indexes(tdb, chunk)
        expected = [(True, UNIQUE_KEYS[table]), *([SPARSE[table]] if table in SPARSE else [])]
        assert sorted(found.values()) == sorted(expected), (table, found)


def test_compression_segments_and_orders_by_the_whole_unique_key(tdb: Conn) -> None:
    rows = tdb.execute(
        "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index, orderby_asc "
        "FROM timescaledb_information.compression_settings WHERE hypertable_schema = current_schema() "
        "ORDER BY 1, 3 NULLS LAST, 4").fetchall()
    settings: dict[str, dict[str, list[str]]] = {}
    for table, column, segment, order, asc in rows:
        entry = settings.setdefault(table, {"segmentby": [], "orderby": []})
        if segment is not None:
            entry["segmentby"].append(column)
        elif order is not None:
            entry["orderby"].append(column if asc else f"{column} DESC")
    assert settings == {
        "positions": {"segmentby": ["device_id"], "orderby": ["time DESC", "boot_id", "seq", "row_idx"]},
        "signal_samples": {"segmentby": ["device_id"], "orderby": ["time DESC", "boot_id", "seq", "row_idx"]},
        "device_status": {"segmentby": ["device_id"], "orderby": ["time DESC", "boot_id", "seq"]},
    }
    for table, entry in settings.items():
        covered = set(entry["segmentby"]) | {c.split()[0] for c in entry["orderby"]}
        assert set(UNIQUE_KEYS[table]) <= covered, table


def test_every_policy_exists_right_after_migrate(fresh_conn: Conn) -> None:
    tdb = fresh_conn
    unscheduled = tdb.execute("SELECT job_id FROM timescaledb_information.jobs "
                              "WHERE hypertable_name IS NOT NULL AND NOT scheduled").fetchall()
    assert unscheduled == []
    found = jobs(tdb)
    for setting in timescale_settings(RetentionPolicy()):
        _, config, _ = found[(setting.relation, setting.proc)]
        assert config[setting.key] == f"{setting.days} days", setting
    _, refresh, schedule = found[(AGGREGATE, "policy_refresh_continuous_aggregate")]
    assert refresh["start_offset"] == f"{DEFAULT_DAYS['signals']} days"
    assert refresh["end_offset"] in (REFRESH_END_OFFSET, "01:00:00")
    assert schedule == timedelta(minutes=30) and REFRESH_SCHEDULE == "30 minutes"
    compress = {r: c["compress_after"] for (r, p), (_, c, _) in found.items() if p == "policy_compression"}
    assert compress == {"positions": "7 days", "signal_samples": "3 days", "device_status": "7 days"}
    retention = {r for (r, p) in found if p == "policy_retention"}
    assert retention == {t.name for t in TIME_SERIES} | {AGGREGATE}
    assert reconcile_timescale_jobs(tdb, RetentionPolicy()) == ()  # the defaults: nothing to change


def _receiver_pass(dsn: str, mosquitto: MosquittoBroker, policy: RetentionPolicy,
                   caplog: pytest.LogCaptureFixture, expect: str) -> None:
    """Start a receiver, wait for its retention pass to log `expect`, stop it."""
    caplog.clear()
    group = f"tsdb{time.monotonic_ns()}"
    config = replace(receiver_config(dsn, mosquitto.port, f"r-{group}", group=group), retention=policy)
    receiver = Receiver(config)
    receiver.start()
    try:
        deadline = time.monotonic() + 30
        while expect not in caplog.text:
            assert receiver.failure is None, receiver.failure
            assert time.monotonic() < deadline, f"no {expect!r} logged: {caplog.text}"
            time.sleep(0.05)
    finally:
        receiver.stop()
    assert "maintenance failed" not in caplog.text


def test_receiver_restarts_keep_the_jobs_and_a_changed_horizon_is_altered_in_place(
    tsdb_fresh: str, fresh_conn: Conn, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    tsdb, tdb = tsdb_fresh, fresh_conn
    caplog.set_level(logging.DEBUG, logger="cloud.store.retention")
    after_migrate = jobs(tdb)
    for _ in range(2):
        _receiver_pass(tsdb, mosquitto, RetentionPolicy(), caplog, "timescaledb jobs unchanged")
        assert jobs(tdb) == after_migrate  # same ids, same configs, same schedules
    shorter = RetentionPolicy(days={**DEFAULT_DAYS, "signals": 60})
    _receiver_pass(tsdb, mosquitto, shorter, caplog, "timescaledb jobs reconciled")
    changed = jobs(tdb)
    assert {k: v[0] for k, v in changed.items()} == {k: v[0] for k, v in after_migrate.items()}
    differs = {k for k in after_migrate if changed[k] != after_migrate[k]}
    assert differs == {("signal_samples", "policy_retention"), (AGGREGATE, "policy_retention"),
                       (AGGREGATE, "policy_refresh_continuous_aggregate")}
    assert changed[("signal_samples", "policy_retention")][1]["drop_after"] == "60 days"
    assert changed[(AGGREGATE, "policy_refresh_continuous_aggregate")][1]["start_offset"] == "60 days"
    _receiver_pass(tsdb, mosquitto, shorter, caplog, "timescaledb jobs unchanged")
    assert jobs(tdb) == changed


def test_a_removed_policy_is_added_back_and_only_that_one(tdb: Conn) -> None:
    before = jobs(tdb)
    tdb.execute("SELECT remove_retention_policy('rejected_messages')")
    changed = reconcile_timescale_jobs(tdb, RetentionPolicy())
    assert changed == ("rejected_messages.drop_after = 30 days (new job)",)
    after = jobs(tdb)
    assert {k: v for k, v in after.items() if k[0] != "rejected_messages"} == \
        {k: v for k, v in before.items() if k[0] != "rejected_messages"}
    assert after[("rejected_messages", "policy_retention")][1]["drop_after"] == "30 days"


def test_the_newest_hour_is_visible_and_weeks_late_data_reaches_the_aggregate(tdb: Conn) -> None:
    write(tdb, [telemetry("gw-a", 1, start_ns=hours_ago_ns(0.5))])
    assert rounded(aggregate_hourly(tdb)) == rounded(raw_hourly(tdb)) != []  # real-time, no refresh yet
    # Three weeks old (out of coverage), then compressed, then more of the same hour arrives late.
    write(tdb, [telemetry("gw-a", 2, start_ns=hours_ago_ns(21 * 24))])
    run_job(tdb, AGGREGATE, "policy_refresh_continuous_aggregate")
    run_job(tdb, "signal_samples", "policy_compression")
    old_chunk = [c for c in chunks(tdb, "signal_samples") if c[1]]
    assert len(old_chunk) == 1, chunks(tdb, "signal_samples")
    assert write(tdb, [telemetry("gw-a", 3, start_ns=hours_ago_ns(21 * 24) + 200 * 10**9)]) == (100, 0)
    write(tdb, [telemetry("gw-b", 1, start_ns=hours_ago_ns(21 * 24))])
    run_job(tdb, AGGREGATE, "policy_refresh_continuous_aggregate")
    assert rounded(aggregate_hourly(tdb)) == rounded(raw_hourly(tdb))
    materialized = tdb.execute(
        f"SELECT sum(samples) FROM {AGGREGATE} WHERE bucket < now() - INTERVAL '20 days'"  # type: ignore[arg-type]
    ).fetchone()
    assert materialized == (300,)  # seq 2, the late seq 3, and gw-b


def test_retention_drops_whole_expired_chunks_per_data_class(tdb: Conn) -> None:
    old, recent = datetime.now(UTC) - timedelta(days=120), datetime.now(UTC) - timedelta(days=10)
    for seq, at in enumerate((old, recent)):
        tdb.execute("INSERT INTO signal_samples VALUES ('gw', %s, 1, %s, 0, 1, 42.0)", (at, seq))
        tdb.execute("INSERT INTO positions (device_id, time, boot_id, seq, row_idx, lat_deg, lon_deg, "
                    "clock_quality) VALUES ('gw', %s, 1, %s, 0, 48.1, 11.5, 3)", (at, seq))
    tdb.execute(f"CALL refresh_continuous_aggregate('{AGGREGATE}', NULL, NULL)")  # type: ignore[arg-type]
    signal_chunks = chunks(tdb, "signal_samples")
    assert len(signal_chunks) == 2
    for relation in ("signal_samples", "positions", AGGREGATE):
        run_job(tdb, relation, "policy_retention")
    assert chunks(tdb, "signal_samples") == signal_chunks[1:]  # the old chunk is gone, whole
    assert [r[0] for r in tdb.execute("SELECT seq FROM signal_samples")] == [1]
    assert tdb.execute("SELECT count(*) FROM positions").fetchone() == (2,)  # kept 5 years
    buckets = tdb.execute(f"SELECT bucket FROM {AGGREGATE}").fetchall()  # type: ignore[arg-type]
    assert len(buckets) == 1 and buckets[0][0] > datetime.now(UTC) - timedelta(days=90)


def test_a_version_2_database_with_data_and_old_policies_is_upgraded_in_place(tsdb_server: str) -> None:
    name = f"tsdb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(tsdb_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    dsn = make_conninfo(tsdb_server, dbname=name)
    try:
        assert migrate(dsn, mode="timescaledb", until=2).applied == (1, 2)
        with connect(dsn) as conn:
            conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                         "WHERE hypertable_name IS NOT NULL")
            old = [telemetry("gw-u", seq, start_ns=hours_ago_ns(10 * 24)) for seq in (1, 2)]
            assert write(conn, old) == (200, 0)
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('signal_samples', "
                         "older_than => INTERVAL '3 days') c")
            # What a receiver before 0003 left: a retention policy of an operator's horizon.
            conn.execute("SELECT add_retention_policy('signal_samples', drop_after => INTERVAL '60 days')")
            before = jobs(conn)
        assert migrate(dsn).applied == tuple(range(3, latest_version() + 1))
        with connect(dsn) as conn:
            after = jobs(conn)
            refresh = (AGGREGATE, "policy_refresh_continuous_aggregate")
            for kept in (("signal_samples", "policy_retention"), refresh):
                assert after[kept][0] == before[kept][0], kept  # the same jobs, not new ones
            assert after[("signal_samples", "policy_retention")][1]["drop_after"] == "60 days"  # left alone
            assert after[refresh][1]["start_offset"] == "90 days"
            retained = {r for (r, p) in after if p == "policy_retention"}
            assert retained == {t.name for t in TIME_SERIES} | {AGGREGATE}
            # The default indexes are gone from the hypertable and its existing chunks; the
            # hypertable has the unique key and migration 0007's sparse index.
            assert _indexes(conn, "signal_samples") == {
                "signal_samples_device_time_key": (True, UNIQUE_KEYS["signal_samples"]),
                "signal_samples_sparse": SPARSE["signal_samples"]}
            (chunk, compressed), = chunks(conn, "signal_samples")
            assert compressed and sorted(_indexes(conn, chunk).values()) == \
                sorted([(True, UNIQUE_KEYS["signal_samples"]), SPARSE["signal_samples"]])
            # The old compressed chunk still takes a redelivery exactly once, and new rows.
            assert write(conn, [old[1], telemetry("gw-u", 3, start_ns=hours_ago_ns(10 * 24))]) == (100, 100)
            assert conn.execute("SELECT count(*) FROM signal_samples").fetchone() == (300,)
            # The receiver then brings the aggregate's jobs to the operator's 60 days, in place.
            assert reconcile_timescale_jobs(conn, RetentionPolicy(days={**DEFAULT_DAYS, "signals": 60})) == (
                f"signal_hourly.drop_after = 60 days (job {after[(AGGREGATE, 'policy_retention')][0]})",
                f"signal_hourly.start_offset = 60 days (job {after[refresh][0]})")
    finally:
        with psycopg.connect(tsdb_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.mark.parametrize("merge", ["copy_first", "staging"])
def test_redelivery_into_compressed_chunks_is_stored_exactly_once(tdb: Conn, merge: str) -> None:
    start = hours_ago_ns(10 * 24)
    first = [telemetry("gw-c", seq, start_ns=start) for seq in (1, 2)]
    assert write(tdb, first, merge) == (200, 0)
    for table in ("signal_samples", "positions"):
        tdb.execute("SELECT compress_chunk(c) "
                    "FROM show_chunks(%s::regclass, older_than => INTERVAL '3 days') c", (table,))
        assert [c[1] for c in chunks(tdb, table)] == [True], table
    assert write(tdb, first, merge) == (0, 200)  # redelivered: nothing stored twice
    again = [first[1], telemetry("gw-c", 3, start_ns=start)]  # one redelivered, one new
    assert write(tdb, again, merge) == (100, 100)
    assert tdb.execute("SELECT count(*), count(DISTINCT (device_id, time, boot_id, seq, row_idx)) "
                       "FROM signal_samples").fetchone() == (300, 300)
    assert tdb.execute("SELECT count(*) FROM positions").fetchone() == (15,)


def test_packed_tracks_and_shared_rate_limits_on_hypertables(tdb: Conn) -> None:
    """Migrations 0009-0013 on hypertables: a day packed with its kept rows (read in part at a
    tolerance, cut when partly inside a range) answers as the positions do; the rate-limit
    buckets of several API processes (UNLOGGED api_rate_buckets) count."""
    from cloud.analytics.track import fetch_fixes
    from cloud.api.ratelimit import SharedRateLimiter
    from cloud.store import summaries
    from lienwatch.clock import ManualClock
    from tests.cloud.conftest import register
    from tests.cloud.seed import T0
    from tests.cloud.test_track_days import BERLIN, TOLERANCES, _answers, _gaps_at_midnights

    device_id = "gw-tsdb"
    register(tdb, device_id, BERLIN)
    fixes = _gaps_at_midnights(device_id)
    with tdb.cursor().copy("COPY positions (device_id, time, boot_id, seq, row_idx, lat_deg, lon_deg, "
                           "speed_kmh, fix_type, clock_quality) FROM STDIN") as copy:
        for i, f in enumerate(fixes):
            copy.write_row((device_id, f.time, 1, i, 0, f.lat, f.lon, f.speed_kmh, f.fix_type, 3))
    start, days = T0 - timedelta(hours=1), [(T0 + timedelta(days=k)).date() for k in range(-1, 4)]
    from_positions = _answers(tdb, device_id, start)
    tdb.execute("INSERT INTO summary_dirty (device_id, day) SELECT %s, d FROM unnest(%s::date[]) d "
                "ON CONFLICT DO NOTHING", (device_id, days))
    summaries.refresh_dirty(tdb, oldest_day=days[0] - timedelta(days=400))
    kept = tdb.execute("SELECT count(*) FILTER (WHERE kept IS NOT NULL), count(*) FROM track_days "
                       "WHERE fix_count > 0").fetchone()
    assert kept is not None and kept[0] == kept[1] >= 3
    pieces = fetch_fixes(tdb, device_id, start, start + timedelta(days=3), tolerance_m=10.0).pieces
    assert [p.packed for p in pieces] == [True, True, True]
    assert _answers(tdb, device_id, start) == from_positions and len(from_positions) == 3 * len(TOLERANCES)
    limiter = SharedRateLimiter(per_minute=60, burst=2, clock=ManualClock())
    assert [limiter.take("k", tdb) for _ in range(3)] == [0, 0, 1]
    persistence = tdb.execute("SELECT relpersistence FROM pg_class WHERE relname = 'api_rate_buckets'")
    assert persistence.fetchone() == ("u",)


def test_the_device_list_state_on_hypertables(tdb: Conn) -> None:
    """Migration 0014 on hypertables: the triggers on `events` and `event_lifecycle` (and on every
    chunk made later) keep open events and their highest severity as the time series say; a
    chunk dropped by retention fires no trigger, and `reconcile_open_events` removes what it left."""
    from cloud.store import alerts, fleet
    from protocol.messages import PowerState, Severity, Transition
    from tests.cloud.api.conftest import event, register, status
    from tests.cloud.test_device_list_state import listed, oracle

    def store(messages: list[Any]) -> None:
        writer = BatchWriter(tdb, mode="timescaledb", receiver_id="t", policy=RetentionPolicy())
        outcomes = [Accepted(Incoming("t", b"", i, 1, time.time_ns()), m, 1) for i, m in enumerate(messages)]
        writer.write(outcomes, datetime.now(UTC))  # type: ignore[arg-type]

    now_ns = time.time_ns() // 10**9 * 10**9
    old_ns = now_ns - 40 * 86_400 * 10**9  # a chunk of its own, dropped below
    register(tdb, "veh-h")
    store([event("veh-h", 1, 1, old_ns, Severity.EMERGENCY), event("veh-h", 2, 2, now_ns - 60 * 10**9,
                                                                   Severity.WARNING),
           status("veh-h", 3, now_ns - 10 * 10**9, PowerState.DEEP_SLEEP)])
    store([event("veh-h", 4, 2, now_ns - 30 * 10**9, Severity.ALERT, transition=Transition.ESCALATED),
           status("veh-h", 5, now_ns - 3600 * 10**9, PowerState.ACTIVE)])  # late and older: ignored
    assert listed(tdb) == oracle(tdb) == [("veh-h", "DEEP_SLEEP", 2, 3)]
    now = datetime.fromtimestamp(now_ns / 10**9, UTC)
    assert alerts.transition(tdb, "veh-h", 2, "acknowledge", "ops", "", now)
    assert listed(tdb) == oracle(tdb) == [("veh-h", "DEEP_SLEEP", 2, 3)]
    tdb.execute("SELECT drop_chunks('event_lifecycle', older_than => now() - interval '25 days')")
    assert listed(tdb) != oracle(tdb)  # what a trigger cannot see
    assert fleet.reconcile_open_events(tdb) == (1, 1)
    assert listed(tdb) == oracle(tdb) == [("veh-h", "DEEP_SLEEP", 1, 2)]
    assert alerts.transition(tdb, "veh-h", 2, "resolve", "ops", "", now)
    assert listed(tdb) == oracle(tdb) == [("veh-h", "DEEP_SLEEP", 0, None)]


def test_the_api_on_hypertables_starts_clean_and_answers_every_read(
        tsdb: str, caplog: pytest.LogCaptureFixture) -> None:
    """The API on a TimescaleDB-mode database: no partition is asked of a hypertable (it logged
    "hypertables do not support inheritance" at every start, and an audit insert's missing
    partition retry would fail the same way), every read answers, and each location read is
    audited, also on a day whose chunk does not exist yet."""
    from fastapi.testclient import TestClient

    from cloud.api.app import create_app
    from cloud.api.keys import create_key
    from cloud.store.partitions import PartitionKeeper
    from lienwatch.clock import ManualClock
    from protocol.messages import PowerState, Severity
    from tests.cloud.api.conftest import NOW_NS, config_for, event, register, status, store
    from tests.cloud.seed import Scenario, write

    now = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
    day_ago = now - timedelta(days=1)
    clock = ManualClock(wall_ns=NOW_NS)
    with connect(tsdb) as conn:
        assert PartitionKeeper().ensure(conn, "positions", day_ago.date(), now.date()) == 0
        register(conn, "veh-t", time_zone="Europe/Berlin")
        write(conn, "veh-t", Scenario(day_ago, 52.5, 13.4).park(600).drive_north(900, 36).park(1200))
        store(conn, [event("veh-t", 1, 1, NOW_NS - 3600 * 10**9, Severity.ALERT),
                     status("veh-t", 2, NOW_NS - 60 * 10**9, PowerState.SLEEP)])
        _, token = create_key(conn, "rita", "risk_officer")
        app = create_app(config_for(tsdb), clock=clock)
        with caplog.at_level(logging.WARNING), TestClient(app) as client:
            headers = {"Authorization": f"Bearer {token}"}
            span = {"from": day_ago.isoformat(), "to": now.isoformat()}
            today = now.date().isoformat()
            for path, params in [
                ("/readyz", {}), ("/devices", {}), ("/devices/veh-t", {}), ("/events", {}),
                ("/events/counts", {}), ("/devices/veh-t/track", span),
                ("/devices/veh-t/track", {**span, "tolerance_m": "20", "events": "true"}),
                ("/devices/veh-t/trips", span), ("/devices/veh-t/stops", span),
                ("/devices/veh-t/summaries", {"from": today, "to": today}), ("/devices/veh-t/report", {}),
            ]:
                answer = client.get(path, params=params, headers=headers)
                assert answer.status_code == 200, (path, answer.text)
            assert client.get("/readyz").json()["storage"] == "timescaledb"
            trips = client.get("/devices/veh-t/trips", params=span, headers=headers).json()["trips"]
            assert len(trips) == 1 and trips[0]["distance_m"] > 8000
            clock.advance(400 * 86_400)  # a month whose audit chunk does not exist yet
            far = {"from": (now + timedelta(days=399)).isoformat(),
                   "to": (now + timedelta(days=400)).isoformat()}
            assert client.get("/devices/veh-t/track", params=far, headers=headers).status_code == 200
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        audited = conn.execute("SELECT count(*), max(time) FROM audit_log WHERE device_id = 'veh-t' "
                               "AND allowed").fetchone()
        assert audited is not None and audited[0] >= 6 and audited[1] > now + timedelta(days=399)
