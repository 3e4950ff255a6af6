"""Fault injection, end to end: is every record the agent accepted stored exactly once or counted lost?

Real processes: the agent (`bench.fault_agent`: the real `Agent` with a synthetic source and a
journal of what it accepted), the receiver (`lienwatch cloud ingest`), mosquitto started from the
shipped deploy/mosquitto/lienwatch.conf (mutual TLS, persistence, ACL) and PostgreSQL. A seeded
schedule then hurts them: the broker stopped gracefully and SIGKILLed (it loses what it held since
its last autosave; mosquitto 2.0.11 also forgets shared subscriptions on restart), the receiver
and the agent SIGKILLed at random points, the agent's outbox tail torn after a kill (power loss).
At the end the source stops, the outbox drains, and every accepted (boot, seq) is looked up:

    stored         in the database (events, signal samples, positions)
    counted_lost   the outbox's own loss counters (torn records on replay, evictions, rejections)
    silently_lost  accepted, not stored, and not explained by a counter  -> must be 0
    duplicates     rows stored twice                                      -> must be 0

    python bench/faults.py [--seed N] [--rounds N] [--fast]     # prints the table, then one JSON line

tests/test_faults.py runs the fast mode (one round) in `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import print_json_line, print_table  # noqa: E402
from cloud.store.db import connect  # noqa: E402
from cloud.store.devices import Device, add_device  # noqa: E402
from cloud.store.migrate import migrate  # noqa: E402
from hil.services import (  # noqa: E402
    MosquittoBroker,
    share_with_broker,
    start_mosquitto,
    start_postgres,
)
from hil.testpki import ACL_FILES, make_test_etc  # noqa: E402
from protocol.signing import generate_key, public_key_to_pem  # noqa: E402

DEVICE = "veh-fault"
INGEST = "lienwatch-ingest"
SHIPPED_CONF = REPO / "deploy/mosquitto/lienwatch.conf"
SERVICE_PORT = 8884  # the shipped service listener: the receiver's certificate is from the service CA
# The outbox record layout (edge/uplink/queue.py): read here to know which keys a tear destroyed.
_HEAD = struct.Struct("<HBBBQQI")
_KEY = struct.Struct("<IQ")


def make_pki(root: Path, *devices: str) -> Path:
    """A test PKI and the shipped ACLs, laid out like /etc/lienwatch/ (hil.testpki)."""
    etc = make_test_etc(root, devices)
    share_with_broker([etc / "mosquitto" / name for name in ACL_FILES])
    return etc


@dataclass
class Accounting:
    accepted: int = 0
    stored: int = 0
    counted_lost: int = 0
    torn_by_harness: int = 0
    missing: int = 0
    silently_lost: int = 0
    duplicates: int = 0
    redelivered: int = 0
    faults: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {"accepted": self.accepted, "stored": self.stored, "counted_lost": self.counted_lost,
                "silently_lost": self.silently_lost, "duplicates": self.duplicates}


class World:
    """The four processes and the means to hurt them."""

    def __init__(self, dsn: str, etc: Path, work: Path, rng: random.Random, *, receipt_timeout_s: float,
                 log: Callable[[str], None]) -> None:
        self.dsn, self.etc, self.work, self.rng, self.log = dsn, etc, work, rng, log
        self.journal = work / "journal.txt"
        self.stop_flag = work / "stop-producing"
        self.state = work / "agent-state"
        self.status_file = work / "agent-status.json"
        self.torn_keys: set[tuple[int, int]] = set()
        self.faults: list[str] = []
        self.broker: MosquittoBroker = start_mosquitto(SHIPPED_CONF, path_map={"/etc/lienwatch/": f"{etc}/"},
                                                       work_dir=work / "broker")
        self.receiver_toml = self._receiver_config()
        self.agent_toml = self._agent_config(receipt_timeout_s)
        self.receiver: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None

    # -- configs -----------------------------------------------------------------------------

    def _receiver_config(self) -> Path:
        pki = self.etc / "pki"
        path = self.work / "receiver.toml"
        path.write_text(f"""receiver_id = "fault-rx"
