"""bench/api.py end to end at a tiny size: seeds, packs, serves, measures, keeps and reuses its
database on the session's server, and ends with the issue's JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[3]
KEYS = {"track_30d_ms", "trips_30d_ms", "device_list_ms", "event_list_ms"}


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.api", "--devices", "3", "--days", "2",
                           "--events", "2", "--requests", "8", "--clients", "2", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_the_api_benchmark_runs_keeps_its_database_and_reuses_it(postgres_dsn: str) -> None:
    first = _bench("--dsn", postgres_dsn, "--keep")
    assert first.returncode == 0, first.stderr[-2000:]
    figures = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(figures) == KEYS
    assert all(0 < v["p50"] <= v["p99"] for v in figures.values())
    assert "DB CPU ms/req" in first.stdout and "3 devices x 2 days" in first.stdout
    kept = first.stderr.split("kept database '")[1].split("'")[0]
    try:
        again = _bench("--dsn", postgres_dsn, "--reuse", kept)
        assert again.returncode == 0, again.stderr[-2000:]
        assert set(json.loads(again.stdout.strip().splitlines()[-1])) == KEYS
        assert "3 devices x 2 days" in again.stdout  # what was seeded, not the command line's defaults
        refused = _bench("--reuse", kept)  # without --dsn: the bench's own server has no such database
        assert refused.returncode == 2 and "--reuse need --dsn" in refused.stderr
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE)')  # type: ignore[arg-type]
