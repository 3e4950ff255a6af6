"""The agent's "about to sleep" moment (edge/power/sleep.py): the real run loop (`Agent.step` on a
ManualClock) parks, reaches PARKED_SLEEP, persists, hands the real supervisor (over a real pty)
its thresholds and the SLEEP request, records the sleep in the ledger and suspends through an
injected action that moves the clock while the MCU watches; the MCU's GPIO wakes it and its log
becomes events with the MCU's times."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.agent.config import parse_config
from edge.agent.status import render
from edge.mcu import eventlog
from edge.power.planner import PowerMode
from edge.power.sleep import CommandSleep, Sleeper, SleepError
from hil.scenario import ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity
from tests.edge_mcu.test_agent_mcu import PtyMcu, _mcu_state, _run_until_event, _wait_for_session

MCU_KEYS = {"poll_interval_s": 10.0, "timeout_s": 1.0, "tilt_deg": 12, "confirm_s": 5.0, "motion_mg": 90}
SLOPE_DEG = 15.0  # the car is parked on a slope: flat was the MCU's reference since its boot


def _gravity(degrees: float) -> tuple[int, int, int]:
    r = math.radians(degrees)
    return (round(1000 * math.sin(r)), 0, round(1000 * math.cos(r)))


class QuietPtyMcu(PtyMcu):
    """The pty MCU whose serving thread can pause (while the fake sleep steps it on the clock, or
    to play an MCU that stopped answering)."""

    paused = False

    def _serve(self) -> None:
        while not self._stop.wait(0.005):
            if not self.paused:
                self.step()


class FakeSleep:
    """The SoC's suspend in a test: the MCU runs on the moving clock, `script(t)` changes the car
    `t` seconds into the sleep; the MCU's GPIO (hal.wakes) ends the sleep early."""

    def __init__(self, car: ScenarioCar, mcu: QuietPtyMcu, script: Callable[[float], None],
                 check: Callable[[], None]) -> None:
        self.car, self.mcu, self.script, self.check = car, mcu, script, check
        self.calls: list[tuple[float, str]] = []
        self.ledger_states: dict[str, str] = {}
        self.sleep_mah = 0.0
        self.slept_s = 0.0
        self.started_wall_ns = 0

    def __call__(self, seconds: float, soc: str) -> float:
        self.calls.append((seconds, soc))
        self.check()
        ledger = self.car.agent.power.ledger
        self.ledger_states = dict(ledger.states)
        before = ledger.spent_mah
        self.started_wall_ns = self.car.clock.wall_ns()
        hal = self.mcu.hal
        wakes = hal.wakes
        self.mcu.paused = True  # only this loop steps the MCU: one sample per 100 ms of the clock
        t = 0.0
        while t < seconds and hal.wakes == wakes:
            self.script(t)
            step = 0.1 if hal.vibration_mg or self.mcu.supervisor.sleep_ms() < 1000 else 1.0
            self.car.clock.advance(step)
            t += step
            hal.advance(0)  # the accelerometer's wake-on-motion interrupt, if it shakes
            self.mcu.step()
        self.mcu.paused = False
        self.sleep_mah = ledger.spent_mah - before
        self.slept_s = t
        return 0.0  # the fake moved the clock itself: nothing unseen


@pytest.fixture
def parked() -> Iterator[tuple[ScenarioCar, QuietPtyMcu]]:
    mcu = QuietPtyMcu()
    car = ScenarioCar(power={"mcu": {"device": mcu.path, **MCU_KEYS}})
    car.park()
    mcu.attach(car.clock)
    mcu.hal.gravity = _gravity(SLOPE_DEG)
    assert car.agent.mcu is not None
    car.agent.mcu.start()
    yield car, mcu
    car.close()
    mcu.close()


def _install(car: ScenarioCar, action: FakeSleep | None) -> Sleeper:
    sleeper = Sleeper.from_config(car.config.values, car.agent.power, car.agent.mcu, car.clock,
                                  car.agent._persist_before_sleep, action)
    assert sleeper is not None
    car.agent.sleeper = sleeper
    return sleeper


