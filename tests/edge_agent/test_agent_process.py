"""`lienwatch edge run` as a real process: SIGKILL mid-stream, restart, nothing accepted is lost."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.uplink.queue import Channel, FlashQueue
from hil.gnss import NmeaEpoch, default_sats, epoch_sentences
from hil.services import REPO_ROOT, MosquittoBroker
from protocol import decode
from protocol.catalog import default_catalog
from protocol.messages import ClockQuality, TelemetryBatch
from protocol.signing import generate_key
from tests.edge_agent.conftest import Pki, Receiver, wait_until
from tests.edge_agent.test_agent import write_config

pytestmark = pytest.mark.services


@pytest.fixture
def gnss_pty() -> Iterator[str]:
    """A GNSS receiver on a pty: NMEA epochs at 20 Hz for as long as the test runs."""
    master, slave = os.openpty()
    stop = threading.Event()

    def feed() -> None:
        start = dt.datetime.now(dt.UTC)
        for i in range(1_000_000):
            if stop.wait(0.05):
                return
            epoch = NmeaEpoch(time=start + dt.timedelta(seconds=i / 20), lat=47.0 + i * 1e-5,
                              lon=8.0 + i * 1e-5, speed_kmh=40.0, sats=default_sats())
            lines = [s for s in epoch_sentences(epoch) if s[3:6] in ("RMC", "GGA", "GSA")]
            try:
                os.write(master, ("\r\n".join(lines) + "\r\n").encode())
            except OSError:
                return

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield os.ttyname(slave)
    stop.set()
    thread.join(5)
    os.close(master)
    os.close(slave)


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as stderr:
        return subprocess.Popen([sys.executable, "-m", "lienwatch", "edge", "run", "--config", str(config)],
                                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def test_agent_killed_mid_stream_delivers_everything_it_accepted_after_restart(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker, gnss_pty: str) -> None:
    config = write_config(tmp_path, pki, tls_broker, generate_key(),
                          uplink__telemetry={"batch_interval_s": 1.0, "sample_period_s": 0.05})
    with open(config, "a") as handle:
        handle.write(f'[[sources]]\nkind = "gnss"\ndevice = "{gnss_pty}"\n')
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/telemetry")
    log = tmp_path / "agent.log"
    agent = _start(config, log)
    try:
        assert wait_until(lambda: len(receiver.messages) >= 3, 30), log.read_text()[-3000:]
        # The car drives into a tunnel: batches pile up in the outbox; then the power is cut.
        tls_broker.stop(remove=False)
        status_file = tmp_path / "run/status.json"
        assert wait_until(lambda: json.loads(status_file.read_text())["queue"]["depth"] >= 3, 20)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        tls_broker.restart()
        # What the dead agent had accepted but not yet seen acknowledged (torn tail cut, counted).
        with FlashQueue(tmp_path / "state/outbox") as outbox:
            waiting = [r.payload for r in outbox.begin(10_000, channels=[Channel.TELEMETRY])]
        assert len(waiting) >= 3
        agent = _start(config, log)
        assert wait_until(lambda: set(waiting) <= set(receiver.payloads()), 30), \
            f"{len(set(waiting) - set(receiver.payloads()))} of {len(waiting)} never arrived"
        # The restarted agent is a new boot and keeps streaming.
        boots = {decode(p).header.boot_id for p in receiver.payloads()}  # type: ignore[union-attr]
        assert wait_until(lambda: len({decode(p).header.boot_id  # type: ignore[union-attr]
                                       for p in receiver.payloads()}) == 2, 20), boots
        batches = [b for b in map(decode, receiver.payloads()) if isinstance(b, TelemetryBatch)]
        assert len(batches) == len(receiver.payloads())
        # Whole GNSS fixes travel as fix columns (the cloud's positions), decimated to the sample
        # period, and the position signals are not sent twice as samples.
        latitude = default_catalog().id_of("Vehicle.CurrentLocation.Latitude")
        assert all(len(b.fixes) > 0 and latitude not in b.samples.signal_id for b in batches[1:])
        assert any(b.header.clock_quality == ClockQuality.GNSS for b in batches)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        receiver.close()
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["stopped"] and status["sources"]["gnss"]["samples"] > 0
