"""Benchmark: the agent at full driving rates — CPU, RSS, flash bytes per hour — and the outbox choice.

Part 1 (simulated clock): one driving hour of outbox traffic (a telemetry batch every 30 s, a
WARNING event every 10 min, every record acknowledged a second later, telemetry synced every 60 s,
events at once) through the segment log (`edge.uplink.queue.FlashQueue`) and through an SQLite
outbox (WAL, the same commit cadence) as the baseline. Bytes reaching the block layer are read
from /proc/self/io (write_bytes: page-granular, so a 100-byte fsync'ed append counts 4 KiB).

Part 1b: the same hour with end-to-end stored receipts (keyed records, a receipt per
acknowledgement round): the extra flash bytes, and the receipts' downlink bytes per hour against
the daily data cap.

Part 3 (callgrind, `--callgrind-seconds`, default 5 s of simulated driving per phase; 0 skips it):
instructions per second of driving, repeatable whatever else the machine does. bench/agent_replay.py
drives the real agent (`Agent.step` on a ManualClock, every detector) with the same inputs as part
2, phase by phase (ticks only, +GNSS, +OBD, +CAN receive, +CAN decode), under valgrind's callgrind;
each phase's count over its simulated seconds is the instructions per second of driving, and the
differences are what each stage costs. The share of a 1 GHz Cortex-A53 / A7 core assumes the same
instruction count on ARM and CPython at IPC_A53 / IPC_A7 instructions per cycle (docs/gateway.md).

Part 2 (real time, `--seconds`, default 60 s measured after a 10 s warm-up): the real agent process
(`lienwatch edge run`) with its real sources at full driving rates — OBD-II 10 PIDs at 1–10 Hz
over ISO-TP to the HIL ECU emulator (another process), and with `--obd-plan table` (the default)
every other PID of the J1979 table too (the emulator's engine ECU supports all 100; the source's
`poll_supported` adds the 90 others at `--table-period` s) plus the battery ECU's manufacturer
DIDs through the `uds` source (example DID table), 2,000 passive CAN frames/s decoded with the
HIL DBC, GNSS NMEA at 10 Hz on a pty — uplinking over mutual TLS to mosquitto started from the
shipped production config. Cross-process CAN is python-can udp_multicast on interface-local
ff11:: groups: the OBD port and the passive body CAN are two buses (own group and UDP port each),
as behind a real car's gateway. The passive flood is the HIL DBC's four messages in turn (500/s
each), with contents that move like a driving EV's: pack current in every BMS_Status frame,
pack voltage and cell voltages every few frames, state of charge and temperature slowly, a door
now and then. Baseline: the same agent with no sources, measured in the same run. CPU is the
agent process's utime+stime over wall time; RSS is the maximum VmRSS seen; flash bytes per hour
are the agent process's write_bytes over the window, ×3600/window (extrapolated).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import print_json_line, print_table  # noqa: E402
from edge.uplink.queue import Channel, FlashQueue, Priority, QueueConfig  # noqa: E402
from lienwatch.clock import ManualClock  # noqa: E402

DEVICE = "bench-veh"
OBD_PLAN = [(0x0C, 0.1), (0x0D, 0.1), (0x04, 0.2), (0x10, 0.2), (0x05, 1.0), (0x0F, 1.0), (0x2F, 1.0),
            (0x42, 1.0), (0x46, 1.0), (0x5C, 1.0)]
CAN_FRAMES_PER_S = 2000
GNSS_HZ = 10
DETECTORS: list[str] = []  # kinds enabled in the agent's config (main: every registered one)
OBD_TABLE = {"on": True, "period_s": 5.0}  # main: --obd-plan table|small, --table-period
# CPython's instructions per cycle assumed on the gateway cores (docs/gateway.md: in-order cores,
# an interpreter's branchy code with dependent loads): 1 GHz × IPC = instructions per second.
IPC_A53, IPC_A7 = 0.6, 0.45
CORE_HZ = 1e9
INSTR_TARGET_PER_S = 50e6


def _write_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------ part 1: outbox


OUTBOX_HOURS = 6  # long enough for SQLite's WAL checkpoints (every 1000 pages) to happen


def _outbox_hour(step: Any, append: Any, commit: Any, finish: Any, clock: ManualClock) -> None:
    pending: list[tuple[int, int]] = []  # (record id, ack due second)
    for second in range(3600 * OUTBOX_HOURS):
        clock.advance(1.0)
        if second % 30 == 0:
            pending.append((append(os.urandom(2400), Priority.TELEMETRY), second + 1))
        if second % 600 == 5:
            pending.append((append(os.urandom(200), Priority.WARNING), second + 1))
        due = [rid for rid, at in pending if at <= second]
        if due:
            commit(due)
            pending = [(rid, at) for rid, at in pending if at > second]
        step()
    finish()


def bench_segment_log(directory: Path) -> dict[str, float]:
    clock = ManualClock()
    queue = FlashQueue(directory, QueueConfig(sync_interval_s=60, sync_bytes=1 << 20, reserve_bytes=0),
                       clock=clock)

    def append(payload: bytes, priority: Priority) -> int:
        channel = Channel.TELEMETRY if priority == Priority.TELEMETRY else Channel.EVENT
        return queue.append(payload, priority=priority, channel=channel)

    def commit(ids: list[int]) -> None:
        queue.begin(len(ids) + 8)
        queue.end(accepted=ids)

    before, started = _write_bytes(), time.perf_counter()
    _outbox_hour(queue.tick, append, commit, queue.close, clock)
    return {"block_bytes": (_write_bytes() - before) / OUTBOX_HOURS,
            "app_bytes": queue.stats.bytes_written / OUTBOX_HOURS,
            "syncs": queue.stats.syncs / OUTBOX_HOURS,
            "seconds": (time.perf_counter() - started) / OUTBOX_HOURS}


def bench_receipts(directory: Path) -> dict[str, float]:
    """The segment log with end-to-end receipts: keyed records (12 bytes more each), a PUBACK makes
    them delivered, the receiver's stored receipt (here: in the same second) commits them. Also
    the receipts' downlink bytes: one `StoredReceipt` per acknowledgement round and lane, as the
    receiver sends it (payload + topic + PUBLISH/TLS overhead) plus the device's PUBACK."""
    from edge.uplink.sender import PUBLISH_OVERHEAD_BYTES
    from protocol import encode
    from protocol.receipts import receipts_for
    from protocol.topics import receipt_topic

    clock = ManualClock()
    queue = FlashQueue(directory, QueueConfig(sync_interval_s=60, sync_bytes=1 << 20, reserve_bytes=0),
                       clock=clock)
    keys: dict[int, tuple[int, int]] = {}
    downlink = {"receipts": 0, "payload": 0, "on_air": 0}

    def append(payload: bytes, priority: Priority) -> int:
        channel = Channel.TELEMETRY if priority == Priority.TELEMETRY else Channel.EVENT
        key = (0x5EED, len(keys))
        record_id = queue.append(payload, priority=priority, channel=channel, key=key)
        keys[record_id] = key
        return record_id

    def commit(ids: list[int]) -> None:
        queue.begin(len(ids) + 8)
        queue.end(delivered=ids)
        confirmed = [keys.pop(i) for i in ids]
        queue.confirm(confirmed)
        for receipt in receipts_for(DEVICE, {0x5EED: [seq for _, seq in confirmed]}, clock.wall_ns()):
            payload = len(encode(receipt))
            downlink["receipts"] += 1
            downlink["payload"] += payload
            # the PUBLISH (payload, topic, header, TLS record) and the device's PUBACK back
            downlink["on_air"] += payload + len(receipt_topic(DEVICE)) + PUBLISH_OVERHEAD_BYTES

    before, started = _write_bytes(), time.perf_counter()
    _outbox_hour(queue.tick, append, commit, queue.close, clock)
    return {"block_bytes": (_write_bytes() - before) / OUTBOX_HOURS,
            "app_bytes": queue.stats.bytes_written / OUTBOX_HOURS,
            "syncs": queue.stats.syncs / OUTBOX_HOURS,
            "seconds": (time.perf_counter() - started) / OUTBOX_HOURS,
            "receipts": downlink["receipts"] / OUTBOX_HOURS,
            "receipt_payload_bytes": downlink["payload"] / OUTBOX_HOURS,
            "receipt_on_air_bytes": downlink["on_air"] / OUTBOX_HOURS}