def test_parked_sleep_hands_the_mcu_config_and_tilt_reference_then_a_tow_wakes_the_agent(
        parked: tuple[ScenarioCar, QuietPtyMcu]) -> None:
    car, mcu = parked
    _wait_for_session(car)
    tow_at = 1200.0
    marks: dict[str, int] = {}

    def script(t: float) -> None:
        hal = mcu.hal
        if 600.0 <= t < 601.0:
            hal.vibration_mg = 300  # a bump: a passer-by (the MCU dismisses it)
        elif tow_at <= t < tow_at + 60.0:
            marks.setdefault("tow", car.clock.wall_ns())
            hal.gravity = _gravity(SLOPE_DEG + 20.0)  # the tow truck lifts the front ...
            hal.vibration_mg = 300  # ... and drags the car
        else:
            hal.vibration_mg = 0

    def check() -> None:  # the moment the SoC goes down
        agent = car.agent
        assert len(agent.batcher) == 0 and not agent._held_warnings  # persisted first
        assert agent.mcu is not None and agent.mcu.asleep  # no polling while the SoC sleeps
        supervisor = mcu.supervisor
        assert supervisor.config.tilt_deg == 12 and supervisor.config.confirm_ms == 5000
        assert supervisor.config.motion_mg == 90  # SET_CONFIG: the agent's thresholds
        assert supervisor._reference == _gravity(SLOPE_DEG)  # SLEEP: the slope is the reference

    action = FakeSleep(car, mcu, script, check)
    sleeper = _install(car, action)
    # the watch hour, then PARKED_SLEEP; no broker here (the outbox cannot deliver): the SoC stays
    # up max_awake_s (300 s) trying, then sleeps anyway, with everything on flash
    car.run(3600.0 + 320.0, tick_s=10.0)
    assert car.agent.power.mode is PowerMode.PARKED_SLEEP
    assert len(action.calls) == 1, sleeper.snapshot()
    plan = car.agent.power.planner.current.plans[PowerMode.PARKED_SLEEP]
    seconds, soc = action.calls[0]
    assert soc == plan.soc and plan.wake_interval_s is not None
    assert plan.wake_interval_s - 320 <= seconds <= plan.wake_interval_s - 300  # wakes 1 interval apart
    # the ledger held the sleep plan's states, charged at exactly their current
    assert action.ledger_states["soc"] == plan.soc and action.ledger_states["mcu"] == "stop"
    assert action.ledger_states["accel"] == "wake_on_motion" and action.ledger_states["modem"] == plan.modem
    profile = car.agent.power.planner.profile
    assert action.sleep_mah == pytest.approx(profile.battery_ma(action.ledger_states)
                                             * action.slept_s / 3600.0, rel=1e-6)
    assert tow_at + 5.0 <= action.slept_s <= tow_at + 7.0  # the MCU's GPIO ended the sleep early
    assert car.agent.power.ledger.states["soc"] == "active"  # awake again
    # what the MCU saw while the SoC slept arrives with the MCU's own times
    (tow,) = _run_until_event(car, "tow")
    assert tow.severity is Severity.EMERGENCY
    assert marks["tow"] <= tow.time_ns <= marks["tow"] + 6 * 10**9
    tilts = _run_until_event(car, "tilt")
    assert len(tilts) == 1 and tilts[0].time_ns >= marks["tow"]  # the lift, not the slope nor the bump
    kinds = [record[2] for record in mcu.supervisor.log.since(0)]
    assert kinds.count(eventlog.BUMP) == 1 and kinds.count(eventlog.TILT) == 1  # the bump: no tilt
    state = car.status()["power"]["sleep"]
    assert state["sleeps"] == 1 and state["early_wakes"] == 1 and state["refused"] == {}
    assert car.status()["power"]["sleeps"] == 1
    line = next(x for x in render(car.status(), car.clock.wall_ns()).splitlines() if x.startswith("sleep "))
    assert "1 sleeps" in line and "early wakes 1" in line and "refused 0" in line, line


def test_without_the_sleep_request_the_slope_would_read_as_a_tilt(
        parked: tuple[ScenarioCar, QuietPtyMcu]) -> None:
    """The control for the test above: a bump on the slope, judged against the MCU's boot-time
    reference (flat), is a TILT — which is why the agent hands over the reference at SLEEP."""
    car, mcu = parked
    _wait_for_session(car)
    mcu.hal.vibration_mg = 300
    for _ in range(10):
        car.clock.advance(0.1)
        mcu.hal.advance(0)
        mcu.step()
    mcu.hal.vibration_mg = 0
    for _ in range(120):  # past the MCU's default 10 s window (no SET_CONFIG here)
        car.clock.advance(0.1)
        mcu.step()
    assert [r[2] for r in mcu.supervisor.log.since(0)].count(eventlog.TILT) == 1


def test_no_sleep_without_an_mcu_session_and_refusals_are_counted(
        parked: tuple[ScenarioCar, QuietPtyMcu]) -> None:
    car, mcu = parked
    _wait_for_session(car)

    def never() -> None:
        raise AssertionError("the SoC must not sleep without the MCU watching")

    action = FakeSleep(car, mcu, lambda t: None, never)
    sleeper = _install(car, action)
    mcu.paused = True  # the MCU stops answering
    car.run(3600.0 + 500.0, tick_s=10.0)
    assert car.agent.power.mode is PowerMode.PARKED_SLEEP and action.calls == []
    refused = sum(sleeper.refused.values())
    assert 1 <= refused <= 5, sleeper.snapshot()  # retried once a minute, not every tick
    assert "MCU" in sleeper.last_refusal
    assert _mcu_state(car)["link_errors"]


