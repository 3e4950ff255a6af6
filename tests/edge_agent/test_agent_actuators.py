"""The agent runs the starter interrupt: signed commands in, relay file, acks and events out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.actuators.agent import write_code
from edge.agent.config import load_config
from edge.agent.runtime import Agent
from edge.agent.status import read_status, render
from edge.sources.base import Sample
from edge.uplink.queue import Channel, Priority
from hil.services import MosquittoBroker
from lienwatch.clock import ManualClock
from protocol import decode, encode
from protocol.catalog import default_catalog
from protocol.messages import (
    AckStatus,
    ArmStarterInterrupt,
    Command,
    CommandAck,
    CommandAction,
    Event,
    InterruptState,
    PaymentReminder,
    ReleaseStarterInterrupt,
    ReminderPattern,
    Severity,
    Transition,
)
from protocol.override import hotp
from protocol.signing import PrivateKey, generate_key, sign_command
from tests.edge_agent.conftest import DEVICE_A, Pki
from tests.edge_agent.test_agent import write_config

CATALOG = default_catalog()
IDS = {name: CATALOG.id_of(path) for name, path in (
    ("state", "Vehicle.LowVoltageSystemState"), ("rpm", "Vehicle.Powertrain.CombustionEngine.Speed"),
    ("can", "Vehicle.Speed"), ("gnss", "Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround"),
    ("external", "Vehicle.Telematics.IsExternalPowerConnected"))}
SECRET = bytes(range(100, 132))


class Car:
    """The agent under test on a ManualClock, fed the samples its sources would deliver."""

    def __init__(self, tmp_path: Path, pki: Pki, broker: MosquittoBroker, **interrupt: object) -> None:
        self.key: PrivateKey = generate_key()
        self.relay = tmp_path / "gpio/relay/value"
        self.relay.parent.mkdir(parents=True)
        self.relay.write_text("0\n")
        self.buzzer = tmp_path / "gpio/buzzer/value"
        self.buzzer.parent.mkdir(parents=True)
        self.buzzer.write_text("0\n")
        secret = tmp_path / "override.hex"
        secret.write_text(SECRET.hex())
        self.config = load_config(write_config(
            tmp_path, pki, broker, self.key,
            actuators__starter_interrupt={"output": f"sysfs:{self.relay}", "hold_s": 30.0, **interrupt},
            actuators__override={"secret_file": str(secret)},
            actuators__buzzer={"output": f"sysfs:{self.buzzer}"}))
        self.clock = ManualClock()
        self.agent = self.boot()

    def boot(self) -> Agent:
        self.agent = Agent(self.config, clock=self.clock, sources=[], detectors=[])
        self.queued: list[bytes] = []
        queue = self.agent._queue

        def recording(channel: Channel, priority: Priority, payload: bytes) -> None:
            self.queued.append(payload)  # what goes into the outbox, in order
            queue(channel, priority, payload)

        self.agent._queue = recording  # type: ignore[method-assign]
        return self.agent

    def feed(self, seconds: float, *, ignition: bool, rpm: float | None, can: float, gnss: float) -> None:
        """One sample set per second for `seconds`, as the power, OBD and GNSS sources send them."""
        for _ in range(max(int(seconds), 1)):
            now = self.clock.monotonic_ns()
            values = {"state": 4.0 if ignition else 2.0, "can": can, "gnss": gnss, "external": 1.0}
            if rpm is not None:
                values["rpm"] = rpm
            for name, value in values.items():
                self.agent.inbox.put(Sample(now, IDS[name], value))
            self.agent.step()
            self.clock.advance(1.0)

    def drive(self, seconds: float) -> None:
        self.feed(seconds, ignition=True, rpm=2100.0, can=58.0, gnss=57.2)

    def park(self, seconds: float) -> None:
        self.feed(seconds, ignition=False, rpm=None, can=0.0, gnss=0.9)

    def command(self, action: CommandAction, *, lifetime_s: float = 300, issued_offset_s: float = 0) -> bytes:
        issued = self.clock.wall_ns() + int(issued_offset_s * 1e9)
        return encode(sign_command(Command(DEVICE_A, os.urandom(16), issued, issued + int(lifetime_s * 1e9),
                                           action), self.key))

    def send(self, payload: bytes) -> CommandAck:
        ack = self.agent.commands.handle(payload, self.agent.headers.header)
        assert ack is not None
        back = decode(encode(ack))
        assert isinstance(back, CommandAck)
        return back

    @property
    def engaged(self) -> bool:
        return self.relay.read_text().strip() == "1"

    def events(self) -> list[Event]:
        """The starter-interrupt events queued for the uplink, in order."""
        out = []
        for payload in self.queued:
            message = decode(payload)
            if isinstance(message, Event) and message.detector == "starter_interrupt":
                out.append(message)
        return out


@pytest.fixture
def car(tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> Car:
    return Car(tmp_path, pki, tls_broker)


def test_arm_mid_drive_engages_only_after_the_car_is_parked(car: Car) -> None:
    try:
        car.drive(10)
        ack = car.send(car.command(ArmStarterInterrupt()))
        assert ack.status is AckStatus.DONE and ack.interrupt is InterruptState.ARMED
        assert "ignition on" in ack.detail
        car.drive(120)
        assert not car.engaged
        car.park(30)  # the last engine speed counts for 5 s, then the 30 s hold runs
        assert not car.engaged
        car.park(6)
        assert car.engaged, car.agent.status()["actuators"]
        events = car.events()
        assert [e.condition for e in events] == ["armed", "engaged"]
        engaged = events[-1]
        assert engaged.features["ignition_on"] == 0.0 and engaged.features["can_speed_kmh"] == 0.0
        assert engaged.features["gnss_speed_kmh"] < 4.0 and engaged.features["parked_s"] >= 30
        assert engaged.features["state"] == float(InterruptState.ENGAGED)
        assert engaged.transition is Transition.CLEARED  # a record, not an open alert
        assert car.agent.status()["actuators"]["starter_interrupt"]["state"] == "ENGAGED"
        release = car.send(car.command(ReleaseStarterInterrupt()))
        assert release.status is AckStatus.DONE and release.interrupt is InterruptState.RELEASED
        assert not car.engaged and car.events()[-1].condition == "released"
    finally:
        car.agent.shutdown(flush_timeout_s=0)


def test_replayed_and_expired_interrupt_commands_are_refused_with_an_event(car: Car) -> None:
    try:
        car.park(40)
        expired = car.send(car.command(ArmStarterInterrupt(), issued_offset_s=-600, lifetime_s=300))
        assert expired.status is AckStatus.REJECTED and "ExpiredCommandError" in expired.detail
        assert expired.interrupt is None and not car.engaged
        arm = car.command(ArmStarterInterrupt())
        assert car.send(arm).interrupt is InterruptState.ENGAGED  # parked for 40 s already
        release = car.command(ReleaseStarterInterrupt())
        assert car.send(release).interrupt is InterruptState.RELEASED
        replayed = car.send(arm)  # someone replays the recorded arm command
        assert replayed.status is AckStatus.REJECTED and "ReplayedCommandError" in replayed.detail
        car.park(60)
        assert not car.engaged
        refusals = [e for e in car.events() if e.condition == "refused"]
        assert len(refusals) == 2 and "ExpiredCommandError" in refusals[0].detail
        assert "ReplayedCommandError" in refusals[1].detail
    finally:
        car.agent.shutdown(flush_timeout_s=0)


def test_reboot_while_engaged_starts_released_then_rearms_and_waits_for_a_new_hold(car: Car) -> None:
    car.park(40)
    car.send(car.command(ArmStarterInterrupt()))
    assert car.engaged
    car.agent.shutdown(flush_timeout_s=0)
    car.boot()
    try:
        assert not car.engaged  # at start, before any reading: inactive
        assert car.agent.actuators.interrupt is not None
        assert car.agent.actuators.interrupt.state is InterruptState.ARMED
        car.park(20)
        assert not car.engaged
        car.park(15)
        assert car.engaged
    finally:
        car.agent.shutdown(flush_timeout_s=0)


def test_emergency_code_typed_on_the_device_releases_the_starter(car: Car) -> None:
    try:
        car.park(40)
        car.send(car.command(ArmStarterInterrupt()))
        assert car.engaged
        write_code(car.agent.state_dir, "12345678")
        car.park(1)
        assert car.engaged and car.events()[-1].condition == "refused"
        write_code(car.agent.state_dir, hotp(SECRET, 0))
        car.park(1)
        assert not car.engaged
        overridden = car.events()[-1]
        assert overridden.condition == "overridden" and overridden.features["uses_left"] == 1.0
        assert overridden.transition is Transition.RAISED and overridden.severity is Severity.ALERT
        assert not (car.agent.state_dir / "override_code").exists()
        car.agent._write_status_file()
        status = read_status(Path(str(car.config["agent.status_file"])))  # the file's shape is checked
        assert status["actuators"]["starter_interrupt"]["state"] == "OVERRIDDEN"
        text = render(status, car.clock.wall_ns())
        assert "starter    OVERRIDDEN  relay off  override for 24.0 h more" in text
    finally:
        car.agent.shutdown(flush_timeout_s=0)


def test_payment_reminder_plays_at_ignition_on(car: Car) -> None:
    try:
        ack = car.send(car.command(PaymentReminder("2026-01-03", ReminderPattern.GENTLE)))
        assert ack.status is AckStatus.DONE and "2026-01-03" in ack.detail
        car.park(2)
        car.agent.inbox.put(Sample(car.clock.monotonic_ns(), IDS["state"], 4.0))
        car.agent.step()
        assert car.buzzer.read_text().strip() == "1"
        car.clock.advance(2)
        car.agent.step()
        assert car.buzzer.read_text().strip() == "0"
    finally:
        car.agent.shutdown(flush_timeout_s=0)


def test_without_a_relay_interrupt_commands_are_refused(tmp_path: Path, pki: Pki,
                                                        tls_broker: MosquittoBroker) -> None:
    key = generate_key()
    agent = Agent(load_config(write_config(tmp_path, pki, tls_broker, key)), clock=ManualClock(),
                  sources=[], detectors=[])
    try:
        now = agent.clock.wall_ns()
        payload = encode(sign_command(Command(DEVICE_A, os.urandom(16), now, now + 10**11,
                                              ArmStarterInterrupt()), key))
        ack = agent.commands.handle(payload, agent.headers.header)
        assert ack is not None and ack.status is AckStatus.REJECTED
        assert "StarterInterruptUnavailable" in ack.detail
    finally:
        agent.shutdown(flush_timeout_s=0)