def bench_sqlite(directory: Path) -> dict[str, float]:
    """The baseline: the same outbox in SQLite (WAL), committed at the same cadence."""
    directory.mkdir(parents=True, exist_ok=True)
    clock = ManualClock()
    db = sqlite3.connect(directory / "outbox.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, priority INT, channel INT, created INT, "
               "payload BLOB)")
    db.execute("BEGIN")
    state = {"last_commit": clock.monotonic_ns(), "commits": 0}

    def sync() -> None:
        db.execute("COMMIT")
        db.execute("BEGIN")
        state["last_commit"] = clock.monotonic_ns()
        state["commits"] += 1

    def append(payload: bytes, priority: Priority) -> int:
        cursor = db.execute("INSERT INTO outbox (priority, channel, created, payload) VALUES (?, ?, ?, ?)",
                            (int(priority), 0, clock.wall_ns(), payload))
        if priority >= Priority.WARNING:
            sync()
        return int(cursor.lastrowid or 0)

    def commit(ids: list[int]) -> None:
        db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def step() -> None:
        if clock.monotonic_ns() - state["last_commit"] >= 60 * 10**9:
            sync()

    def finish() -> None:
        db.execute("COMMIT")
        db.close()

    before, started = _write_bytes(), time.perf_counter()
    _outbox_hour(step, append, commit, finish, clock)
    return {"block_bytes": (_write_bytes() - before) / OUTBOX_HOURS, "app_bytes": float("nan"),
            "syncs": state["commits"] / OUTBOX_HOURS,
            "seconds": (time.perf_counter() - started) / OUTBOX_HOURS}


