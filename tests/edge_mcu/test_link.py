"""The Linux side of the UART link against the simulated MCU running the real supervisor."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.mcu import eventlog, frame
from edge.mcu.hal import SimHal
from edge.mcu.supervisor import EVENTS, Config, Supervisor
from edge.power.mculink import McuLink, McuLinkError, McuPoller, SerialTransport, findings
from lienwatch.clock import ManualClock
from protocol.messages import Severity

SYNCED_MS = 1_767_225_600_000


class Wire:
    """The UART between McuLink and the simulated MCU; each read lets the MCU run 10 ms."""

    def __init__(self, clock: ManualClock, hal: SimHal, supervisor: Supervisor) -> None:
        self.clock, self.hal, self.supervisor = clock, hal, supervisor
        self.mangle: Callable[[bytes], bytes] = lambda data: data  # what the line does to MCU → SoC
        self.silent = False

    def write(self, data: bytes) -> None:
        if not self.silent:
            self.hal.rx.extend(data)

    def read(self, timeout_s: float) -> bytes:
        self.clock.advance(0.01)
        self.hal.advance(10)
        if not self.silent:
            self.supervisor.step()
        data = bytes(self.hal.tx)
        self.hal.tx = bytearray()
        return self.mangle(data)


def _pair() -> tuple[McuLink, Wire, SimHal, Supervisor]:
    clock = ManualClock(wall_ns=SYNCED_MS * 1_000_000)
    hal = SimHal()
    supervisor = Supervisor(hal)
    wire = Wire(clock, hal, supervisor)
    return McuLink(wire, clock), wire, hal, supervisor


def _shake(wire: Wire, seconds: float) -> None:
    wire.hal.vibration_mg = 300
    for _ in range(int(seconds * 10)):
        wire.hal.advance(100)
        wire.clock.advance(0.1)
        wire.supervisor.step()
    wire.hal.vibration_mg = 0


def test_a_tow_logged_while_the_soc_slept_becomes_an_emergency_with_its_time() -> None:
    link, wire, hal, _ = _pair()
    assert link.hello() == hal.boot_id()
    link.sync_time()
    link.set_config(Config())
    link.sleep()
    wire.clock.advance(3600)  # the SoC is off for an hour
    hal.advance(3_600_000)
    tow_starts_ns = wire.clock.wall_ns()
    _shake(wire, 12)
    assert hal.wakes == 1  # the MCU woke the SoC
    events = link.read_events()
    assert [e.kind for e in events] == ["boot", "motion"]
    (tow,) = findings(events)
    assert tow.detector == "mcu.tow" and tow.severity is Severity.EMERGENCY
    assert tow_starts_ns < tow.time_ns <= tow_starts_ns + 12 * 10**9  # the MCU's time, not ours
    assert link.read_events() == []  # read once


def test_events_before_the_time_sync_are_dated_from_the_mcus_uptime() -> None:
    link, wire, hal, supervisor = _pair()
    hal.supply = 0
    for _ in range(130):
        hal.advance(1000)
        wire.clock.advance(1.0)
        supervisor.step()
    link.hello()
    (unplug,) = findings(link.read_events())
    assert unplug.detector == "mcu.unplug" and unplug.severity is Severity.EMERGENCY
    assert "estimated from the MCU's uptime" in unplug.detail
    # logged at the second low sample (MCU uptime 60 s); the HELLO came at uptime ~130 s
    assert abs(wire.clock.wall_ns() - unplug.time_ns - 70 * 10**9) < 2 * 10**9


def test_a_refused_config_and_a_silent_mcu_are_typed_errors() -> None:
    link, wire, _, _ = _pair()
    link.hello()
    bad = Config()
    bad.confirm_ms = 5  # below what the MCU accepts
    with pytest.raises(McuLinkError, match="refused"):
        link.set_config(bad)
    wire.silent = True
    with pytest.raises(McuLinkError, match="did not answer"):
        link.sync_time()
    assert link.counters()["unanswered"] == 1


def test_garbage_truncated_and_replayed_frames_from_the_mcu_are_refused_and_counted() -> None:
    link, wire, _, _ = _pair()
    link.hello()
    link.sync_time()
    _shake(wire, 12)
    seen: list[bytes] = []

    def hostile(data: bytes) -> bytes:
        if not data:
            return data
        seen.append(data)
        replay = seen[0] if len(seen) > 1 else b""
        cut = frame.Sender(7).frame(EVENTS, bytes(eventlog.RECORD_SIZE))[:9]  # truncated
        return b"\x00\xffnoise" + cut + b"\x13\x37" * 20 + replay + data

    wire.mangle = hostile
    events = link.read_events()
    assert "motion" in [e.kind for e in events]
    again = link.read_events()  # the replayed EVENTS frame must not bring the tow back
    assert "motion" not in [e.kind for e in again]
    counters = link.counters()
    assert counters["garbage_bytes"] > 0 and counters["replayed"] >= 1
    assert counters["bad_crc"] + counters["truncated"] >= 1


def test_malformed_payloads_are_counted_not_raised() -> None:
    link, wire, _, supervisor = _pair()
    link.hello()

    def inject(data: bytes) -> bytes:
        if not data:
            return data
        # a well-framed EVENTS frame with a payload of no whole record, numbered as the MCU's next
        bogus = supervisor.sender.frame(EVENTS, b"\x01\x02\x03")
        return data + bogus

    wire.mangle = inject
    link.read_events()
    assert link.counters()["malformed"] >= 1


def test_serial_transport_on_a_pty(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        port = SerialTransport(Path(os.ttyname(slave)))
        try:
            os.write(master, b"\x7e\xa5hello")
            assert port.read(1.0) == b"\x7e\xa5hello"
            assert port.read(0.01) == b""
            port.write(b"ping")
            assert os.read(master, 16) == b"ping"
        finally:
            port.close()
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(McuLinkError, match="cannot open"):
        SerialTransport(tmp_path / "no-such-tty")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with pytest.raises(McuLinkError, match="not a serial port"):
        SerialTransport(plain)
    with pytest.raises(McuLinkError, match="unsupported baud rate"):
        master, slave = os.openpty()
        try:
            SerialTransport(Path(os.ttyname(slave)), baudrate=12345)
        finally:
            os.close(master)
            os.close(slave)


def test_hello_payload_is_checked() -> None:
    link, wire, _, _ = _pair()

    def short_hello(data: bytes) -> bytes:
        return frame.Sender(40000).frame(1, struct.pack(">I", 5)) + data if data else data

    wire.mangle = short_hello
    link.hello()
    assert link.counters()["malformed"] >= 1


def test_the_poller_syncs_on_first_contact_reads_events_and_counts_errors() -> None:
    link, wire, hal, _ = _pair()
    poller = McuPoller(link, wire.clock, interval_s=10.0)
    assert poller.poll() == [] and poller.in_session  # first contact: HELLO, time sync, no events yet
    _shake(wire, 12)
    wire.clock.advance(10)
    (tow,) = poller.poll()
    assert tow.detector == "mcu.tow" and "estimated" not in tow.detail
    assert poller.poll() == []  # not due yet
    wire.silent = True
    wire.clock.advance(10)
    assert poller.poll() == [] and poller.errors == 1 and not poller.in_session
    wire.silent = False
    wire.clock.advance(10)
    poller.poll()
    assert poller.in_session and poller.snapshot()["events"] == 2 and hal.wakes == 1