def test_no_mcu_configured_means_the_soc_stays_awake() -> None:
    with ScenarioCar() as car:
        car.park()
        calls: list[float] = []

        def sleep(seconds: float, soc: str) -> float:
            calls.append(seconds)
            return 0.0

        sleeper = Sleeper.from_config(car.config.values, car.agent.power, None, car.clock,
                                      car.agent._persist_before_sleep, sleep)
        assert sleeper is not None
        car.agent.sleeper = sleeper
        car.run(3600.0 + 400.0, tick_s=10.0)
        assert calls == [] and "no MCU configured" in sleeper.last_refusal


def test_the_sleep_command_gets_its_placeholders_and_reports_unseen_time(tmp_path: Path) -> None:
    out = tmp_path / "slept"
    boot = iter([0, 3_600 * 10**9])  # CLOCK_BOOTTIME grew an hour ...
    mono = iter([0, 2 * 10**9])  # ... CLOCK_MONOTONIC 2 s: the rest was the suspend
    action = CommandSleep([sys.executable, "-c", f"open({str(out)!r}, 'w').write('{{seconds}} {{soc}}')"],
                          boottime_ns=lambda: next(boot), monotonic_ns=lambda: next(mono))
    assert action(3540.7, "suspend") == pytest.approx(3598.0)
    assert out.read_text() == "3540 suspend"


def test_a_failing_or_bad_sleep_command_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(SleepError, match="exited 3"):
        CommandSleep([sys.executable, "-c", "raise SystemExit(3)"])(60, "off")
    with pytest.raises(SleepError, match="no-such-program"):
        CommandSleep([str(tmp_path / "no-such-program")])(60, "off")
    with pytest.raises(ConfigError, match="placeholder"):
        CommandSleep(["rtcwake", "-s", "{minutes}"])


@pytest.mark.parametrize(("table", "message"), [
    ({"sleep": {"command": "rtcwake\n-m mem"}}, "power.sleep.command"),
    ({"sleep": {"command": "rtcwake 'unclosed"}}, "power.sleep.command"),
    ({"sleep": {"min_awake_s": 600.0, "max_awake_s": 60.0}}, "min_awake_s"),
    ({"mcu": {"unplug_v": 12.0, "low_v": 11.0}}, "unplug_v"),
    ({"mcu": {"tilt_deg": 0}}, "power.mcu.tilt_deg"),
    ({"mcu": {"confirm_s": 90.0}}, "power.mcu.confirm_s"),
])
def test_bad_sleep_and_mcu_threshold_config_is_refused(table: dict[str, object], message: str) -> None:
    document = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}, "power": table}
    with pytest.raises(ConfigError, match=message):
        config = parse_config(document)
        CommandSleep.from_config(config.values)


def test_unplugged_the_soc_sleeps_between_the_backup_plans_positions(
        parked: tuple[ScenarioCar, QuietPtyMcu]) -> None:
    car, mcu = parked
    _wait_for_session(car)
    action = FakeSleep(car, mcu, lambda t: None, lambda: None)
    _install(car, action)
    car.set(supply_v=0.3, backup_v=3.9)  # the tracker's 12 V wire is cut: on its own cell
    car.run(400.0, tick_s=10.0)  # no broker: up max_awake_s (300 s), then asleep on flash
    power = car.agent.power
    assert power.mode is PowerMode.BACKUP
    plan = power.plan
    assert plan is not None and plan.wake_interval_s is not None and plan.endurance_h is not None
    assert action.calls and action.calls[0][1] == plan.soc
    assert action.calls[0][0] == max(60.0, plan.wake_interval_s - 300.0)
    assert action.ledger_states["soc"] == plan.soc and action.ledger_states["modem"] == plan.modem
    status = car.status()["power"]
    assert status["wire_state"] == "BACKUP_BATTERY"
    assert status["backup"]["lasts_h"] == round(plan.endurance_h, 1)
    assert status["forecast_days"] == pytest.approx(plan.endurance_h / 24.0, abs=0.05)
    line = next(x for x in render(car.status(), car.clock.wall_ns()).splitlines() if x.startswith("backup "))
    assert f"every {plan.position_interval_s:g} s" in line, line
    assert f"lasts {status['backup']['lasts_h']:.0f} h" in line, line
