"""`lienwatch demo`: one car's data end to end, on embedded defaults, in about half a minute.

Everything runs on this machine and is stopped afterwards; nothing needs to be installed or
started by hand:
1. an embedded PostgreSQL (free loopback port) gets the schema (`cloud migrate`) and the device
   is registered;
2. a throwaway PKI is made and mosquitto is started from the shipped production config
   (mutual TLS, per-device ACL);
3. the receiver (`lienwatch cloud ingest`) and the agent (`lienwatch edge run`) run as real
   processes; the agent reads an emulated car (`hil.vehicle`): OBD-II over ISO-TP on an
   interface-local CAN multicast group, NMEA from a GNSS pty, 12 V supply from a fake sysfs;
4. after the drive the agent is stopped gracefully, the receiver drains, and the demo prints
   what reached the database;
5. with `--serve`, the API (`lienwatch cloud api`) then serves that database with the operations
   console until Ctrl-C; the demo prints the console's URL and an admin key for it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lienwatch.cliargs import number

DEVICE_ID = "demo-car-1"
_STARTUP_TIMEOUT_S = 120.0
VIN = "WVWZZZ1KZAW000001"
_HELP = "Drive an emulated car through the real agent, broker, receiver and database (~30 s)."


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help=_HELP, description=_HELP)
    demo.add_argument("--seconds", type=number(0, 86400), default=20.0, help="how long the car drives")
    demo.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, PKI)")
    demo.add_argument("--serve", action="store_true",
                      help="after the drive, serve the API and its console on the demo's data until Ctrl-C")
    demo.set_defaults(handler=run)


class _Say:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {text}", flush=True)


def _lienwatch(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "lienwatch", *args], stdout=out, stderr=out)


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


@contextlib.contextmanager
def _scratch(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="lienwatch-demo-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if keep:
            print(f"scratch directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from hil.services import REPO_ROOT, start_mosquitto, start_postgres
    from hil.testpki import make_test_etc
    from lienwatch.errors import ServiceError

    say = _Say()
    with _scratch(args.keep) as root:
        say("starting an embedded PostgreSQL on a free loopback port ...")
        with start_postgres(root / "postgres") as pg:
            _check(subprocess.run([sys.executable, "-m", "lienwatch", "cloud", "migrate", "--dsn", pg.dsn],
                                  capture_output=True, text=True), "cloud migrate")
            _check(subprocess.run([sys.executable, "-m", "lienwatch", "cloud", "devices", "add",
                                   "--dsn", pg.dsn, "--id", DEVICE_ID, "--vin", VIN,
                                   "--time-zone", "Europe/Zurich", "--region", "CH"],
                                  capture_output=True, text=True), "cloud devices add")
            say(f"schema migrated and device {DEVICE_ID} (VIN {VIN}) registered at {pg.dsn}")

            etc = make_test_etc(root / "etc", [DEVICE_ID])
            try:
                broker = start_mosquitto(REPO_ROOT / "deploy/mosquitto/lienwatch.conf",
                                         path_map={"/etc/lienwatch/": f"{etc}/"}, work_dir=root / "mqtt")
            except ServiceError as error:
                raise ServiceError(f"mosquitto (mutual TLS, shipped config) did not start: {error}") from None
            with broker:
                say(f"mosquitto with mutual TLS and the per-device ACL on 127.0.0.1:{broker.port}")
                return _drive(args, say, root, etc, pg.dsn, broker.port, broker.ports[8884])


def _drive(args: argparse.Namespace, say: _Say, root: Path, etc: Path, dsn: str, port: int,
           service_port: int) -> int:
    import logging

    import psycopg

    from hil.vehicle import EmulatedVehicle

    # Two emulated ECUs share the functional address, so each sees the other's flow control.
    logging.getLogger("isotp").setLevel(logging.ERROR)

    receiver_toml = root / "receiver.toml"
    receiver_toml.write_text(f"""receiver_id = "demo-receiver"
[database]
dsn = "{dsn}"
[mqtt]
host = "127.0.0.1"
port = {service_port}
client_id = "demo-receiver"
[mqtt.tls]
ca_file = "{etc}/pki/ca.crt"
cert_file = "{etc}/pki/services/lienwatch-ingest.crt"
key_file = "{etc}/pki/services/lienwatch-ingest.key"
[metrics]
port = 0
[maintenance]
summaries_interval_s = 2.0
""")
    receiver = _lienwatch("cloud", "ingest", "--config", str(receiver_toml), log=root / "receiver.log")
    from protocol.signing import generate_key, public_key_to_pem

    keys = etc / "command-keys.pem"
    keys.write_bytes(public_key_to_pem(generate_key().public_key()))
    try:
        with EmulatedVehicle(root / "vehicle", speed_kmh=50.0) as car:
            agent_toml = root / "agent.toml"
            agent_toml.write_text(f"""[device]