# ------------------------------------------------------------------------------ part 2: agent


FLOOD_CYCLE_S = 30  # the flood's contents repeat after this long


def body_can_frames(count: int, seed: int = 7) -> list[Any]:
    """`count` body CAN frames (the HIL DBC's messages in turn) whose signals move like a driving EV's.

    Per BMS_Status frame the pack current takes a random step (±2 A around −40 A: it changes in
    nearly every frame); the pack voltage sags with it and the cell voltages wander every few
    frames; the state of charge falls 0.1 % a minute, the temperature rises 1 °C a minute; a
    door opens or closes every ~10 s; the power mode stays ON.
    """
    import random

    import can
    import cantools

    db = cantools.database.load_file(str(REPO / "hil/vehicle.dbc"))
    assert isinstance(db, cantools.database.can.Database)
    messages = list(db.messages)
    rng = random.Random(seed)
    current_a, doors = -40.0, 0
    cell_min, cell_max = 3.612, 3.648
    frames = []
    values: dict[str, float]
    for i in range(count):
        message = messages[i % len(messages)]
        t_s = i / CAN_FRAMES_PER_S
        if message.name == "BodyDoors":
            if rng.random() < 1 / (10 * CAN_FRAMES_PER_S / len(messages)):
                doors ^= 1 << rng.randrange(6)
            values = {s.name: doors >> k & 1 for k, s in enumerate(message.signals)}
        elif message.name == "PowerMode":
            values = {"PowerMode": 3}
        elif message.name == "BMS_Status":
            current_a = min(max(current_a + rng.uniform(-2.0, 2.0), -120.0), 40.0)
            values = {"StateOfCharge": round(81.3 - t_s / 600, 1), "StateOfHealth": 96.5,
                      "PackCurrent": round(current_a, 1), "PackTemperature": 27 + int(t_s / 60)}
        else:
            if rng.random() < 0.2:
                cell_min = round(cell_min + rng.choice((-0.001, 0.001)), 3)
                cell_max = round(cell_max + rng.choice((-0.001, 0.001)), 3)
            values = {"CellVoltageMin": cell_min, "CellVoltageMax": cell_max,
                      "PackVoltage": round(388.0 + current_a * 0.05, 1)}
        frames.append(can.Message(arbitration_id=message.frame_id, data=message.encode(values),
                                  is_extended_id=False))
    return frames


