"""Benchmark: cloud ingest end to end against the physical limit (raw binary COPY), in one run.

Starts its own PostgreSQL (plain storage) and mosquitto (hil.services), or with
`--dsn DSN` uses the PostgreSQL server of that DSN (a role that may create databases; the
benchmark makes its databases there and drops them afterwards) in the storage mode `--storage`
picks (default: auto, i.e. TimescaleDB where the server runs it). Measures, on one database state
each (a fresh migrated database per part, the same pre-encoded messages), in the same storage
mode, so raw COPY into hypertables is the baseline for ingest into hypertables:

1. raw COPY (baseline): the rows of every telemetry message, already laid out as binary COPY
   data, copied straight into signal_samples and positions (unique index included) and committed.
2. end to end, one receiver: publisher → mosquitto → `lienwatch cloud ingest` (a real receiver
   process, default `merge = "copy_first"`) → committed, until the receiver's own metrics show
   every row stored. Meanwhile a second publisher sends events (20/s) stamped with their publish
   time; publish→commit latency is `stored_at - time` of each stored event (stored_at is
   clock_timestamp() at insert, in the transaction that commits right after). The JSON line
   reports this run.
3. end to end, two receivers on the shared subscription: throughput, and proof that nothing was
   stored twice (rows = messages × rows per message, distinct (device, boot, seq) = messages).
4. end to end, one receiver with `merge = "staging"` (every batch COPYed to staging and merged
   with INSERT ... ON CONFLICT DO NOTHING), to show what the copy-first path saves.
5. track query: 30 days of one position a minute for one device (43,200 rows, among the other
   devices' rows), fetched in time order with `cloud.store.tracks.track` (fixes packed by the server,
   read by numpy); median of 7 runs after a warm-up. The same query as psycopg rows is printed beside it.

Goals: end-to-end ≥ 50 % of raw COPY and ≥ 100,000 signal rows/s; event p99 ≤ 500 ms; track
query ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

import protocol  # noqa: E402
from bench.report import print_json_line, print_table  # noqa: E402
from cloud.ingest.writer import POSITIONS, SIGNALS, BatchWriter, PreparedBatch  # noqa: E402
from cloud.store.copybin import HEADER, TRAILER  # noqa: E402
from cloud.store.db import connect  # noqa: E402
from cloud.store.devices import Device, add_device  # noqa: E402
from cloud.store.migrate import StorageMode, migrate  # noqa: E402
from cloud.store.partitions import PartitionKeeper  # noqa: E402
from cloud.store.tracks import track  # noqa: E402
from hil.services import free_port, start_mosquitto, start_postgres  # noqa: E402
from lienwatch.errors import LienwatchError  # noqa: E402
from protocol.messages import (  # noqa: E402
    ClockQuality,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    MessageKind,
    SampleColumns,
    Severity,
    TelemetryBatch,
)
from protocol.topics import uplink_topic  # noqa: E402

DEVICES = 20
MESSAGES = 500
SAMPLES_PER_MESSAGE = 4000
FIXES_PER_MESSAGE = 60
EVENTS_PER_S = 20
NOW_S = int(time.time())


def telemetry(device: int, seq: int) -> TelemetryBatch:
    t0 = (NOW_S - 1800 + seq) * 10**9
    samples = SampleColumns(
        tuple(t0 + i * 250_000 for i in range(SAMPLES_PER_MESSAGE)),
        tuple((1, 3, 40, 50, 51)[i % 5] for i in range(SAMPLES_PER_MESSAGE)),
        tuple(float((i * 13 + seq) % 997) / 10 for i in range(SAMPLES_PER_MESSAGE)),
    )
    fixes = FixColumns.from_fixes(
        GnssFix(t0 + i * 10**9 // FIXES_PER_MESSAGE, 48.1 + i * 1e-5, 11.5 + seq * 1e-5, 500.0, 50.0, 90.0,
                0.8, 12, FixType.FIX_3D)
        for i in range(FIXES_PER_MESSAGE)
    )
    return TelemetryBatch(Header(f"gw-{device:04d}", 1, seq, t0, ClockQuality.GNSS), fixes, samples)


class Databases:
    """The benchmark's databases on one server, made migrated in one storage mode, then dropped."""

    def __init__(self, admin_dsn: str, storage: StorageMode | Literal["auto"]) -> None:
        self.admin_dsn = admin_dsn
        self.storage = storage
        self.mode: StorageMode | None = None
        self.made: list[str] = []

    def new(self, part: str) -> str:
        name = f"lienwatch_bench_{os.getpid()}_{part}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        self.made.append(name)
        dsn = make_conninfo(self.admin_dsn, dbname=name)
        self.mode = migrate(dsn, mode=self.storage).mode
        with connect(dsn) as conn:
            for device in range(DEVICES + 1):
                add_device(conn, Device(f"gw-{device:04d}", time_zone="Europe/Berlin"))
            if self.mode == "plain":  # hypertables make their chunks themselves
                PartitionKeeper().ensure_ahead(conn, _day(-40), 45)
        return dsn

    def server(self) -> str:
        """PostgreSQL (and TimescaleDB) version of the server, for the report."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('server_version'), (SELECT default_version "
                               "FROM pg_available_extensions WHERE name = 'timescaledb')").fetchone()
        assert row is not None
        return f"PostgreSQL {row[0]}" + (f", TimescaleDB {row[1]}" if self.mode == "timescaledb" else "")

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def _day(offset: int) -> dt.date:
    return dt.datetime.fromtimestamp(NOW_S, dt.UTC).date() + dt.timedelta(days=offset)


def raw_copy(dsn: str, messages: list[TelemetryBatch]) -> tuple[float, int]:
    """Seconds to COPY the messages' rows straight into the real tables, and the row count."""
    rows_out = PreparedBatch([])
    for message in messages:
        BatchWriter._telemetry_rows(message, rows_out)
    signals, positions = rows_out.signals, rows_out.positions
    rows = len(messages) * (SAMPLES_PER_MESSAGE + FIXES_PER_MESSAGE)
    with connect(dsn) as conn:
        started = time.perf_counter()
        with conn.transaction():
            targets = (("signal_samples", SIGNALS, signals), ("positions", POSITIONS, positions))
            for table, layout, chunks in targets:
                with conn.cursor().copy(
                    f"COPY {table} ({layout.column_list}) FROM STDIN (FORMAT BINARY)"  # type: ignore[arg-type]
                ) as copy:
                    copy.write(HEADER)
                    for chunk in chunks:
                        copy.write(chunk)
                    copy.write(TRAILER)
        return time.perf_counter() - started, rows


