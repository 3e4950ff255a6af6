"""Benchmark: the lender's API under 16 concurrent clients against a real uvicorn on loopback.

Seeds a database (plain storage; its own PostgreSQL from hil.services, or `--dsn`): `--devices`
(1,000) cars x `--days` (30) of one fix a minute (a commute, parked at home and at work with GNSS
jitter), with binary COPY, plus `--events` per car and each car's latest state; then every day is
summarised and its track packed as the receiver does (`summaries.refresh_dirty`). Then starts
`lienwatch cloud api` as its own process (`--workers` processes, one per core by default, as
deploy/api/api.toml says to run it) and measures, per endpoint, `--clients` clients
(16) each sending requests back to back:

* track_30d: GET /devices/{id}/track over the 30 days, simplified (tolerance_m=10);
* trips_30d: GET /devices/{id}/trips over the 30 days;
* device_list: GET /devices?limit=100;
* event_list: GET /events?limit=100.

The clients are keep-alive connections on one asyncio loop (bench/httpload.py: tens of
microseconds of client CPU a request, so the client does not take the cores it measures). The
baseline, measured in the same run, is one client alone on the same endpoint (the ratio shows what
concurrency costs on this machine); the table also gives the answers a second under load and the
CPU the API processes and the database server spent per answer (from /proc), which bound what the
machine can serve: 16 clients back to back wait about 16 x the CPU per answer / the cores.
Goals: track p99 <= 100 ms, trips p99 <= 200 ms, device list p99 <= 50 ms. The last line is the
JSON of the 16-client figures.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from bench.httpload import run_load  # noqa: E402
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


def seeded(conn: Conn) -> tuple[datetime, int, int, int, float, float]:
    """What an earlier `--keep` run seeded: its `now`, devices, days, rows and times."""
    row = conn.execute("SELECT now, devices, days, rows, seed_s, packing_s FROM bench_api_seed").fetchone()
    if row is None:
        raise SystemExit("this database was not seeded by bench/api.py --keep")
    return row[0], row[1], row[2], row[3], row[4], row[5]


def serve(dsn: str, work: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = work / "api.toml"
    config.write_text(f'[database]\ndsn = "{dsn}"\n[api]\nhost = "127.0.0.1"\nport = {port}\n'
                      f"pool_min_size = 4\npool_max_size = 16\nworkers = {workers}\n"
                      "[api.rate_limit]\nper_minute = 10000000\nburst = 1000000\n")
    log = (work / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "api", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, 60, process)
    return process, f"http://127.0.0.1:{port}"


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes `pids` have used (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _api_pids(api_pid: int) -> list[int]:
    """The API process and its worker processes (`[api] workers`)."""
    found = subprocess.run(["pgrep", "-P", str(api_pid)], capture_output=True, text=True).stdout
    return [api_pid, *(int(pid) for pid in found.split())]


def _postgres_pids(server_pid: int | None) -> list[int]:
    """The PostgreSQL backends of the bench's own server (none with --dsn: not ours to read)."""
    if server_pid is None:
        return []
    found = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout
    return [server_pid, *(int(pid) for pid in found.split())]


def _postmaster_pid(dsn: str) -> int | None:
    """The pid of the server at `dsn` if it runs on this machine (a backend's parent)."""
    with connect(dsn) as conn:  # read while the backend lives: it exits with the connection
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        try:
            return int(Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]) if row else None
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class Measured:
    latencies_ms: list[float]
    per_s: float  # answers a second
    api_cpu_ms: float  # the API process's CPU per answer
    db_cpu_ms: float | None  # the database server's CPU per answer (None: not measured)