class Traffic:
    """The vehicle: ECU emulator process, a passive CAN flood and a 10 Hz NMEA stream on a pty."""

    def __init__(self, tag: int, *, can_flood: bool = True) -> None:
        # Two buses, each its own ff11:: group and UDP port (udp_multicast delivers by port).
        self.obd_group, self.obd_port = f"ff11::4c:{tag:x}", 44000 + 2 * (tag % 8000)
        self.body_group, self.body_port = f"ff11::4d:{tag:x}", self.obd_port + 1
        self.can_flood = can_flood
        self.stop = threading.Event()
        self.can_sent = 0
        self.nmea_epochs = 0
        table = ["--full-table", "--bms"] if OBD_TABLE["on"] else []
        self.ecu = subprocess.Popen([sys.executable, "-m", "hil.ecu", "--channel", self.obd_group,
                                     "--port", str(self.obd_port), *table], cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.ecu.stdout is not None and self.ecu.stdout.readline().strip() == "ready"
        self.master, slave = os.openpty()
        self.pty_path = os.ttyname(slave)
        self._slave = slave
        self.threads = [threading.Thread(target=self._gnss, daemon=True)]
        if can_flood:
            self.threads.append(threading.Thread(target=self._can, daemon=True))
        for thread in self.threads:
            thread.start()

    def _can(self) -> None:
        from edge.sources.can_bus import open_bus

        frames = body_can_frames(FLOOD_CYCLE_S * CAN_FRAMES_PER_S)
        bus = open_bus("udp_multicast", self.body_group, port=self.body_port)
        started = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * CAN_FRAMES_PER_S)
            while self.can_sent < due:
                bus.send(frames[self.can_sent % len(frames)])
                self.can_sent += 1
            time.sleep(0.005)
        bus.shutdown()

    def _gnss(self) -> None:
        from hil.gnss import NmeaEpoch, default_sats, epoch_sentences

        start = dt.datetime.now(dt.UTC)
        began = time.monotonic()
        wanted_10hz = ("RMC", "VTG", "GGA", "GSA", "GST")
        while not self.stop.is_set():
            i = self.nmea_epochs
            epoch = NmeaEpoch(time=start + dt.timedelta(seconds=i / GNSS_HZ), lat=47.2852331 + i * 1e-6,
                              lon=8.565265 + i * 1e-6, speed_kmh=50.0, course_deg=45.0,
                              sats=default_sats())
            lines = [s for s in epoch_sentences(epoch)
                     if s[3:6] in wanted_10hz or (i % GNSS_HZ == 0 and s[3:6] in ("GSV", "ZDA"))]
            try:
                os.write(self.master, ("\r\n".join(lines) + "\r\n").encode())
            except OSError:
                return
            self.nmea_epochs += 1
            delay = began + self.nmea_epochs / GNSS_HZ - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.ecu.terminate()
        self.ecu.wait(10)
        os.close(self.master)
        os.close(self._slave)


