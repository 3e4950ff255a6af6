"""Benchmark: the lender's API under 16 concurrent clients against a real uvicorn on loopback.

Seeds a database (plain storage; its own PostgreSQL from hil.services, or `--dsn`): `--devices`
(1,000) cars x `--days` (30) of one fix a minute (a commute, parked at home and at work with GNSS
jitter), with binary COPY, plus `--events` per car and each car's latest state; then every day is
summarised and its track packed as the receiver does (`summaries.refresh_dirty`). Then starts
`lienwatch cloud api` as its own process and measures, per endpoint, `--clients` clients
(16) each sending requests back to back:

* track_30d: GET /devices/{id}/track over the 30 days, simplified (tolerance_m=10);
* trips_30d: GET /devices/{id}/trips over the 30 days;
* device_list: GET /devices?limit=100;
* event_list: GET /events?limit=100.

The baseline, measured in the same run, is one client alone on the same endpoint (the ratio
shows what concurrency costs on this machine). Goals: track p99 <= 100 ms, trips p99 <= 200 ms,
device list p99 <= 50 ms. The last line is the JSON of the 16-client figures.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from bench.report import print_json_line, print_table  # noqa: E402
from cloud.api.keys import create_key  # noqa: E402
from cloud.ingest.writer import POSITIONS  # noqa: E402
from cloud.store import summaries  # noqa: E402
from cloud.store.copybin import HEADER, TRAILER  # noqa: E402
from cloud.store.db import Conn, connect  # noqa: E402
from cloud.store.migrate import migrate  # noqa: E402
from cloud.store.partitions import PartitionKeeper  # noqa: E402
from hil.services import free_port, start_postgres, wait_for_port  # noqa: E402

GOALS_MS = {"track_30d_ms": 100.0, "trips_30d_ms": 200.0, "device_list_ms": 50.0}
M_PER_DEG = 111_195.0


def day_template(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One day at one fix a minute: offsets (m, north/east) from home and speed (km/h)."""
    minutes = np.arange(1440)
    north, east, speed = np.zeros(1440), np.zeros(1440), np.zeros(1440)
    work = rng.uniform(3000, 15000, 2)
    leave, back = int(rng.integers(420, 540)), int(rng.integers(990, 1110))
    for start, a, b in ((leave, np.zeros(2), work), (back, work, np.zeros(2))):
        drive = minutes[start:start + 30]
        f = (drive - start) / 30.0
        wiggle = 400 * np.sin(f * math.pi * 3)
        north[start:start + 30] = a[0] + (b[0] - a[0]) * f + wiggle
        east[start:start + 30] = a[1] + (b[1] - a[1]) * f - wiggle
        speed[start:start + 30] = 40 + 20 * np.sin(f * math.pi)
    north[leave + 30:back], east[leave + 30:back] = work[0], work[1]
    return north, east, speed