id = "{DEVICE_ID}"
[agent]
state_dir = "{root}/agent-state"
status_file = "{root}/agent-status.json"
status_interval_s = 1.0
[uplink.mqtt]
host = "127.0.0.1"
port = {port}
ca_file = "{etc}/pki/ca.crt"
cert_file = "{etc}/pki/devices/{DEVICE_ID}.crt"
key_file = "{etc}/pki/devices/{DEVICE_ID}.key"
[uplink.telemetry]
batch_interval_s = 3.0
[uplink]
status_interval_s = 5.0
[downlink]
command_keys = "{keys}"
""" + car.agent_sources_toml())
            say("emulated car: OBD-II ECUs on CAN group "
                f"{car.can_group} (interface-local), GNSS on {car.gnss_device}, 13.9 V supply")
            agent = _lienwatch("edge", "run", "--config", str(agent_toml), log=root / "agent.log")
            # The drive starts once the agent is up (its first status file): on a busy machine
            # starting it can take longer than a short drive.
            _wait_for_file(root / "agent-status.json", agent, timeout_s=_STARTUP_TIMEOUT_S)
            say(f"agent and receiver running; the car drives at {car.speed_kmh:.0f} km/h for "
                f"{args.seconds:.0f} s ...")
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                if agent.poll() is not None or receiver.poll() is not None:
                    break
                say("  " + _progress(dsn))
            agent_rc = _stop(agent)
            say(f"agent stopped gracefully (exit code {agent_rc}); waiting for the receiver to drain")
            _wait_stable(dsn)
    finally:
        receiver_rc = _stop(receiver)
    say(f"receiver stopped (exit code {receiver_rc})")
    with psycopg.connect(dsn) as conn:
        ok = _report(conn, say)
    if agent_rc != 0 or receiver_rc != 0 or not ok:
        for name in ("agent.log", "receiver.log"):
            tail = (root / name).read_text(errors="replace")[-3000:]
            print(f"--- {name} (tail) ---\n{tail}", file=sys.stderr)
        return 1
    if args.serve and not _serve(dsn, root, say):
        return 1
    say("demo finished: every server stopped, scratch data removed")
    return 0


def _serve(dsn: str, root: Path, say: _Say) -> bool:
    """Serve the API with the console on the demo's database until SIGINT/SIGTERM; False if it
    did not come up."""
    import urllib.request

    import psycopg

    from cloud.api.keys import create_key
    from hil.services import free_port

    with psycopg.connect(dsn, autocommit=True) as conn:
        _, token = create_key(conn, "demo", "admin", created_by="lienwatch demo")
    port = free_port()
    api_toml = root / "api.toml"
    api_toml.write_text(f'[database]\ndsn = "{dsn}"\n[api]\nhost = "127.0.0.1"\nport = {port}\n')
    api = _lienwatch("cloud", "api", "--config", str(api_toml), log=root / "api.log")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while api.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    if api.poll() is not None or time.monotonic() >= deadline:
        _stop(api)
        tail = (root / "api.log").read_text(errors="replace")[-3000:]
        print(f"--- api.log (tail) ---\n{tail}", file=sys.stderr)
        return False
    stop = {"now": False}

    def _on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    say(f"console: {base}/console/  (API key: {token})")
    say(f"API: {base}/openapi.json; Ctrl-C stops the API and the demo")
    try:
        while not stop["now"] and api.poll() is None:
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        rc = _stop(api)
    say(f"API stopped (exit code {rc})")
    return True


def _wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)


def _counts(dsn: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        result: dict[str, int] = {}
        for table in ("positions", "signal_samples", "device_status", "events", "rejected_messages"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            result[table] = int(row[0]) if row else 0
        return result


def _progress(dsn: str) -> str:
    counts = _counts(dsn)
    return (f"stored so far: {counts['positions']} positions, {counts['signal_samples']} signal samples, "
            f"{counts['device_status']} status messages")


def _wait_stable(dsn: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = _counts(dsn)
    while time.monotonic() < deadline:
        time.sleep(1.5)
        now = _counts(dsn)
        if now == last:
            return
        last = now


def _report(conn: object, say: _Say) -> bool:
    import psycopg

    assert isinstance(conn, psycopg.Connection)
    positions = conn.execute(
        "SELECT count(*), min(time), max(time), max(speed_kmh) FROM positions WHERE device_id = %s",
        (DEVICE_ID,)).fetchone()
    samples = conn.execute(
        "SELECT signal_id, count(*), round(avg(value)::numeric, 2) FROM signal_samples "
        "WHERE device_id = %s GROUP BY signal_id ORDER BY signal_id", (DEVICE_ID,)).fetchall()
    statuses = conn.execute("SELECT count(*) FROM device_status WHERE device_id = %s",
                            (DEVICE_ID,)).fetchone()
    rejected = conn.execute("SELECT count(*) FROM rejected_messages").fetchone()
    from protocol.catalog import default_catalog

    catalog = default_catalog()
    assert positions is not None and statuses is not None and rejected is not None
    say("what reached the database:")
    print(f"  positions: {positions[0]} fixes from {positions[1]} to {positions[2]}, "
          f"max speed {positions[3]} km/h")
    print(f"  status messages: {statuses[0]}; rejected messages: {rejected[0]}")
    print("  signal samples:")
    for signal_id, count, mean in samples:
        name = catalog.by_id(signal_id).path if signal_id in catalog else f"signal {signal_id}"
        print(f"    {name:<52} {count:>5} samples, mean {mean}")
    return bool(positions[0]) and bool(samples) and rejected[0] == 0


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        from lienwatch.errors import ServiceError

        raise ServiceError(f"{what} failed: {(result.stderr or result.stdout).strip()[-2000:]}")