def _agent_config(work: Path, run: Path, etc: Path, port: int, traffic: Traffic | None) -> Path:
    keys = etc / "command-keys.pem"
    if not keys.exists():
        from protocol.signing import generate_key, public_key_to_pem
        keys.write_bytes(public_key_to_pem(generate_key().public_key()))
    lines = [
        "[device]", f'id = "{DEVICE}"',
        "[agent]", f'state_dir = "{work}/state"', f'status_file = "{run}/status.json"',
        "status_interval_s = 1.0",
        "[uplink.mqtt]", 'host = "127.0.0.1"', f"port = {port}", f'ca_file = "{etc}/pki/ca.crt"',
        f'cert_file = "{etc}/pki/devices/{DEVICE}.crt"', f'key_file = "{etc}/pki/devices/{DEVICE}.key"',
        "[downlink]", f'command_keys = "{keys}"',
    ]
    if DETECTORS:  # every registered detector at its defaults, as deploy/agent.example.toml ships
        lines += ["[vehicle]", 'time_zone = "Europe/Zurich"',
                  "contract_region = [[46.8, 8.0], [46.8, 9.4], [47.8, 9.4], [47.8, 8.0]]"]
        for kind in DETECTORS:
            lines += ["[[detectors]]", f'kind = "{kind}"']
    if traffic is not None:
        pids = ", ".join(f"{{ pid = {pid}, period_s = {period} }}" for pid, period in OBD_PLAN)
        lines += [
            "[[sources]]", 'kind = "obd"', 'interface = "udp_multicast"', f'channel = "{traffic.obd_group}"',
            f"port = {traffic.obd_port}", "max_bus_load = 0.3", "read_vin = false", f"pids = [{pids}]",
            f"poll_supported = {'true' if OBD_TABLE['on'] else 'false'}",
            f"supported_period_s = {OBD_TABLE['period_s']}",
            "[[sources]]", 'kind = "dbc"', f'manifest = "{REPO}/hil/vehicle_manifest.toml"',
            'interface = "udp_multicast"', f'channel = "{traffic.body_group}"', f"port = {traffic.body_port}",
            "[[sources]]", 'kind = "gnss"', f'device = "{traffic.pty_path}"',
        ]
        if OBD_TABLE["on"]:
            lines += ["[[sources]]", 'kind = "uds"', 'table = "example-bev"', 'interface = "udp_multicast"',
                      f'channel = "{traffic.obd_group}"', f"port = {traffic.obd_port}",
                      # a loaded machine answers late at start-up: no 30 s silent spell in a short window
                      "timeout_s = 0.5", "asleep_probe_s = 5.0"]
    path = work / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s(pid: int, tids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, tid in tids.items():
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_agent(work: Path, etc: Path, port: int, traffic: Traffic | None, warmup_s: float,
                  seconds: float) -> dict[str, Any]:
    """Run `lienwatch edge run` as systemd would: state on the disk, status and logs off it."""
    work.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="lienwatch-bench-run-", dir="/dev/shm"))  # as /run: tmpfs
    config = _agent_config(work, run, etc, port, traffic)
    log_path = run / "agent.log"  # journald's job in production, so not on the flash here either
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # as deploy/systemd/lienwatch-agent.service sets
    with open(log_path, "wb") as log_file:
        agent = subprocess.Popen([sys.executable, "-m", "lienwatch", "edge", "run", "--config", str(config)],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    try:
        started = time.monotonic()  # start-up (imports, config, TLS) takes seconds on a loaded machine
        while not (run / "status.json").exists() and agent.poll() is None and time.monotonic() - started < 60:
            time.sleep(0.05)
        time.sleep(warmup_s)
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited: {log_path.read_text()[-2000:]}")
        status0 = json.loads((run / "status.json").read_text())
        tids = {("run loop" if name == "MainThread" else name): tid
                for name, tid in status0.get("threads", {}).items()}
        threads0 = _thread_cpu_s(agent.pid, tids)
        cpu0, wb0, t0 = _proc_cpu_s(agent.pid), _write_bytes(agent.pid), time.monotonic()
        rss = 0.0
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss = max(rss, _proc_rss_mb(agent.pid))
        cpu1, wb1, t1 = _proc_cpu_s(agent.pid), _write_bytes(agent.pid), time.monotonic()
        threads1 = _thread_cpu_s(agent.pid, tids)
        status1 = json.loads((run / "status.json").read_text())
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        shutil.rmtree(run, ignore_errors=True)
    window = t1 - t0
    samples = {name: s["samples"] - status0["sources"].get(name, {}).get("samples", 0)
               for name, s in status1["sources"].items()}
    dbc0, dbc1 = status0["sources"].get("dbc", {}), status1["sources"].get("dbc", {})
    frames = {key: (dbc1.get("counters", {}).get(key, 0) - dbc0.get("counters", {}).get(key, 0)) / (t1 - t0)
              for key in ("decoded_frames", "unchanged_frames")}
    queue0, queue1 = status0["queue"], status1["queue"]
    return {
        "cpu_pct": 100 * (cpu1 - cpu0) / window,
        "rss_mb": rss,
        "flash_bytes_per_hour": (wb1 - wb0) * 3600 / window,
        "outbox_bytes_per_hour": (queue1["bytes_written"] - queue0["bytes_written"]) * 3600 / window,
        "samples_per_s": {k: v / window for k, v in samples.items()},
        "dbc_frames_per_s": frames,
        "published_per_s": (status1["uplink"]["acknowledged"] - status0["uplink"]["acknowledged"]) / window,
        "inbox_overflow": status1["inbox"]["overflow"],
        "window_s": window,
        "states": {k: v["state"] for k, v in status1["sources"].items()},
        "thread_cpu_pct": {name: 100 * (threads1[name] - threads0[name]) / window
                           for name in threads1 if name in threads0},
        "events": {name: _transitions(d) - _transitions(status0.get("detectors", {}).get(name, {}))
                   for name, d in status1.get("detectors", {}).items()},
    }


def _transitions(detector: dict[str, Any]) -> int:
    return sum(int(detector.get(key, 0)) for key in ("raised", "escalated", "cleared"))


# ------------------------------------------------------------------------------ part 3: instructions


def _callgrind_parts(prefix: Path) -> list[tuple[str, int]]:
    """(trigger, instructions) of each profile callgrind wrote, in order."""
    parts = []
    for path in sorted(prefix.parent.glob(prefix.name + "*"),
                       key=lambda p: int(p.name.rsplit(".", 1)[1]) if p.name.count(".") > 1 else 10**6):
        fields = dict(line.split(": ", 1) for line in path.read_text(errors="replace").splitlines()
                      if line.startswith(("desc: Trigger", "totals:", "summary:")))
        count = int(fields.get("totals") or fields.get("summary", "0"))
        parts.append((fields.get("desc", ""), count))
    return parts


def _top_functions(profile: Path, count: int) -> list[tuple[str, int]]:
    """The `count` functions with the most instructions of their own in one callgrind profile
    (written with --compress-strings=no: cost lines follow their `fn=`; the line after `calls=` is
    the callee's inclusive cost, not the caller's own)."""
    own: dict[str, int] = {}
    function, objects, after_call = "", "", False
    for line in profile.read_text(errors="replace").splitlines():
        if line.startswith("ob="):
            objects = line[3:].rsplit("/", 1)[-1]
        elif line.startswith("fn="):
            function = f"{line[3:]} ({objects})"
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            fields = line.split()
            if len(fields) >= 2 and function:
                own[function] = own.get(function, 0) + int(fields[1])
    return sorted(own.items(), key=lambda item: -item[1])[:count]


def measure_instructions(seconds: float) -> dict[str, Any] | None:
    """bench/agent_replay.py under callgrind: instructions per second of driving, per phase."""
    from bench.agent_replay import PHASES

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian: apt-get install valgrind): instructions not measured")
        return None
    work = Path(tempfile.mkdtemp(prefix="lienwatch-callgrind-"))
    try:
        prefix = work / "callgrind.out"
        run = subprocess.run(
            [valgrind, "--tool=callgrind", "--dump-before=getppid", "--compress-strings=no",
             "--compress-pos=no", f"--callgrind-out-file={prefix}", sys.executable, "-m",
             "bench.agent_replay",
             "--seconds", str(seconds)], cwd=REPO, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"callgrind run failed: {run.stderr[-2000:]}")
        parts = _callgrind_parts(prefix)
        dumps = [count for trigger, count in parts if "getppid" in trigger]
        if len(dumps) != 1 + len(PHASES):
            raise RuntimeError(f"expected {1 + len(PHASES)} callgrind dumps, got {parts}")
        profiles = sorted(work.glob("callgrind.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
        top = _top_functions(profiles[len(PHASES)], 15)  # the full-load phase (dumps .1 … .N)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_s = [count / seconds for count in dumps[1:]]
    return {"startup": dumps[0], "phases": dict(zip(PHASES, per_s, strict=True)), "top": top,
            "replay": run.stdout.strip()}


def report_instructions(result: dict[str, Any], seconds: float) -> None:
    phases: dict[str, float] = result["phases"]
    full = list(phases.values())[-1]
    rows, before = [], 0.0
    for name, value in phases.items():
        rows.append([name, value / 1e6, (value - before) / 1e6, (value - before) / full])
        before = value
    print_table(f"Instructions per second of driving (callgrind, {seconds:g} simulated s per phase, "
                "each phase adds one input; x86-64 counts)",
                ["phase", "M instr/s (cumulative)", "M instr/s this stage", "share of full load"], rows)
    print_table("Share of one 1 GHz core at full driving rates (assumed CPython IPC: A53 "
                f"{IPC_A53}, A7 {IPC_A7}; same instruction count as x86-64)",
                ["core", "instructions/s available", "agent share %",
                 f"target {INSTR_TARGET_PER_S / 1e6:.0f} M"],
                [["Cortex-A53 @ 1 GHz", CORE_HZ * IPC_A53, 100 * full / (CORE_HZ * IPC_A53),
                  "met" if full <= INSTR_TARGET_PER_S else f"missed x{full / INSTR_TARGET_PER_S:.2f}"],
                 ["Cortex-A7 @ 1 GHz", CORE_HZ * IPC_A7, 100 * full / (CORE_HZ * IPC_A7), ""]])
    total = full * seconds
    print_table(f"Top functions of the full-load phase by own instructions ({seconds:g} s; the interpreter "
                "runs the Python stages, so their cost shows as CPython's functions)",
                ["function (object)", "M instr/s", "share of the phase"],
                [[name, count / seconds / 1e6, count / total] for name, count in result["top"]])
    print(f"replay: {result['replay']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callgrind-seconds", type=float, default=5.0,
                        help="simulated driving seconds per callgrind phase (0: skip part 3)")
    parser.add_argument("--only-callgrind", action="store_true", help="run part 3 only")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window at full rates")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="baseline window, no sources")
    parser.add_argument("--no-flood-seconds", type=float, default=15.0,
                        help="window of the attribution run without the passive CAN flood")
    parser.add_argument("--no-detectors", action="store_true", help="run the agent without [[detectors]]")
    parser.add_argument("--obd-plan", choices=("table", "small"), default="table",
                        help="table: the 10-PID plan plus every other PID of the J1979 table and the "
                             "battery DIDs; small: the 10-PID plan alone")
    parser.add_argument("--table-period", type=float, default=5.0,
                        help="period (s) of the table's other PIDs with --obd-plan table")
    args = parser.parse_args()
    OBD_TABLE.update(on=args.obd_plan == "table", period_s=args.table_period)
    if not args.no_detectors:
        from edge.detect.registry import BUILTIN

        DETECTORS[:] = sorted(BUILTIN)
    if args.only_callgrind:
        instr = measure_instructions(args.callgrind_seconds)
        if instr is None:
            return 1
        report_instructions(instr, args.callgrind_seconds)
        print_json_line(_instruction_keys(instr))
        return 0

    # Part 1: the outbox backend, one simulated driving hour each, on the real disk (not tmpfs).
    scratch = Path(tempfile.mkdtemp(prefix="lienwatch-bench-", dir="/var/tmp"))
    try:
        log = bench_segment_log(scratch / "segment")
        keyed = bench_receipts(scratch / "receipts")
        lite = bench_sqlite(scratch / "sqlite")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(f"Outbox on flash, per simulated driving hour (average of {OUTBOX_HOURS} h; each hour 120 "
                "telemetry batches of 2.4 kB and 6 events, all acknowledged)",
                ["backend", "block-layer B/h", "app B/h", "syncs/h", "CPU s/h", "vs SQLite"],
                [["segment log (shipped)", log["block_bytes"], log["app_bytes"], log["syncs"],
                  log["seconds"], log["block_bytes"] / max(lite["block_bytes"], 1)],
                 ["segment log + stored receipts", keyed["block_bytes"], keyed["app_bytes"], keyed["syncs"],
                  keyed["seconds"], keyed["block_bytes"] / max(lite["block_bytes"], 1)],
                 ["SQLite WAL (baseline)", lite["block_bytes"], lite["app_bytes"], lite["syncs"],
                  lite["seconds"], 1.0]])
    daily_cap = 20 * 1024 * 1024  # uplink.budget.daily_cap_bytes default
    print_table("End-to-end receipts, per driving hour (one receipt per acknowledgement round)",
                ["receipts/h", "payload B/h", "on the air B/h", "flash app B/h extra",
                 "% of daily cap (24 h)"],
                [[keyed["receipts"], keyed["receipt_payload_bytes"], keyed["receipt_on_air_bytes"],
                  keyed["app_bytes"] - log["app_bytes"],
                  100 * 24 * keyed["receipt_on_air_bytes"] / daily_cap]])

    # Part 2: the real agent process.
    from hil.services import start_mosquitto
    from hil.testpki import make_test_etc

    etc = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-bench-etc-")), [DEVICE])
    work = Path(tempfile.mkdtemp(prefix="lienwatch-bench-agent-", dir="/var/tmp"))
    broker = start_mosquitto(REPO / "deploy/mosquitto/lienwatch.conf",
                             path_map={"/etc/lienwatch/": f"{etc}/"})
    traffic: Traffic | None = None
    try:
        idle = measure_agent(work / "idle", etc, broker.port, None, 3.0, args.idle_seconds)
        traffic = Traffic(os.getpid() & 0xFFFF, can_flood=False)
        no_flood = measure_agent(work / "no-flood", etc, broker.port, traffic, 5.0, args.no_flood_seconds)
        traffic.close()
        traffic = Traffic((os.getpid() + 1) & 0xFFFF)
        full = measure_agent(work / "full", etc, broker.port, traffic, args.warmup, args.seconds)
    finally:
        if traffic is not None:
            traffic.close()
        broker.stop()
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    rates = full["samples_per_s"]
    print_table(f"Agent process at full driving rates ({full['window_s']:.0f} s measured after "
                f"{args.warmup:.0f} s warm-up; flash extrapolated to one hour)",
                ["run", "CPU % of one core", "RSS MB", "flash B/h (block layer)", "outbox B/h (app)",
                 "published msg/s"],
                [["idle agent, no sources (baseline)", idle["cpu_pct"], idle["rss_mb"],
                  idle["flash_bytes_per_hour"], idle["outbox_bytes_per_hour"], idle["published_per_s"]],
                 ["OBD + GNSS, no passive CAN flood", no_flood["cpu_pct"], no_flood["rss_mb"],
                  no_flood["flash_bytes_per_hour"], no_flood["outbox_bytes_per_hour"],
                  no_flood["published_per_s"]],
                 ["full driving rates", full["cpu_pct"], full["rss_mb"], full["flash_bytes_per_hour"],
                  full["outbox_bytes_per_hour"], full["published_per_s"]]])
    print_table("Inputs seen by the agent (samples/s per source)",
                ["source", "samples/s", "state"],
                [[name, rate, full["states"][name]] for name, rate in sorted(rates.items())]
                + [["CAN frames/s sent (passive flood)", CAN_FRAMES_PER_S, ""],
                   ["  decoded (mapped bits changed)", full["dbc_frames_per_s"]["decoded_frames"], ""],
                   ["  skipped (mapped bits repeated)", full["dbc_frames_per_s"]["unchanged_frames"], ""],
                   ["inbox overflow (samples dropped)", full["inbox_overflow"], ""]])
    threads = full["thread_cpu_pct"]
    print_table("Where the agent's CPU goes at full driving rates (% of one core, per thread)",
                ["thread", "CPU %", "share"],
                [[name, pct, pct / max(full["cpu_pct"], 1e-9)]
                 for name, pct in sorted(threads.items(), key=lambda item: -item[1])]
                + [["(threads that ended during the window)",
                    max(full["cpu_pct"] - sum(threads.values()), 0.0),
                    max(full["cpu_pct"] - sum(threads.values()), 0.0) / max(full["cpu_pct"], 1e-9)]])
    print(f"detectors enabled: {', '.join(DETECTORS) or 'none'}; event transitions in the window: "
          f"{ {k: v for k, v in full['events'].items() if v} or 'none'}")
    print(f"goals: CPU <= 5 % of one core, RSS <= 60 MB, flash <= 2,000,000 B/h; "
          f"CPU vs idle baseline x{full['cpu_pct'] / max(idle['cpu_pct'], 1e-9):.1f}")
    instr = measure_instructions(args.callgrind_seconds) if args.callgrind_seconds > 0 else None
    if instr is not None:
        report_instructions(instr, args.callgrind_seconds)
    print_json_line({**(_instruction_keys(instr) if instr is not None else {}),
                     "cpu_pct_one_core": round(full["cpu_pct"], 2), "rss_mb": round(full["rss_mb"], 1),
                     "flash_bytes_per_hour": int(full["flash_bytes_per_hour"]),
                     "receipt_downlink_bytes_per_hour": int(keyed["receipt_on_air_bytes"]),
                     "receipt_flash_extra_bytes_per_hour": int(keyed["app_bytes"] - log["app_bytes"]),
                     "detectors": len(DETECTORS),
                     "obd_plan_pids": 100 if OBD_TABLE["on"] else len(OBD_PLAN),
                     "obd_samples_per_s": round(rates.get("obd", 0.0), 1),
                     "uds_samples_per_s": round(rates.get("uds", 0.0), 2)})
    return 0


def _instruction_keys(instr: dict[str, Any]) -> dict[str, Any]:
    full = list(instr["phases"].values())[-1]
    return {"instr_per_s_driving": int(full), "instr_target_per_s": int(INSTR_TARGET_PER_S),
            "a53_1ghz_core_pct": round(100 * full / (CORE_HZ * IPC_A53), 1),
            "a7_1ghz_core_pct": round(100 * full / (CORE_HZ * IPC_A7), 1),
            "instr_per_s_by_stage": {name: int(value) for name, value in instr["phases"].items()}}


if __name__ == "__main__":
    raise SystemExit(main())
