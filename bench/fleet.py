"""Fleet overload: many devices past the receiver's capacity — throughput levels off, nothing is lost.

Starts PostgreSQL, mosquitto from the shipped deploy/mosquitto/lienwatch.conf (mutual TLS, one
certificate per device, the ACL) and one receiver process (`lienwatch cloud ingest`, service
listener). Then `--devices` devices, each the agent's real uplink (`FlashQueue` + `MqttLink` +
`Uplink`, stored receipts required, back-pressure at `--max-unconfirmed`), each queue a telemetry
batch of `--rows` samples every `1/--rate` s: the offered load is devices × rate batches/s, chosen
to exceed what one receiver stores (the batches are big, so the database is the bottleneck).
After `--seconds` the devices stop producing and drain; every accepted (device, seq) is looked up
in the database.

Printed: stored batches/s per 5 s window against the offered rate, the devices' backlog (records
on their flash) and re-sends, the broker's "dropped" lines; the last JSON line has the totals.

    python bench/fleet.py [--devices 50] [--rate 0.5] [--rows 2000] [--seconds 45]

Receipts as the agent's defaults (timeout 120 s) but `--max-unconfirmed` 16: what a fleet
backlog costs in latency is devices × max_unconfirmed / the receiver's rate, which must stay
below the receipt timeout or the devices send copies (safe, but wasted).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import print_json_line, print_table  # noqa: E402
from cloud.store.db import connect  # noqa: E402
from cloud.store.devices import Device, add_device  # noqa: E402
from cloud.store.migrate import migrate  # noqa: E402
from edge.uplink.mqtt import MqttLink, MqttSettings  # noqa: E402
from edge.uplink.queue import Channel, FlashQueue, Priority, QueueConfig  # noqa: E402
from edge.uplink.sender import DataBudget, ReceiptSettings, Uplink  # noqa: E402
from hil.services import free_port, start_mosquitto, start_postgres  # noqa: E402
from hil.testpki import make_test_etc  # noqa: E402
from protocol import encode  # noqa: E402
from protocol.messages import (  # noqa: E402
    HEADER_WANTS_RECEIPTS,
    ClockQuality,
    Header,
    MessageKind,
    SampleColumns,
    TelemetryBatch,
)
from protocol.topics import receipt_topic, topic_for  # noqa: E402

SERVICE_PORT = 8884
BOOT = 1


@dataclass
class Sim:
    """One device: the agent's outbox, link and uplink."""

    device: str
    outbox: FlashQueue
    link: MqttLink
    uplink: Uplink
    next_seq: int = 0
    accepted: int = 0
    next_due: float = 0.0


def batch(device: str, seq: int, rows: int) -> bytes:
    t0 = time.time_ns() // 10**6 * 10**6
    samples = SampleColumns(tuple(t0 + i * 10_000_000 for i in range(rows)), (1,) * rows,
                            tuple(float(i % 120) for i in range(rows)))
    return encode(TelemetryBatch(Header(device, BOOT, seq, t0, ClockQuality.NTP, HEADER_WANTS_RECEIPTS),
                                 samples=samples))


def make_sims(etc: Path, work: Path, port: int, devices: list[str], max_unconfirmed: int) -> list[Sim]:
    sims = []
    for device in devices:
        settings = MqttSettings(host="127.0.0.1", port=port, client_id=device, ca_file=etc / "pki/ca.crt",
                                cert_file=etc / f"pki/devices/{device}.crt",
                                key_file=etc / f"pki/devices/{device}.key", reconnect_min_s=0.5,
                                reconnect_max_s=5.0, subscribe_topics=(receipt_topic(device),))
        outbox = FlashQueue(work / device, QueueConfig(sync_interval_s=5.0))
        link = MqttLink(settings)
        topics = {c: topic_for(k, device) for c, k in ((Channel.TELEMETRY, MessageKind.TELEMETRY),
                                                         (Channel.EVENT, MessageKind.EVENT),
                                                         (Channel.STATUS, MessageKind.STATUS),
                                                         (Channel.COMMAND_ACK, MessageKind.COMMAND_ACK))}
        receipts = ReceiptSettings(mode="required", timeout_s=120.0, max_unconfirmed=max_unconfirmed,
                                   receipt_topic=receipt_topic(device))
        sims.append(Sim(device, outbox, link, Uplink(outbox, link, topics, DataBudget(10**12),
                                                     receipts=receipts, device_id=device)))
    return sims


