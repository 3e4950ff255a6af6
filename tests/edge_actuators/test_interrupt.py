"""The starter interrupt's interlocks, one test each, on a relay that is a real sysfs-style file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.actuators.interrupt import (
    STATE_FILE,
    InterruptEvent,
    InterruptSettings,
    StarterInterrupt,
    VehicleReading,
)
from edge.actuators.output import OutputError, SysfsOutput
from lienwatch.clock import ManualClock
from protocol.messages import InterruptState
from protocol.override import hotp

DRIVING = VehicleReading(ignition_on=True, engine_rpm=1800.0, can_speed_kmh=62.0, gnss_speed_kmh=61.4,
                         external_power=True)
IDLING = VehicleReading(ignition_on=True, engine_rpm=780.0, can_speed_kmh=0.0, gnss_speed_kmh=0.3,
                        external_power=True)
PARKED = VehicleReading(ignition_on=False, engine_rpm=None, can_speed_kmh=0.0, gnss_speed_kmh=1.2,
                        external_power=True)
SECRET = bytes(range(32))


class Relay(SysfsOutput):
    """The relay's GPIO value file, as a gateway's sysfs has it."""

    def __init__(self, root: Path) -> None:
        path = root / "gpio17" / "value"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1\n")  # a line left active by a previous run must be dropped at start
        super().__init__(path, "relay")

    @property
    def active(self) -> bool:
        return self.path.read_text().strip() == "1"


class Rig:
    def __init__(self, tmp_path: Path, settings: InterruptSettings | None = None,
                 relay: SysfsOutput | None = None) -> None:
        self.tmp_path = tmp_path
        self.clock = ManualClock()
        self.relay = relay or Relay(tmp_path)
        self.state_dir = tmp_path / "state"
        self.state_dir.mkdir(exist_ok=True)
        self.events: list[InterruptEvent] = []
        self.settings = settings or InterruptSettings(hold_s=30.0)
        self.machine = self.boot()

    def boot(self) -> StarterInterrupt:
        self.machine = StarterInterrupt(self.relay, self.clock, self.state_dir, self.settings,
                                        on_event=self.events.append, override_secret=SECRET)
        return self.machine

    def drive(self, reading: VehicleReading, seconds: float, step_s: float = 1.0) -> None:
        """Feed the same reading once per `step_s` for `seconds`, as the agent's ticks would."""
        elapsed = 0.0
        while elapsed < seconds:
            self.machine.update(reading)
            self.clock.advance(step_s)
            elapsed += step_s
        self.machine.update(reading)

    def state(self) -> InterruptState:
        return self.machine.state

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    @property
    def active(self) -> bool:
        return self.relay.path.read_text().strip() == "1"


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_arm_while_driving_engages_only_after_parking_for_the_hold_time(rig: Rig) -> None:
    rig.drive(DRIVING, 5)
    answer = rig.machine.arm()
    assert answer.state is InterruptState.ARMED and "ignition on" in answer.detail
    rig.drive(DRIVING, 600)  # ten more minutes of driving: never engaged
    assert rig.state() is InterruptState.ARMED and not rig.active
    rig.drive(IDLING, 60)  # stopped at a light, engine running
    assert not rig.active
    rig.drive(PARKED, 29)
    assert rig.state() is InterruptState.ARMED and not rig.active
    rig.drive(PARKED, 2)
    assert rig.state() is InterruptState.ENGAGED and rig.active
    engaged = rig.events[-1]
    assert engaged.kind == "engaged" and engaged.evidence["ignition_on"] == 0.0
    assert engaged.evidence["can_speed_kmh"] == 0.0 and engaged.evidence["parked_s"] >= 30
    assert rig.kinds() == ["armed", "engaged"]


def test_arm_at_a_car_parked_long_enough_engages_at_once(rig: Rig) -> None:
    rig.drive(PARKED, 45)
    answer = rig.machine.arm()
    assert answer.state is InterruptState.ENGAGED and rig.active


def test_a_moment_of_motion_restarts_the_hold(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 20)
    rig.drive(VehicleReading(False, None, 0.0, 6.5, True), 0)  # pushed / rolling: GNSS above walking pace
    rig.drive(PARKED, 20)
    assert rig.state() is InterruptState.ARMED and not rig.active
    rig.drive(PARKED, 11)
    assert rig.state() is InterruptState.ENGAGED