def measure(base: str, token: str, urls: list[str], clients: int, api_pid: int,
            db_pid: int | None) -> Measured:
    """GET `urls` over `clients` keep-alive connections sending back to back (bench/httpload.py);
    with the CPU the API and the database spent on them."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    db = _postgres_pids(db_pid)
    api_pids = _api_pids(api_pid)
    api0, db0 = _cpu_s(api_pids), {pid: _cpu_s([pid]) for pid in db}
    result = run_load(host, int(port), token, urls, clients)
    api1 = _cpu_s(api_pids)
    alive = set(_postgres_pids(db_pid))  # a backend that ended meanwhile took its CPU count along
    db1 = sum(_cpu_s([pid]) - before for pid, before in db0.items() if pid in alive)
    if result.errors:
        raise SystemExit(f"{len(result.errors)} requests failed, e.g. {result.errors[0]}")
    n = len(urls)
    return Measured(result.latencies_ms, n / result.wall_s, (api1 - api0) * 1000 / n,
                    db1 * 1000 / n if db else None)


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
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="API worker processes ([api] workers; default: one per core)")
    parser.add_argument("--dsn", help="a PostgreSQL server to use (a role that may create databases)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the seeded database (on --dsn's server) and print its name")
    parser.add_argument("--reuse", metavar="DATABASE",
                        help="measure on a database seeded by an earlier --keep run (with --dsn)")
    args = parser.parse_args()
    if (args.keep or args.reuse) and not args.dsn:
        parser.error("--keep and --reuse need --dsn (the bench's own server is removed at exit)")
    server = None if args.dsn else start_postgres(settings={"max_connections": "200",
                                                           "shared_buffers": "512MB"})
    admin_dsn = args.dsn or server.dsn  # type: ignore[union-attr]
    name = args.reuse or f"bench_api_{int(time.time())}"
    if not args.reuse:
        with connect(admin_dsn) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    dsn = make_conninfo(admin_dsn, dbname=name)
    api = None
    try:
        with connect(dsn) as conn:
            if args.reuse:
                now, args.devices, args.days, rows, seconds, packing_s = seeded(conn)
            else:
                now = datetime.now(UTC)
                migrate(dsn, mode="plain")
                seconds, rows = seed(conn, args.devices, args.days, args.events, now)
                packing_s = summarise(conn, args.devices, args.days, now)
                conn.execute("CREATE TABLE bench_api_seed AS SELECT %s::timestamptz AS now, "
                             "%s::int AS devices, %s::int AS days, %s::bigint AS rows, "
                             "%s::float8 AS seed_s, %s::float8 AS packing_s",
                             (now, args.devices, args.days, rows, seconds, packing_s))
            sizes_mb = {table: table_mb(conn, table) for table in ("positions", "track_days")}
            _, token = create_key(conn, "bench-risk", "risk_officer")
        with tempfile.TemporaryDirectory(prefix="lienwatch-bench-api-") as work:
            api, base = serve(dsn, Path(work), args.workers)
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
            db_pid = server.pid if server is not None else _postmaster_pid(dsn)
            for key, make in endpoints.items():
                # Warm-up, as a server that has been up a while: every pooled connection (up to 16 per
                # worker) has run the endpoint's statements more than psycopg's prepare threshold
                # and PostgreSQL's five custom plans, so they are prepared (planning a query over
                # the partitions costs as much as running it).
                measure(base, token, [make() for _ in range(args.clients * 16 * args.workers)],
                        args.clients, api.pid, db_pid)
                alone = measure(base, token, [make() for _ in range(max(30, args.requests // 4))], 1,
                                api.pid, db_pid)
                loaded = measure(base, token, [make() for _ in range(args.requests)], args.clients,
                                 api.pid, db_pid)
                one, many = percentiles(alone.latencies_ms), percentiles(loaded.latencies_ms)
                figures[key] = many
                goal = GOALS_MS.get(key)
                table.append([key.removesuffix("_ms"), one["p50"], one["p99"], many["p50"], many["p99"],
                              round(many["p50"] / one["p50"], 2) if one["p50"] else None,
                              round(loaded.per_s), round(alone.api_cpu_ms, 2),
                              "-" if alone.db_cpu_ms is None else round(alone.db_cpu_ms, 2),
                              "n/a" if goal is None else ("yes" if many["p99"] <= goal else "NO"),
                              "-" if goal is None else goal])
            sample = httpx.get(f"{base}{endpoints['track_30d_ms']()}",
                               headers={"Authorization": f"Bearer {token}"}).json()
        print_table(f"API under load: {args.devices} devices x {args.days} days at 1 fix/min "
                    f"({rows:,} positions seeded in {seconds:.0f} s), {args.clients} clients, "
                    f"{args.workers} API worker(s), {os.cpu_count()} cores",
                    ["endpoint", "1 client p50", "1 client p99", f"{args.clients} p50", f"{args.clients} p99",
                     "p50 ratio", f"{args.clients} req/s", "API CPU ms/req", "DB CPU ms/req", "goal met",
                     "goal p99 ms"], table)
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
        if args.keep or args.reuse:
            print(f"kept database {name!r}: measure again with --dsn ... --reuse {name}", file=sys.stderr)
        else:
            with connect(admin_dsn) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
