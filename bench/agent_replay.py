"""The agent's per-input work at full driving rates, in one process on a ManualClock, for callgrind.

bench/agent.py runs this under `valgrind --tool=callgrind --dump-before=getppid`: every phase ends
with `os.getppid()`, so callgrind writes one profile per phase and the instruction counts of the
phases are read apart. Phases, each `--seconds` of simulated driving after the one before:

  startup   imports, the agent with every detector, the inputs made in advance (not counted)
  ticks     `Agent.step()` at the agent's 10 Hz with no input (ring buffers, detectors, status)
  +gnss     + 10 Hz NMEA (RMC VTG GGA GSA GST, GSV and ZDA at 1 Hz) through `GnssSource.feed`
  +obd      + the 10 OBD-II PIDs of bench/agent.py's plan: mode 01 responses decoded and emitted
  +can receive  + 2,000 passive CAN frames/s: each tick's udp_multicast datagrams unpacked into a
            `FrameBatch` as the dbc source's reader does (cython_ext.canframe; the socket reads
            themselves are system calls), the batch then dropped
  +can decode   + `DbcSource.handle_batch` on each batch (bus monitor, bit-change filter, DBC
            decode, samples into the inbox)

The last phase is the full driving load. What a real process does besides, and this leaves out:
system calls (socket and tty reads, fsync), the ISO-TP stack's frames for the OBD requests, TLS and
MQTT publishing (the link never connects; batches stay in the outbox on tmpfs), thread switches.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHASES = ("ticks", "+gnss", "+obd", "+can receive", "+can decode")
TICK_S = 0.1


def _phase_done() -> None:
    os.getppid()  # callgrind dumps its counters before each call (--dump-before=getppid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="simulated driving seconds per phase")
    args = parser.parse_args()

    from can.interfaces.udp_multicast.utils import pack_message, unpack_message

    from bench.agent import CAN_FRAMES_PER_S, GNSS_HZ, OBD_PLAN, body_can_frames
    from cython_ext.canframe import FrameBatch
    from edge.agent.config import parse_config
    from edge.agent.runtime import Agent
    from edge.detect.registry import BUILTIN
    from edge.sources.dbc import DbcSource, load_manifest
    from edge.sources.gnss.source import GnssSource
    from edge.sources.obd.pids import PIDS, decode_response
    from hil.gnss import NmeaEpoch, default_sats, epoch_sentences
    from hil.testpki import make_test_etc
    from lienwatch.clock import ManualClock
    from protocol.catalog import default_catalog
    from protocol.signing import generate_key, public_key_to_pem

    ticks = round(args.seconds / TICK_S)
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="lienwatch-replay-", dir=shm))
    try:
        etc = make_test_etc(work / "etc", ["replay-veh"])
        (work / "keys.pem").write_bytes(public_key_to_pem(generate_key().public_key()))
        clock = ManualClock(wall_ns=1_780_000_000 * 10**9, monotonic_ns=10**12)
        config = parse_config({
            "device": {"id": "replay-veh"},
            "agent": {"state_dir": str(work / "state"), "status_file": str(work / "status.json"),
                      "status_interval_s": 1.0, "tick_s": TICK_S},
            "uplink": {"telemetry": {"batch_interval_s": 5.0},
                       "mqtt": {"host": "127.0.0.1", "port": 1, "ca_file": str(etc / "pki/ca.crt"),
                                "cert_file": str(etc / "pki/devices/replay-veh.crt"),
                                "key_file": str(etc / "pki/devices/replay-veh.key")}},
            "downlink": {"command_keys": str(work / "keys.pem")},
            "vehicle": {"time_zone": "Europe/Zurich",
                        "contract_region": [[46.8, 8.0], [46.8, 9.4], [47.8, 9.4], [47.8, 8.0]]},
            "detectors": [{"kind": kind} for kind in sorted(BUILTIN)],
        })
        catalog = default_catalog()
        agent = Agent(config, clock=clock, sources=[], boot_id=1)
        sink = agent.inbox.put
        gnss = GnssSource("gnss", clock, device="/dev/null", on_fix=agent.fix_inbox.put,
                          on_clock_discipline=agent._on_clock_discipline)
        dbc = DbcSource("dbc", clock, manifest=load_manifest(REPO / "hil/vehicle_manifest.toml", catalog),
                        interface="udp_multicast", channel="ff11::1")
        frames_per_tick = round(CAN_FRAMES_PER_S * TICK_S)
        batch = FrameBatch(frames_per_tick)
        datagrams = [pack_message(m) for m in body_can_frames(frames_per_tick * ticks)]
        start = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
        wanted = ("RMC", "VTG", "GGA", "GSA", "GST")
        nmea: list[bytes] = []
        for i in range(ticks * 4):  # the GNSS phase and the three after it
            epoch = NmeaEpoch(time=start + dt.timedelta(seconds=i / GNSS_HZ), lat=47.2852331 + i * 1e-6,
                              lon=8.565265 + i * 1e-6, speed_kmh=50.0, course_deg=45.0, sats=default_sats())
            lines = [s for s in epoch_sentences(epoch)
                     if s[3:6] in wanted or (i % GNSS_HZ == 0 and s[3:6] in ("GSV", "ZDA"))]
            nmea.append(("\r\n".join(lines) + "\r\n").encode())
        obd_ids = {pid: catalog.id_of(PIDS[pid].vss) for pid, _ in OBD_PLAN}
        obd_ticks = {pid: max(1, round(period / TICK_S)) for pid, period in OBD_PLAN}
        values = {0x0C: 2400.0, 0x0D: 50.0, 0x04: 35.0, 0x10: 12.0, 0x05: 88.0, 0x0F: 24.0, 0x2F: 61.0,
                  0x42: 14.1, 0x46: 19.0, 0x5C: 92.0}
        responses = {pid: bytes([0x41, pid]) + PIDS[pid].encode(values.get(pid, 1.0)) for pid, _ in OBD_PLAN}
        agent.step()
        _phase_done()  # ---- startup

        state: dict[str, Any] = {"tick": 0, "gnss": 0, "can": 0}

        def run(with_gnss: bool, with_obd: bool, with_can: bool, decode: bool = True) -> None:
            for _ in range(ticks):
                clock.advance(TICK_S)
                now = clock.monotonic_ns()
                tick = state["tick"]
                if with_gnss:
                    gnss.feed(nmea[state["gnss"]], sink)
                    state["gnss"] += 1
                if with_obd:
                    for pid, every in obd_ticks.items():
                        if tick % every == 0:
                            for value in decode_response(responses[pid]):
                                agent.inbox.put(_sample(now, obd_ids[pid], value.value))
                if with_can:
                    first = state["can"]
                    batch.clear()
                    batch.append_datagrams(datagrams[first:first + frames_per_tick], unpack_message)
                    if decode:
                        dbc.handle_batch(batch, sink, now)
                    state["can"] = first + frames_per_tick
                agent.step()
                state["tick"] = tick + 1

        from edge.sources.base import Sample

        def _sample(now: int, signal_id: int, value: float) -> Sample:
            return Sample(now, signal_id, value)

        run(False, False, False)
        _phase_done()  # ---- ticks
        run(True, False, False)
        _phase_done()  # ---- +gnss
        run(True, True, False)
        _phase_done()  # ---- +obd
        run(True, True, True, decode=False)
        _phase_done()  # ---- +can receive
        state["can"] = 0  # the same frames again, now decoded
        run(True, True, True)
        _phase_done()  # ---- +can decode
        print(f"replayed {len(PHASES) * ticks * TICK_S:.0f} s: {agent.inbox.overflow} inbox overflow, "
              f"{dbc.decoder.decoded} CAN frames decoded, {dbc.decoder.unchanged} unchanged, "
              f"{gnss.health.frames} NMEA lines, outbox {agent.outbox.depth} records")
        agent.shutdown(flush_timeout_s=0.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