@pytest.mark.parametrize("reading, reason", [
    (VehicleReading(None, None, 0.0, 0.5, True), "ignition unknown"),
    (VehicleReading(False, 650.0, 0.0, 0.5, True), "engine turning"),
    (VehicleReading(False, None, None, 0.5, True), "no CAN vehicle speed"),
    (VehicleReading(False, None, 3.0, 0.5, True), "CAN speed"),
    (VehicleReading(False, None, 0.0, None, True), "no fresh GNSS fix"),
    (VehicleReading(False, None, 0.0, 4.0, True), "GNSS speed"),
])
def test_every_interlock_alone_keeps_it_from_engaging(rig: Rig, reading: VehicleReading, reason: str) -> None:
    rig.machine.arm()
    rig.drive(reading, 300)
    assert rig.state() is InterruptState.ARMED and not rig.active
    assert reason in rig.machine.waiting_for


def test_a_running_engine_while_engaged_drops_the_output_at_once(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    assert rig.active
    rig.drive(VehicleReading(True, None, 0.0, 0.4, True), 10)  # key turned, starter blocked: stays engaged
    assert rig.state() is InterruptState.ENGAGED and rig.active
    rig.machine.update(IDLING)  # the engine runs anyway (bypassed): never hold a running car
    assert rig.state() is InterruptState.ARMED and not rig.active
    assert rig.events[-1].kind == "dropped" and "engine turning" in rig.events[-1].detail
    rig.drive(DRIVING, 60)
    assert not rig.active
    rig.drive(PARKED, 31)
    assert rig.state() is InterruptState.ENGAGED


def test_release_while_engaged(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    assert rig.active
    answer = rig.machine.release()
    assert answer.state is InterruptState.RELEASED and not answer.refused and not rig.active
    rig.drive(PARKED, 600)
    assert not rig.active and rig.kinds() == ["armed", "engaged", "released"]


def test_reboot_while_engaged_starts_inactive_and_rearms(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    assert rig.active
    rig.boot()  # the agent restarts (watchdog, update, reboot): it cannot know the engine is off
    assert not rig.active and rig.state() is InterruptState.ARMED
    assert rig.events[-1].kind == "rearmed"
    rig.drive(PARKED, 29)
    assert not rig.active  # the whole hold again, from the restart
    rig.drive(PARKED, 2)
    assert rig.active


def test_reboot_while_driving_never_engages_before_parking(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(DRIVING, 10)
    rig.boot()
    rig.drive(DRIVING, 300)
    assert rig.state() is InterruptState.ARMED and not rig.active


def test_reboot_with_on_reboot_release_drops_the_arm(tmp_path: Path) -> None:
    rig = Rig(tmp_path, InterruptSettings(hold_s=30.0, on_reboot="release"))
    rig.machine.arm()
    rig.drive(PARKED, 31)
    rig.boot()
    assert rig.state() is InterruptState.RELEASED and not rig.active
    rig.drive(PARKED, 600)
    assert not rig.active
    rig.boot()  # and it stays released
    assert rig.state() is InterruptState.RELEASED


def test_power_loss_while_engaged_drops_the_output_and_reengages_when_back(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    assert rig.active
    rig.machine.update(VehicleReading(False, None, 0.0, 0.8, external_power=False))
    assert rig.state() is InterruptState.ARMED and not rig.active
    assert "external power lost" in rig.events[-1].detail
    rig.drive(VehicleReading(False, None, 0.0, 0.8, external_power=False), 120)
    assert not rig.active
    rig.drive(PARKED, 31)
    assert rig.active


def test_power_loss_with_hold_keeps_the_output(tmp_path: Path) -> None:
    rig = Rig(tmp_path, InterruptSettings(hold_s=30.0, on_power_loss="hold"))
    rig.machine.arm()
    rig.drive(PARKED, 31)
    rig.drive(VehicleReading(False, None, 0.0, 0.8, external_power=False), 60)
    assert rig.state() is InterruptState.ENGAGED and rig.active


def test_an_unreadable_state_file_starts_released_and_says_so(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.machine.arm()
    (rig.state_dir / STATE_FILE).write_text('{"armed": "yes"')
    rig.boot()
    assert rig.state() is InterruptState.RELEASED and not rig.active
    assert rig.events[-1].kind == "fault" and (rig.state_dir / "starter_interrupt.rejected").exists()


def test_a_relay_that_does_not_move_is_a_fault_not_an_engagement(tmp_path: Path) -> None:
    class Stuck(Relay):
        def _write(self, level: bool) -> None:
            super()._write(False)  # the coil's driver is dead: the line stays low

    rig = Rig(tmp_path, relay=Stuck(tmp_path))
    rig.machine.arm()
    rig.drive(PARKED, 31)
    assert rig.state() is InterruptState.ARMED
    faults = [e for e in rig.events if e.kind == "fault"]
    assert len(faults) == 1 and "reads inactive" in faults[0].detail
    rig.drive(PARKED, 30)  # retried once a minute, not every tick
    assert len([e for e in rig.events if e.kind == "fault"]) == 1
    rig.drive(PARKED, 31)
    assert len([e for e in rig.events if e.kind == "fault"]) == 2


def test_output_readback_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "value"
    path.write_text("banana\n")
    output = SysfsOutput(path, "relay")
    with pytest.raises(OutputError, match="not 0 or 1"):
        output.get()
    with pytest.raises(OutputError, match="cannot write"):
        SysfsOutput(tmp_path / "missing" / "value", "relay").set(True)


def test_active_low_output_writes_the_inverted_level(tmp_path: Path) -> None:
    path = tmp_path / "value"
    path.write_text("0\n")
    output = SysfsOutput(path, "relay", active_low=True)
    output.set(False)
    assert path.read_text() == "1\n" and output.get() is False


# --- the emergency override ------------------------------------------------------------------


def test_valid_code_releases_for_24_h_then_rearms(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    answer = rig.machine.enter_code(hotp(SECRET, 0))
    assert answer.state is InterruptState.OVERRIDDEN and not answer.refused and not rig.active
    rig.drive(PARKED, 23 * 3600, step_s=600)
    assert rig.state() is InterruptState.OVERRIDDEN and not rig.active
    rig.drive(PARKED, 3600, step_s=60)
    assert rig.events[-1].kind in ("override_ended", "engaged")
    assert "override_ended" in rig.kinds()
    rig.drive(PARKED, 31)
    assert rig.state() is InterruptState.ENGAGED and rig.active


def test_override_survives_a_reboot(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    rig.machine.enter_code(hotp(SECRET, 0))
    rig.boot()
    assert rig.state() is InterruptState.OVERRIDDEN
    rig.drive(PARKED, 3600, step_s=60)
    assert not rig.active


def test_invalid_and_reused_codes_are_refused(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    for code in ("00000000", "1234", "abcdefgh", hotp(SECRET, 11)):  # 11: past the look-ahead window
        answer = rig.machine.enter_code(code)
        assert answer.refused and answer.state is InterruptState.ENGAGED and rig.active
    used = hotp(SECRET, 3)  # codes 0..2 were issued but never typed: the window allows skipping them
    assert not rig.machine.enter_code(used).refused
    rig.machine.release()
    rig.machine.arm()
    rig.drive(PARKED, 31)
    for code in (used, hotp(SECRET, 0), hotp(SECRET, 2)):  # used, or older than the one used
        assert rig.machine.enter_code(code).refused
    assert rig.state() is InterruptState.ENGAGED


def test_codes_are_limited_per_period(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    for counter in (0, 1):
        assert not rig.machine.enter_code(hotp(SECRET, counter)).refused
        rig.drive(PARKED, 25 * 3600, step_s=600)  # the override ends, it engages again
        assert rig.state() is InterruptState.ENGAGED
    answer = rig.machine.enter_code(hotp(SECRET, 2))
    assert answer.refused and "used 2 times" in answer.detail and rig.active
    rig.boot()  # a reboot does not reset the count
    rig.drive(PARKED, 31)
    assert rig.machine.enter_code(hotp(SECRET, 2)).refused
    rig.clock.advance(30 * 86400)  # a new period
    rig.drive(PARKED, 1)
    assert not rig.machine.enter_code(hotp(SECRET, 2)).refused


def test_wrong_codes_lock_out_guessing(rig: Rig) -> None:
    rig.machine.arm()
    rig.drive(PARKED, 31)
    for guess in range(5):
        assert rig.machine.enter_code(f"{guess:08d}").refused
    answer = rig.machine.enter_code(hotp(SECRET, 0))  # even the right code, for an hour
    assert answer.refused and "wrong codes" in answer.detail
    rig.clock.advance(3601)
    assert not rig.machine.enter_code(hotp(SECRET, 0)).refused


def test_a_code_when_nothing_is_armed_is_refused_and_not_spent(rig: Rig) -> None:
    assert rig.machine.enter_code(hotp(SECRET, 0)).refused
    rig.machine.arm()
    assert not rig.machine.enter_code(hotp(SECRET, 0)).refused


def test_state_file_holds_only_what_a_restart_needs(rig: Rig) -> None:
    rig.machine.arm()
    data = json.loads((rig.state_dir / STATE_FILE).read_text())
    assert data == {"armed": True, "override_until_ns": 0, "override_uses_ns": [], "wrong_codes_ns": [],
                    "next_counter": 0}