[database]
dsn = {json.dumps(self.dsn)}
[mqtt]
host = "127.0.0.1"
port = {self.broker.ports[SERVICE_PORT]}
client_id = "fault-rx"
[mqtt.tls]
ca_file = "{pki}/ca.crt"
cert_file = "{pki}/services/{INGEST}.crt"
key_file = "{pki}/services/{INGEST}.key"
[ingest]
batch_max_delay_ms = 50
receipt_interval_ms = 300
[metrics]
port = 0
[maintenance]
summaries_interval_s = 3600.0
""")
        return path

    def _agent_config(self, receipt_timeout_s: float) -> Path:
        pki = self.etc / "pki"
        keys = self.work / "command-keys.pem"
        keys.write_bytes(public_key_to_pem(generate_key().public_key()))
        path = self.work / "agent.toml"
        path.write_text(f"""[device]
id = "{DEVICE}"
[agent]
state_dir = "{self.state}"
status_file = "{self.status_file}"
status_interval_s = 0.3
tick_s = 0.02
[uplink.mqtt]
host = "127.0.0.1"
port = {self.broker.port}
ca_file = "{pki}/ca.crt"
cert_file = "{pki}/devices/{DEVICE}.crt"
key_file = "{pki}/devices/{DEVICE}.key"
reconnect_min_s = 0.2
reconnect_max_s = 2.0
connect_timeout_s = 5.0
[uplink.receipts]
mode = "auto"
timeout_s = {receipt_timeout_s}
[uplink.telemetry]
batch_interval_s = 1.0
batch_max_bytes = 256
sample_period_s = 0.02
[uplink.queue]
sync_interval_s = 0.5
[downlink]
command_keys = "{keys}"
""")
        return path

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115  (the child holds it)
        return subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})

    def start_receiver(self) -> None:
        self.receiver = self._spawn("receiver", ["-m", "lienwatch", "cloud", "ingest", "--config",
                                                 str(self.receiver_toml)])

    def start_agent(self) -> None:
        self.agent = self._spawn("agent", ["-m", "bench.fault_agent", str(self.agent_toml),
                                           str(self.journal), str(self.stop_flag)])

    @staticmethod
    def _kill(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def note(self, what: str) -> None:
        self.faults.append(what)
        self.log(f"  fault: {what}")

    # -- the faults --------------------------------------------------------------------------

    def broker_stop(self, down_s: float) -> None:
        self.note(f"broker stopped gracefully for {down_s:.1f} s")
        self.broker.stop(remove=False)
        time.sleep(down_s)
        self.broker.restart()

    def broker_kill(self, down_s: float) -> None:
        self.note(f"broker SIGKILLed for {down_s:.1f} s")
        self._kill_broker()
        time.sleep(down_s)
        self.broker.restart()

    def _kill_broker(self) -> None:
        process = self.broker.process
        if process.poll() is None:
            process.kill()
            process.wait(10)

    def receiver_kill(self, down_s: float) -> None:
        self.note(f"receiver SIGKILLed, back after {down_s:.1f} s")
        self._kill(self.receiver)
        time.sleep(down_s)
        self.start_receiver()

    def agent_kill(self, *, tear: bool) -> None:
        self._kill(self.agent)
        torn = self.tear_tail() if tear else 0
        self.note("agent SIGKILLed" + (f", outbox tail torn ({torn} records cut)" if tear else ""))
        self.start_agent()

    def tear_tail(self) -> int:
        """Cut the newest outbox segment inside its last data record, at a random byte: power lost
        while that record was being written. (Whole records behind a cut leave no trace at all: a
        real power loss can only take records not yet synced, see docs/agent.md.)"""
        segments = [s for s in sorted((self.state / "outbox").glob("seg-*.log")) if s.stat().st_size]
        for segment in reversed(segments):
            data = segment.read_bytes()
            records = [(start, end, key) for start, end, key in _record_starts(data) if key is not None]
            if not records:
                continue
            start, end, key = records[-1]
            cut = self.rng.randrange(start + 1, end)
            self.torn_keys.add(key)
            with open(segment, "r+b") as handle:
                handle.truncate(cut)
            return 1
        return 0

    # -- the end -----------------------------------------------------------------------------

    def drain(self, timeout_s: float) -> bool:
        """Stop producing, wait until the outbox is empty (every record confirmed), stop cleanly."""
        self.stop_flag.touch()
        deadline = time.monotonic() + timeout_s
        drained = False
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                status = json.loads(self.status_file.read_text())
            except (OSError, ValueError):
                continue
            if status["queue"]["depth"] == 0 and time.time_ns() - status["written_ns"] < 5e9:
                drained = True
                break
        self._kill(self.agent, signal.SIGTERM)
        self._kill(self.receiver, signal.SIGTERM)
        return drained

    def close(self) -> None:
        self._kill(self.agent)
        self._kill(self.receiver)
        self.broker.stop()


def _record_starts(data: bytes) -> Iterator[tuple[int, int, tuple[int, int] | None]]:
    """(start, end, key) of each whole record in a segment (key None: no keyed data record)."""
    position = 0
    while position + _HEAD.size <= len(data):
        magic, kind, _, _, _, _, length = _HEAD.unpack_from(data, position)
        if magic != 0x51A7:
            return
        end = position + _HEAD.size + length + 4
        key = _KEY.unpack_from(data, position + _HEAD.size) if kind == 4 else None
        yield position, end, key
        position = end


def account(world: World, drained: bool) -> Accounting:
    """Compare the journal (accepted) with the database (stored) and the loss counters."""
    accepted: set[tuple[int, int]] = set()
    counted = 0
    if not world.journal.exists() or not world.status_file.exists():
        tail = (world.work / "agent.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the agent never ran; its log ends with:\n{tail}")
    for line in world.journal.read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["recovered", "torn_records"]:
            counted += int(parts[2])
        elif len(parts) == 3:
            accepted.add((int(parts[0]), int(parts[1])))
    status = json.loads(world.status_file.read_text())
    queue = status["queue"]
    resent = 0
    for line in (world.work / "agent.log").read_text(errors="replace").splitlines():
        if "no stored receipt in time" in line:
            entry = json.loads(line)
            resent += int(entry.get("skipped", 0)) + int(entry.get("overdue", 0))
    counted += queue["evicted"] + queue["rejected"]
    with connect(world.dsn) as conn:
        stored: set[tuple[int, int]] = set()
        for table in ("signal_samples", "positions", "events"):
            rows = conn.execute(f"SELECT DISTINCT boot_id, seq FROM {table} WHERE device_id = %s",  # type: ignore[arg-type]
                                (DEVICE,)).fetchall()
            stored.update((int(b), int(s)) for b, s in rows)
        dup_row = conn.execute(  # rows of one (boot, seq[, row]) stored twice
            "SELECT (SELECT count(*) - count(DISTINCT (boot_id, seq, row_idx, signal_id))"
            "        FROM signal_samples)"
            " + (SELECT count(*) - count(DISTINCT (boot_id, seq, row_idx)) FROM positions)"
            " + (SELECT count(*) - count(DISTINCT (boot_id, seq)) FROM events)").fetchone()
    missing = accepted - stored
    torn_missing = missing & world.torn_keys
    result = Accounting(
        accepted=len(accepted), stored=len(accepted & stored), counted_lost=counted,
        torn_by_harness=len(world.torn_keys), missing=len(missing),
        silently_lost=len(missing - world.torn_keys) + max(len(torn_missing) - counted, 0),
        duplicates=int(dup_row[0]) if dup_row else 0, redelivered=resent,
        faults=list(world.faults))
    if not drained:
        result.faults.append("the outbox did not drain in time: records still on the device are missing")
    return result


def schedule(world: World, rng: random.Random, rounds: int, fast: bool) -> None:
    """Each round: the five faults in a random order, with random pauses between them."""
    pause = (1.5, 3.0) if fast else (3.0, 12.0)
    down = (1.0, 3.0) if fast else (3.0, 20.0)
    for _ in range(rounds):
        faults = ["broker_stop", "broker_kill", "receiver_kill", "agent_kill", "agent_kill_tear"]
        rng.shuffle(faults)
        for fault in faults:
            time.sleep(rng.uniform(*pause))
            if fault == "broker_stop":
                world.broker_stop(rng.uniform(*down))
            elif fault == "broker_kill":
                world.broker_kill(rng.uniform(*down))
            elif fault == "receiver_kill":
                world.receiver_kill(rng.uniform(0.2, down[1]))
            else:
                world.agent_kill(tear=fault == "agent_kill_tear")
    time.sleep(rng.uniform(*pause))


def run_faults(dsn: str, etc: Path, work: Path, *, seed: int, rounds: int = 1, fast: bool = True,
               log: Callable[[str], None] = print) -> Accounting:
    """One seeded run against a migrated, empty database; `etc` holds the PKI (make_pki)."""
    rng = random.Random(seed)
    with connect(dsn) as conn:
        add_device(conn, Device(device_id=DEVICE))
    world = World(dsn, etc, work, rng, receipt_timeout_s=5.0, log=log)
    try:
        world.start_receiver()
        world.start_agent()
        time.sleep(3.0)
        schedule(world, rng, rounds, fast)
        drained = world.drain(timeout_s=90 if fast else 300)
        return account(world, drained)
    finally:
        world.close()


def print_report(results: list[tuple[int, Accounting]]) -> None:
    rows = [[seed, r.accepted, r.stored, r.counted_lost, r.torn_by_harness, r.missing, r.silently_lost,
             r.duplicates, r.redelivered, len(r.faults)] for seed, r in results]
    print_table("Fault injection: every accepted record stored once or counted lost",
                ["seed", "accepted", "stored", "counted_lost", "torn", "missing", "silently_lost",
                 "duplicates", "re-sent*", "faults"], rows)
    print("* re-sent: records the agent sent again for want of a stored receipt (its log)")
    for seed, result in results:
        print(f"seed {seed}: " + "; ".join(result.faults))


@contextmanager
def _services() -> Iterator[tuple[str, Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="lienwatch-faults-"))
    root.chmod(0o755)
    try:
        with start_postgres() as pg:
            yield pg.dsn, make_pki(root / "etc", DEVICE), root
    finally:
        if os.environ.get("LIENWATCH_FAULTS_KEEP"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="seeded runs, one after the other")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the five faults per run")
    parser.add_argument("--fast", action="store_true", help="short pauses and outages (the test's mode)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    results: list[tuple[int, Accounting]] = []
    with _services() as (dsn, etc, root):
        for seed in range(args.seed, args.seed + args.runs):
            with connect(dsn) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS faults_{seed}")  # type: ignore[arg-type]
                conn.execute(f"CREATE DATABASE faults_{seed}")  # type: ignore[arg-type]
            db = dsn.rsplit("/", 1)[0] + f"/faults_{seed}"
            migrate(db)
            print(f"run with seed {seed}", flush=True)
            work = root / f"run-{seed}"
            work.mkdir()
            work.chmod(0o755)
            results.append((seed, run_faults(db, etc, work, seed=seed, rounds=args.rounds, fast=args.fast)))
    print_report(results)
    total = Accounting()
    for _, r in results:
        total.accepted += r.accepted
        total.stored += r.stored
        total.counted_lost += r.counted_lost
        total.silently_lost += r.silently_lost
        total.duplicates += r.duplicates
    print_json_line({**total.figures(), "runs": len(results), "seeds": [s for s, _ in results]})
    return 1 if total.silently_lost or total.duplicates else 0


if __name__ == "__main__":
    sys.exit(main())