def device_rows(device: bytes, index: int, start_ns: int, days: int, rng: np.random.Generator) -> bytes:
    parts_n, parts_e, parts_v = [], [], []
    for _ in range(days):
        n, e, v = day_template(rng)
        parts_n.append(n)
        parts_e.append(e)
        parts_v.append(v)
    north, east, speed = np.concatenate(parts_n), np.concatenate(parts_e), np.concatenate(parts_v)
    parked = speed == 0
    north[parked] += rng.normal(0, 3, parked.sum())
    east[parked] += rng.normal(0, 3, parked.sum())
    home_lat = 47.5 + (index % 40) * 0.05
    home_lon = 8.0 + (index // 40) * 0.05
    lat = home_lat + north / M_PER_DEG
    lon = home_lon + east / (M_PER_DEG * math.cos(math.radians(home_lat)))
    count = len(lat)
    times = start_ns + np.arange(count, dtype=np.int64) * 60 * 10**9
    return POSITIONS.encode(count, (
        device, times, 1, np.arange(count, dtype=np.int64), np.zeros(count, dtype=np.int32), lat, lon,
        np.full(count, 420.0, dtype=np.float32), speed.astype(np.float32),
        np.zeros(count, dtype=np.float32), np.full(count, 0.9, dtype=np.float32),
        np.full(count, 10, dtype=np.int16), np.full(count, 2, dtype=np.int16), 3))


def seed(conn: Conn, devices: int, days: int, events: int, now: datetime) -> tuple[float, int]:
    """Register and fill the fleet; returns (seconds, position rows)."""
    started = time.perf_counter()
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    keeper = PartitionKeeper()
    for table in ("positions", "events", "event_lifecycle", "device_status", "daily_summaries"):
        keeper.ensure(conn, table, start.date(), now.date())
    conn.execute("INSERT INTO devices (device_id, time_zone) "
                 "SELECT format('veh-%%s', lpad(i::text, 4, '0')), 'UTC' FROM generate_series(0, %s - 1) i",
                 (devices,))
    conn.execute("INSERT INTO points_of_interest (device_id, name, kind, lat_deg, lon_deg) "
                 "SELECT device_id, 'home', 'home', 47.5, 8.0 FROM devices")
    rng = np.random.default_rng(16)
    start_ns = int(start.timestamp()) * 10**9
    batch = 10
    for first in range(0, devices, batch):
        with conn.transaction(), conn.cursor().copy(
                f"COPY positions ({POSITIONS.column_list}) FROM STDIN (FORMAT BINARY)") as copy:  # type: ignore[arg-type]
            copy.write(HEADER)
            for i in range(first, min(devices, first + batch)):
                copy.write(device_rows(f"veh-{i:04d}".encode(), i, start_ns, days, rng))
            copy.write(TRAILER)
        done = min(devices, first + batch)
        rate = done * days * 1440 / (time.perf_counter() - started)
        print(f"\r  seeded {done}/{devices} devices ({rate:,.0f} rows/s)", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    conn.execute(
        "INSERT INTO events (device_id, time, boot_id, seq, event_id, detector, severity, lat_deg, lon_deg, "
        "  clock_quality, received_at, transition) "
        "SELECT d.device_id, %(start)s + (k * interval '1 day' * %(days)s / %(events)s), 1, k, k, "
        "  (ARRAY['tow', 'unplug', 'geofence', 'harsh_braking'])[1 + k %% 4], "
        "  (ARRAY['WARNING', 'ALERT', 'EMERGENCY'])[1 + k %% 3], 47.5, 8.0, 3, now(), 'raised' "
        "FROM devices d CROSS JOIN generate_series(0, %(events)s - 1) k",
        {"start": start, "days": days, "events": events})
    conn.execute("INSERT INTO event_lifecycle (device_id, event_time, boot_id, seq, event_id, state) "
                 "SELECT device_id, time, boot_id, seq, event_id, "
                 "  CASE WHEN seq % 5 = 0 THEN 'open' ELSE 'resolved' END FROM events")
    conn.execute("INSERT INTO device_latest (device_id, last_message_at, last_received_at, last_position_at, "
                 "  lat_deg, lon_deg, speed_kmh) "
                 "SELECT device_id, %(now)s, %(now)s, %(now)s, 47.5, 8.0, 0 FROM devices", {"now": now})
    conn.execute("ANALYZE")
    return time.perf_counter() - started, devices * days * 1440


def table_mb(conn: Conn, table: str) -> float:
    """Size of a partitioned table (all partitions, TOAST and indexes) in MB."""
    row = conn.execute("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                       "WHERE inhparent = %s::regclass", (table,)).fetchone()
    return round(int(row[0]) / 1e6, 1) if row else 0.0


def summarise(conn: Conn, devices: int, days: int, now: datetime) -> float:
    """Recompute every seeded day the way the receiver does (summaries.refresh_dirty: daily
    summaries and packed tracks); returns seconds."""
    started = time.perf_counter()
    first = (now - timedelta(days=days + 1)).date()
    PartitionKeeper().ensure(conn, "track_days", first, now.date())
    conn.execute("INSERT INTO summary_dirty (device_id, day) SELECT device_id, d::date FROM devices "
                 "CROSS JOIN generate_series(%s::date, %s::date, interval '1 day') d", (first, now.date()))
    done = 0
    while (row := conn.execute("SELECT count(*) FROM summary_dirty").fetchone()) and row[0]:
        summaries.refresh_dirty(conn, oldest_day=first, limit=250)
        done += min(250, int(row[0]))
        print(f"\r  summarised and packed {done:,} device-days "
              f"({done / (time.perf_counter() - started):,.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    conn.execute("ANALYZE track_days")
    return time.perf_counter() - started


def serve(dsn: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = work / "api.toml"
    config.write_text(f'[database]\ndsn = "{dsn}"\n[api]\nhost = "127.0.0.1"\nport = {port}\n'
                      "pool_min_size = 4\npool_max_size = 16\n"
                      "[api.rate_limit]\nper_minute = 10000000\nburst = 1000000\n")
    log = (work / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "api", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, 60, process)
    return process, f"http://127.0.0.1:{port}"


def measure(base: str, token: str, urls: list[str], clients: int) -> list[float]:
    """Latencies (ms) of `urls`, spread over `clients` threads each sending back to back."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(mine: list[str]) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            for url in mine:
                t0 = time.perf_counter()
                answer = client.get(url)
                elapsed = (time.perf_counter() - t0) * 1000
                if answer.status_code != 200:
                    errors.append(f"{url}: {answer.status_code} {answer.text[:200]}")
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=run, args=(urls[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return latencies


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 1),
            "p99": round(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events", type=int, default=20, help="events per device")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320, help="requests per endpoint (concurrent)")
    parser.add_argument("--dsn", help="a PostgreSQL server to use (a role that may create databases)")
    args = parser.parse_args()
    now = datetime.now(UTC)
    server = None if args.dsn else start_postgres(settings={"max_connections": "200",
                                                           "shared_buffers": "512MB"})
    admin_dsn = args.dsn or server.dsn  # type: ignore[union-attr]
    name = f"bench_api_{int(time.time())}"
    with connect(admin_dsn) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    dsn = make_conninfo(admin_dsn, dbname=name)
    api = None
    try:
        migrate(dsn, mode="plain")
        with connect(dsn) as conn:
            seconds, rows = seed(conn, args.devices, args.days, args.events, now)
            packing_s = summarise(conn, args.devices, args.days, now)
            sizes_mb = {table: table_mb(conn, table) for table in ("positions", "track_days")}
            _, token = create_key(conn, "bench-risk", "risk_officer")
        with tempfile.TemporaryDirectory(prefix="lienwatch-bench-api-") as work:
            api, base = serve(dsn, Path(work))
            rng = np.random.default_rng(1)
            span = f"from={(now - timedelta(days=args.days)).isoformat()}&to={now.isoformat()}"
            span = span.replace("+", "%2B")

            def device() -> str:
                return f"veh-{int(rng.integers(0, args.devices)):04d}"

            endpoints = {
                "track_30d_ms": lambda: f"/devices/{device()}/track?{span}&tolerance_m=10",
                "trips_30d_ms": lambda: f"/devices/{device()}/trips?{span}",
                "device_list_ms": lambda: "/devices?limit=100",
                "event_list_ms": lambda: "/events?limit=100",
            }
            figures: dict[str, Any] = {}
            table = []
            for key, make in endpoints.items():
                measure(base, token, [make() for _ in range(8)], 1)  # warm-up
                alone = percentiles(measure(base, token, [make() for _ in range(30)], 1))
                urls = [make() for _ in range(args.requests)]
                loaded = percentiles(measure(base, token, urls, args.clients))
                figures[key] = loaded
                goal = GOALS_MS.get(key)
                table.append([key.removesuffix("_ms"), alone["p50"], alone["p99"],
                              loaded["p50"], loaded["p99"],
                              round(loaded["p50"] / alone["p50"], 2) if alone["p50"] else None,
                              "n/a" if goal is None else ("yes" if loaded["p99"] <= goal else "NO"),
                              "-" if goal is None else goal])
            sample = httpx.get(f"{base}{endpoints['track_30d_ms']()}",
                               headers={"Authorization": f"Bearer {token}"}).json()
        print_table(f"API under load: {args.devices} devices x {args.days} days at 1 fix/min "
                    f"({rows:,} positions seeded in {seconds:.0f} s), {args.clients} clients",
                    ["endpoint", "1 client p50", "1 client p99", f"{args.clients} p50", f"{args.clients} p99",
                     "p50 ratio", "goal met", "goal p99 ms"], table)
        shown = sample["properties"]
        print(f"\n30-day track: {shown['fixes']:,} fixes -> {shown['points']:,} points at tolerance 10 m")
        print(f"daily summaries + packed tracks for {args.devices * (args.days + 2):,} device-days: "
              f"{packing_s:.0f} s; positions {sizes_mb['positions']:,} MB, "
              f"track_days {sizes_mb['track_days']:,} MB")
        print_json_line(figures)
    finally:
        if api is not None:
            api.terminate()
            api.wait(30)
        with connect(admin_dsn) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