def receiver_process(dsn: str, port: int, client_id: str, group: str, workdir: Path,
                     merge: str) -> tuple[subprocess.Popen[str], int]:
    metrics_port = free_port()
    config = workdir / f"{client_id}.toml"
    config.write_text(f"""
[database]
dsn = "{dsn}"
[mqtt]
port = {port}
insecure_plaintext = true  # the bench broker on loopback: TLS cost is not what this measures
client_id = "{client_id}"
share_group = "{group}"
receive_maximum = 1000
[ingest]
batch_max_rows = 200000
batch_max_messages = 2000
batch_max_delay_ms = 100
merge = "{merge}"
[metrics]
port = {metrics_port}
[maintenance]
summaries_interval_s = 3600.0
""")
    command = [sys.executable, "-m", "lienwatch", "cloud", "ingest", "--config", str(config)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "ingesting" not in line:
        error = process.stderr.read() if process.stderr else ""
        raise RuntimeError(f"receiver did not start: {line} {error}")
    return process, metrics_port


def scrape(metrics_ports: list[int], pattern: str) -> float:
    """Sum of one metric over the receivers' /metrics endpoints."""
    total = 0.0
    for port in metrics_ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        total += sum(float(m) for m in re.findall(pattern + r" ([0-9.e+]+)", text))
    return total


def stored_rows(metrics_ports: list[int]) -> int:
    return int(scrape(metrics_ports, r'lienwatch_ingest_rows_total\{table="(?:signal_samples|positions)"\}'))


def client(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError("publisher could not connect")
    return c


def end_to_end(dsn: str, port: int, payloads: list[tuple[str, bytes]], receivers: int, workdir: Path,
               tag: str, merge: str = "copy_first") -> dict[str, float]:
    # A share group per run: mosquitto keeps queueing for the stopped receivers of an earlier run
    # (their sessions persist), exactly as it would for a receiver that crashed.
    procs = [receiver_process(dsn, port, f"bench-{tag}-{n}", f"bench-{tag}", workdir, merge)
             for n in range(receivers)]
    expected = MESSAGES * (SAMPLES_PER_MESSAGE + FIXES_PER_MESSAGE)
    publisher = client(port, f"bench-pub-{tag}")
    events = client(port, f"bench-events-{tag}")
    done = threading.Event()

    def send_events() -> None:
        seq = 0
        while not done.is_set():
            now = time.time_ns()
            header = Header("gw-0000", 2, seq, now, ClockQuality.GNSS)
            message = Event(header, seq, Severity.ALERT, "tow", now, {"distance_m": 150.0})
            events.publish(uplink_topic(MessageKind.EVENT, "gw-0000"), protocol.encode(message), qos=1)
            seq += 1
            time.sleep(1 / EVENTS_PER_S)

    try:
        started = time.perf_counter()
        event_thread = threading.Thread(target=send_events, daemon=True)
        event_thread.start()
        infos = [publisher.publish(topic, payload, qos=1) for topic, payload in payloads]
        for info in infos:
            info.wait_for_publish(120)
        published = time.perf_counter() - started
        ports = [p for _, p in procs]
        deadline = time.monotonic() + 150
        while stored_rows(ports) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stored_rows(ports)} of {expected} rows stored")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        done.set()
        event_thread.join()
        time.sleep(0.5)
        # The bulk lane's writer: time inside write+commit, and batches (the urgent lane's are tiny).
        busy_s = scrape(ports, r'lienwatch_ingest_batch_seconds_sum\{lane="bulk"\}')
        batches = scrape(ports, r'lienwatch_ingest_batch_seconds_count\{lane="bulk"\}')
    finally:
        done.set()
        for process, _ in procs:
            process.terminate()
        for process, _ in procs:
            process.communicate(timeout=60)
        publisher.disconnect()
        events.disconnect()
    with connect(dsn) as conn:
        rows = conn.execute("SELECT (SELECT count(*) FROM signal_samples) + (SELECT count(*) FROM positions)"
                            ).fetchone()
        distinct = conn.execute(
            "SELECT count(DISTINCT (device_id, boot_id, seq)) FROM signal_samples").fetchone()
        latencies = [float(r[0]) for r in conn.execute(
            "SELECT extract(epoch FROM stored_at - time) * 1000 FROM events ORDER BY 1")]
    assert rows is not None and distinct is not None
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [float("nan")] * 99
    return {
        "seconds": elapsed, "publish_seconds": published, "rows": float(rows[0]),
        "rows_per_s": expected / elapsed, "signal_rows_per_s": MESSAGES * SAMPLES_PER_MESSAGE / elapsed,
        "distinct_messages": float(distinct[0]), "events": float(len(latencies)),
        "event_p50_ms": quantiles[49], "event_p99_ms": quantiles[98],
        "writer_busy": busy_s / elapsed / receivers, "batches": batches,
    }


def track_query_ms(dsn: str) -> tuple[float, float, int]:
    """Median times to fetch one device's 30-day track (1 fix/min) in time order: with
    `cloud.store.tracks.track` (packed server-side, numpy columns), and as psycopg rows."""
    n = 30 * 24 * 60
    start_ns = (NOW_S - 30 * 86400) * 10**9
    chunk = 1440
    messages = []
    for day in range(30):
        base = start_ns + day * 86400 * 10**9
        fixes = FixColumns.from_fixes(
            GnssFix(base + i * 60 * 10**9, 48.0 + (day * chunk + i) * 1e-5, 11.0, 500.0, 40.0, 0.0, 0.9, 10,
                    FixType.FIX_3D) for i in range(chunk))
        messages.append(TelemetryBatch(Header("gw-0020", 9, day, base, ClockQuality.GNSS), fixes))
    rows_out = PreparedBatch([])
    for message in messages:
        BatchWriter._telemetry_rows(message, rows_out)
    positions = rows_out.positions
    with connect(dsn) as conn:
        with conn.transaction(), conn.cursor().copy(
            f"COPY positions ({POSITIONS.column_list}) FROM STDIN (FORMAT BINARY)"  # type: ignore[arg-type]
        ) as copy:
            copy.write(HEADER + b"".join(positions) + TRAILER)
        conn.execute("ANALYZE positions")
        query = ("SELECT time, lat_deg, lon_deg, speed_kmh FROM positions WHERE device_id = %s "
                 "AND time >= now() - interval '30 days' ORDER BY time")
        cursor = conn.cursor(binary=True)
        cursor.execute(query, ("gw-0020",)).fetchall()  # warm-up
        rows_ms = []
        count = 0
        for _ in range(7):
            started = time.perf_counter()
            count = len(cursor.execute(query, ("gw-0020",)).fetchall())
            rows_ms.append((time.perf_counter() - started) * 1000)
        numpy_ms = []
        for _ in range(7):
            started = time.perf_counter()
            end = dt.datetime.now(dt.UTC)
            fetched = track(conn, "gw-0020", end - dt.timedelta(days=30), end)
            numpy_ms.append((time.perf_counter() - started) * 1000)
    assert count >= n - 1440 and len(fetched) == count, (count, len(fetched))
    return statistics.median(numpy_ms), statistics.median(rows_ms), count


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL server to measure (a role that may create "
                        "databases); default: start a throwaway server of the benchmark's own")
    parser.add_argument("--storage", choices=["auto", "plain", "timescaledb"], default="auto",
                        help="storage mode of the benchmark's databases (default: auto)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args.dsn, args.storage)
    except (psycopg.Error, LienwatchError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"bench/ingest.py: {type(error).__name__}: {message}", file=sys.stderr)
        return 2
    return 0


def run(dsn: str | None, storage: StorageMode | Literal["auto"]) -> None:
    print(f"encoding {MESSAGES} telemetry messages of {SAMPLES_PER_MESSAGE} samples + "
          f"{FIXES_PER_MESSAGE} fixes from {DEVICES} devices ...", flush=True)
    messages = [telemetry(n % DEVICES, n // DEVICES) for n in range(MESSAGES)]
    payloads = [(uplink_topic(MessageKind.TELEMETRY, m.header.device_id), protocol.encode(m))
                for m in messages]
    mean_bytes = sum(len(p) for _, p in payloads) / len(payloads)
    if dsn is not None:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10):
            pass  # a bad --dsn fails here, before anything is started
    pg = None if dsn is not None else start_postgres(
        settings={"max_wal_size": "4GB", "checkpoint_timeout": "30min"})
    databases = Databases(pg.dsn if pg is not None else str(dsn), storage)
    broker = start_mosquitto()
    workdir = Path(tempfile.mkdtemp(prefix="lienwatch-bench-ingest-"))
    try:
        print("raw COPY baseline ...", flush=True)
        copy_s, copy_rows = raw_copy(databases.new("raw"), messages)
        raw_rows_per_s = copy_rows / copy_s
        print(f"storage mode {databases.mode}; end to end, one receiver ...", flush=True)
        one_dsn = databases.new("one")
        one = end_to_end(one_dsn, broker.port, payloads, 1, workdir, "one")
        print("end to end, two receivers ...", flush=True)
        two = end_to_end(databases.new("two"), broker.port, payloads, 2, workdir, "two")
        print("end to end, one receiver, staging merge for every batch ...", flush=True)
        staging = end_to_end(databases.new("staging"), broker.port, payloads, 1, workdir,
                             "staging", merge="staging")
        print("30-day track query ...", flush=True)
        track_ms, track_rows_ms, track_rows = track_query_ms(one_dsn)
        server = databases.server()
    finally:
        broker.stop()
        if pg is not None:
            pg.stop()
        else:
            databases.drop_all()
    expected_rows = MESSAGES * (SAMPLES_PER_MESSAGE + FIXES_PER_MESSAGE)
    print_table(
        f"cloud ingest: {MESSAGES} messages × {SAMPLES_PER_MESSAGE + FIXES_PER_MESSAGE} rows "
        f"({mean_bytes / 1024:.1f} KiB each), {DEVICES} devices; {server}, storage {databases.mode}",
        ["path", "rows", "seconds", "rows/s", "signal rows/s", "vs raw COPY", "stored once"],
        [
            ["raw binary COPY (baseline)", copy_rows, copy_s, raw_rows_per_s,
             MESSAGES * SAMPLES_PER_MESSAGE / copy_s, 1.0, "-"],
            ["end to end, 1 receiver", one["rows"], one["seconds"], one["rows_per_s"],
             one["signal_rows_per_s"],
             one["rows_per_s"] / raw_rows_per_s,
             one["rows"] == expected_rows and one["distinct_messages"] == MESSAGES],
            ["end to end, 2 receivers", two["rows"], two["seconds"], two["rows_per_s"],
             two["signal_rows_per_s"],
             two["rows_per_s"] / raw_rows_per_s,
             two["rows"] == expected_rows and two["distinct_messages"] == MESSAGES],
            ["end to end, 1 receiver, merge=staging", staging["rows"], staging["seconds"],
             staging["rows_per_s"], staging["signal_rows_per_s"], staging["rows_per_s"] / raw_rows_per_s,
             staging["rows"] == expected_rows and staging["distinct_messages"] == MESSAGES],
        ],
    )
    print_table(
        f"event publish→commit latency under that load ({EVENTS_PER_S} events/s) and track query",
        ["measure", "value", "goal"],
        [
            ["event p50 ms (1 receiver)", one["event_p50_ms"], "-"],
            ["event p99 ms (1 receiver)", one["event_p99_ms"], "<= 500"],
            ["event p99 ms (2 receivers)", two["event_p99_ms"], "-"],
            ["events stored (1 receiver)", one["events"], "-"],
            [f"30-day track query ms ({track_rows} fixes, tracks.track)", track_ms, "<= 50"],
            ["same query as psycopg rows (fetchall) ms", track_rows_ms, "-"],
            ["2 receivers / 1 receiver throughput", two["rows_per_s"] / one["rows_per_s"], "-"],
            ["bulk writer busy in write+commit (1 receiver)", one["writer_busy"], "-"],
            ["bulk batches committed (1 receiver)", one["batches"], "-"],
        ],
    )
    print_json_line({
        "storage": databases.mode, "server": server,
        "rows_per_s": {"end_to_end": round(one["rows_per_s"]), "raw_copy": round(raw_rows_per_s)},
        "event_latency_ms": {"p50": round(one["event_p50_ms"], 1), "p99": round(one["event_p99_ms"], 1)},
        "track_query_ms": round(track_ms, 2),
    })


if __name__ == "__main__":
    sys.exit(main())
