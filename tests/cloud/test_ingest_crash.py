"""A receiver process killed between receiving and committing loses nothing, and stops gracefully."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from cloud.store.db import Conn
from hil.services import REPO_ROOT, MosquittoBroker
from tests.cloud.conftest import register
from tests.cloud.helpers import Publisher, telemetry
from tests.cloud.test_ingest import count, wait_for


def _config(path: Path, dsn: str, port: int) -> Path:
    path.write_text(f"""
[database]
dsn = "{dsn}"
[mqtt]
port = {port}
insecure_plaintext = true  # the test broker on loopback
client_id = "receiver-crash-test"
share_group = "crash"
[ingest]
batch_max_delay_ms = 50
[metrics]
port = 0
""")
    return path


def _spawn(config: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "lienwatch", "cloud", "ingest", "--config", str(config)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    assert "ingesting" in line, line + (process.stderr.read() if process.poll() is not None else "")
    return process


def _blocked_receivers(db: Conn) -> int:
    row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lienwatch-ingest%%' "
                     "AND wait_event_type = 'Lock'").fetchone()
    return int(row[0]) if row else 0


def test_receiver_killed_between_receive_and_commit_loses_nothing(
    migrated_db: str, db: Conn, broker_factory: object, tmp_path: Path
) -> None:
    broker: MosquittoBroker = broker_factory()  # type: ignore[operator]
    register(db, "gw-k")
    config = _config(tmp_path / "receiver.toml", migrated_db, broker.port)
    publisher = Publisher(broker.port, client_id="pub-crash")
    receiver = _spawn(config)
    try:
        publisher.send([telemetry("gw-k", seq, samples=100, fixes=2) for seq in range(20)])
        wait_for(lambda: count(db, "signal_samples") == 2000, what="first messages stored")
        with psycopg.connect(migrated_db) as locker:
            # Hold inserts into signal_samples: the receiver's next batch waits inside its transaction.
            locker.execute("LOCK TABLE signal_samples IN SHARE MODE")
            publisher.send([telemetry("gw-k", seq, samples=100, fixes=2) for seq in range(20, 50)])
            wait_for(lambda: _blocked_receivers(db) == 1, what="the receiver to wait in its transaction")
            receiver.send_signal(signal.SIGKILL)
            receiver.wait(10)
        assert count(db, "signal_samples") == 2000  # the killed transaction committed nothing
        receiver = _spawn(config)  # same client id: the broker redelivers what was never acknowledged
        wait_for(lambda: count(db, "signal_samples") == 5000, what="redelivered messages stored")
        time.sleep(0.3)
        assert count(db, "signal_samples") == 5000 and count(db, "positions") == 100
        receiver.send_signal(signal.SIGTERM)
        out, err = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, err
        assert "stopped" in out
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait(10)
        publisher.close()