def stored_total(metrics_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    match = re.search(r'lienwatch_ingest_messages_total\{kind="TelemetryBatch",outcome="stored"\} (\S+)',
                      text)
    return int(float(match.group(1))) if match else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.5, help="telemetry batches/s per device")
    parser.add_argument("--rows", type=int, default=2000, help="samples per batch")
    parser.add_argument("--seconds", type=float, default=45.0, help="how long the devices produce")
    parser.add_argument("--max-unconfirmed", type=int, default=16, help="the devices' back-pressure bound")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    logging.getLogger("lienwatch.uplink").setLevel(logging.ERROR)  # re-sends are counted, not logged
    devices = [f"fleet-{i:04d}" for i in range(args.devices)]
    root = Path(tempfile.mkdtemp(prefix="lienwatch-fleet-", dir="/var/tmp"))
    root.chmod(0o755)
    print(f"making {len(devices)} device certificates ...", flush=True)
    etc = make_test_etc(root / "etc", devices)
    pg = start_postgres()
    broker = start_mosquitto(REPO / "deploy/mosquitto/lienwatch.conf",
                             path_map={"/etc/lienwatch/": f"{etc}/"})
    receiver: subprocess.Popen[bytes] | None = None
    sims: list[Sim] = []
    try:
        migrate(pg.dsn)
        with connect(pg.dsn) as conn:
            for device in devices:
                add_device(conn, Device(device_id=device))
        metrics_port = free_port()
        config = root / "receiver.toml"
        config.write_text(f"""[database]
dsn = "{pg.dsn}"
[mqtt]
host = "127.0.0.1"
port = {broker.ports[SERVICE_PORT]}
client_id = "fleet-rx"
[mqtt.tls]
ca_file = "{etc}/pki/ca.crt"
cert_file = "{etc}/pki/services/lienwatch-ingest.crt"
key_file = "{etc}/pki/services/lienwatch-ingest.key"
[metrics]
port = {metrics_port}
""")
        log = open(root / "receiver.log", "wb")  # noqa: SIM115
        receiver = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "ingest", "--config",
                                     str(config)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        sims = make_sims(etc, root / "devices", broker.port, devices, args.max_unconfirmed)
        for sim in sims:
            sim.link.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(s.link.subscribed for s in sims):
            for sim in sims:
                sim.uplink.pump()
            time.sleep(0.05)
        print(f"{sum(s.link.subscribed for s in sims)} devices connected; "
              f"producing for {args.seconds:.0f} s", flush=True)
        time.sleep(2.0)
        rows, totals = run(sims, args, metrics_port)
        accepted = sum(s.accepted for s in sims)
        with connect(pg.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM "
                               "(SELECT DISTINCT device_id, boot_id, seq FROM signal_samples) d").fetchone()
            stored = int(row[0]) if row else 0
            dup = conn.execute("SELECT count(*) - count(DISTINCT (device_id, boot_id, seq, row_idx)) "
                               "FROM signal_samples").fetchone()
        dropped = sum(1 for line in broker.log_path.read_text(errors="replace").splitlines()
                      if "dropped" in line.lower())
    finally:
        for sim in sims:
            sim.link.stop(timeout_s=1)
            sim.outbox.close()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(30)
        broker.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    offered = args.devices * args.rate
    print_table(f"Fleet overload: {args.devices} devices × {args.rate:g} batch/s of {args.rows} rows "
                f"(offered {offered:g} batches/s), one receiver, shipped broker config",
                ["t (s)", "accepted/s", "stored/s", "device backlog", "re-sent (cum.)"], rows)
    print(f"broker log lines about dropped messages: {dropped}")
    lost = accepted - stored
    figures = {"devices": args.devices, "offered_batches_per_s": offered,
               "accepted": accepted, "stored": stored, "lost": lost,
               "duplicates": int(dup[0]) if dup else 0, "resent": totals["resent"],
               "stored_batches_per_s_at_overload": totals["plateau"],
               "drained": totals["drained"], "broker_drop_lines": dropped}
    print_table("Totals", list(figures), [list(figures.values())])
    print_json_line(figures)
    return 0 if lost == 0 and figures["duplicates"] == 0 and totals["drained"] else 1


def run(sims: list[Sim], args: argparse.Namespace,
        metrics_port: int) -> tuple[list[list[object]], dict[str, object]]:
    """Produce for args.seconds, then drain; one table row per 5 s window."""
    period = 1.0 / args.rate
    start = time.monotonic()
    for index, sim in enumerate(sims):  # spread the devices over the period
        sim.next_due = start + period * index / len(sims)
    rows: list[list[object]] = []
    window_start, window_stored, window_accepted = start, stored_total(metrics_port), 0
    stored_rates: list[float] = []
    drained = False
    stop_at = start + args.seconds
    while True:
        now = time.monotonic()
        producing = now < stop_at
        for sim in sims:
            if producing and now >= sim.next_due:
                sim.next_due += period
                sim.outbox.append(batch(sim.device, sim.next_seq, args.rows), priority=Priority.TELEMETRY,
                                  channel=Channel.TELEMETRY, key=(BOOT, sim.next_seq))
                sim.next_seq += 1
                sim.accepted += 1
                window_accepted += 1
            sim.uplink.pump()
            sim.outbox.tick()
        if now - window_start >= 5.0:
            stored = stored_total(metrics_port)
            elapsed = now - window_start
            rate = (stored - window_stored) / elapsed
            if producing and now - start > 15:
                stored_rates.append(rate)
            rows.append([round(now - start), window_accepted / elapsed, rate,
                         sum(s.outbox.depth for s in sims), sum(s.outbox.stats.redelivered for s in sims)])
            window_start, window_stored, window_accepted = now, stored, 0
            if not producing and all(s.outbox.depth == 0 for s in sims):
                drained = True
                break
            if now - stop_at > args.drain_timeout:
                break
        time.sleep(0.01)
    plateau = sorted(stored_rates)[len(stored_rates) // 2] if stored_rates else 0.0
    return rows, {"resent": sum(s.outbox.stats.redelivered for s in sims), "plateau": round(plateau, 1),
                  "drained": drained}


if __name__ == "__main__":
    sys.exit(main())
