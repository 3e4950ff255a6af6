"""The agent's `[power.mcu]` link: the real run loop (`Agent.step` on a ManualClock) talks over
a real pty to the real supervisor (SimHal), and what the MCU logged while the SoC slept arrives
as protocol events with the MCU's times. Garbage on the line is counted, never fatal."""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.agent.config import parse_config
from edge.agent.status import render
from edge.mcu.hal import SimHal
from edge.mcu.supervisor import Supervisor
from hil.scenario import ScenarioCar
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from protocol.messages import Event, Severity, Transition


class ClockHal(SimHal):
    """The simulated board on the test's ManualClock (the SoC's and the MCU's time move together)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    def ticks_ms(self) -> int:
        return self.clock.monotonic_ns() // 1_000_000


class PtyMcu:
    """The MCU's end of a pty: the supervisor answers whatever the agent writes to the other end."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.lock = threading.Lock()
        self.garbage = b""  # written to the agent before the next answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def attach(self, clock: ManualClock) -> None:
        self.hal = ClockHal(clock)
        self.supervisor = Supervisor(self.hal)
        self._thread.start()

    def step(self) -> None:
        with self.lock:
            while select.select([self.master], [], [], 0)[0]:
                self.hal.rx.extend(os.read(self.master, 4096))
            self.supervisor.step()
            out = bytes(self.hal.tx)
            self.hal.tx = bytearray()
            if out:
                os.write(self.master, self.garbage + out)
                self.garbage = b""

    def _serve(self) -> None:
        while not self._stop.wait(0.005):
            self.step()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def rig() -> Iterator[tuple[ScenarioCar, PtyMcu]]:
    mcu = PtyMcu()
    # a loaded machine may answer late: the link retries at the next poll (timeout on real selects)
    car = ScenarioCar(power={"mcu": {"device": mcu.path, "poll_interval_s": 10.0, "timeout_s": 1.0}})
    mcu.attach(car.clock)
    assert car.agent.mcu is not None
    car.agent.mcu.start()
    yield car, mcu
    car.close()
    mcu.close()


def _wait(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def _wait_for_session(car: ScenarioCar) -> None:
    """HELLO and time sync done; a missed answer is retried at the next poll, 10 s on the clock."""
    def in_session() -> bool:
        if _mcu_state(car).get("in_session") is True:
            return True
        car.clock.advance(1.0)
        return False
    assert _wait(in_session), _mcu_state(car)


def _mcu_state(car: ScenarioCar) -> dict[str, object]:
    return dict(car.status()["detectors"]["mcu"])


def _run_until_event(car: ScenarioCar, condition: str) -> list[Event]:
    def seen() -> bool:
        car.run(1.0)
        return bool([e for e in car.events_of("mcu") if e.condition == condition])
    assert _wait(seen), _mcu_state(car)
    return [e for e in car.events_of("mcu") if e.condition == condition]


def test_an_unplug_logged_while_the_soc_slept_arrives_as_an_emergency_with_its_time(
        rig: tuple[ScenarioCar, PtyMcu]) -> None:
    car, mcu = rig
    _wait_for_session(car)
    # the SoC sleeps: the agent does not step; the MCU keeps watching on the same clock
    car.clock.advance(3600)
    mcu.step()
    mcu.hal.supply = 4_000  # the tracker's supply wire is cut
    for _ in range(3):  # two low samples, a minute apart, make an unplug
        car.clock.advance(60)
        mcu.step()
    unplugged_ns = car.clock.wall_ns()
    assert mcu.hal.wakes == 1  # the MCU woke the SoC
    car.clock.advance(7200)  # ... which takes its time: the event must keep the MCU's time
    (event,) = _run_until_event(car, "unplug")
    assert event.severity is Severity.EMERGENCY and event.transition is Transition.RAISED
    assert unplugged_ns - 61 * 10**9 <= event.time_ns <= unplugged_ns  # logged at the 2nd low sample
    assert car.clock.wall_ns() - event.time_ns >= 7200 * 10**9  # not the time the agent read it
    assert event.features["mcu_value"] == 4000.0
    assert "unplugged" in event.detail and "estimated" not in event.detail


def test_motion_while_asleep_becomes_a_tow_event_and_garbage_on_the_link_is_counted(
        rig: tuple[ScenarioCar, PtyMcu]) -> None:
    car, mcu = rig
    _wait_for_session(car)
    car.clock.advance(1800)
    mcu.step()
    shaken_ns = car.clock.wall_ns()
    mcu.hal.vibration_mg = 300  # a tow: held motion through the MCU's confirmation window
    for _ in range(120):
        car.clock.advance(0.1)
        mcu.hal.advance(0)  # the accelerometer's wake-on-motion interrupt
        mcu.step()
    mcu.hal.vibration_mg = 0
    car.clock.advance(600)
    mcu.garbage = b"\x00\xff garbage \x7e\x7e" + bytes(range(256))  # line noise before the answer
    (event,) = _run_until_event(car, "tow")
    assert event.severity is Severity.EMERGENCY
    assert shaken_ns <= event.time_ns <= shaken_ns + 12 * 10**9
    state = _mcu_state(car)
    assert int(str(state["garbage_bytes"])) > 0, state
    car.run(5.0)  # the agent and the link carry on
    line = next(x for x in render(car.status(), car.clock.wall_ns()).splitlines() if " mcu " in x)
    assert "link up" in line and f"{state['garbage_bytes']} garbage bytes" in line, line
    assert car.agent.mcu is not None and car.agent.mcu.poller is not None


@pytest.mark.parametrize(("key", "value"), [
    ("device", 5), ("device", "/dev/tty\x01"), ("baudrate", 1234), ("poll_interval_s", 0.0),
    ("timeout_s", 99.0), ("speed", 1),
])
def test_bad_mcu_config_is_refused_naming_the_key(key: str, value: object) -> None:
    document = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}},
                "power": {"mcu": {key: value}}}
    with pytest.raises(ConfigError, match=f"power.mcu.{key}"):
        parse_config(document)


def test_no_mcu_link_by_default() -> None:
    config = parse_config({"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}})
    assert config["power.mcu.device"] == ""
    with ScenarioCar() as car:
        assert car.agent.mcu is None and "mcu" not in car.status()["detectors"]


@pytest.mark.parametrize("device", ["/nonexistent/ttyS9", "/dev/null"])
def test_a_missing_or_wrong_uart_is_counted_and_the_agent_runs_on(device: str) -> None:
    with ScenarioCar(power={"mcu": {"device": device}}) as car:
        watch = car.agent.mcu
        assert watch is not None
        watch.poll_once()
        car.run(3.0)
        assert watch.open_errors == 1 and watch.poller is None
        assert device in str(_mcu_state(car)["last_open_error"])


def _unplug_while_asleep(car: ScenarioCar, mcu: PtyMcu) -> None:
    car.clock.advance(600)
    mcu.step()
    mcu.hal.supply = 4_000
    for _ in range(3):
        car.clock.advance(60)
        mcu.step()


@pytest.mark.parametrize("cursor", ["kept", "damaged"])
def test_a_restarted_agent_reads_the_mcu_log_on_from_where_it_stopped(tmp_path: Path, cursor: str) -> None:
    """The same MCU boot: an agent restart must not raise the MCU's old events again. A damaged
    cursor file reads the log from 0 again (a repeated event rather than a lost one)."""
    mcu = PtyMcu()
    power = {"mcu": {"device": mcu.path, "poll_interval_s": 10.0, "timeout_s": 1.0}}
    first = ScenarioCar(power=power, state_dir=tmp_path)
    try:
        mcu.attach(first.clock)
        assert first.agent.mcu is not None
        first.agent.mcu.start()
        _wait_for_session(first)
        _unplug_while_asleep(first, mcu)
        _run_until_event(first, "unplug")
        first.run(180.0)  # the one-shot event clears (60 s) and its cooldown passes
        assert first.events_of("mcu", Transition.CLEARED)
    finally:
        first.close()
    saved = tmp_path / "state" / "mcu_cursor.json"
    assert json.loads(saved.read_text())["next_index"] >= 1
    if cursor == "damaged":
        saved.write_text("{not json")
    second = ScenarioCar(power=power, state_dir=tmp_path, start_ns=first.clock.wall_ns())
    try:
        mcu.hal.clock = second.clock  # the MCU runs on (same boot); its ticks follow the new clock
        assert second.agent.mcu is not None
        second.agent.mcu.start()
        _wait_for_session(second)
        second.run(30.0)
        assert _wait(lambda: (second.run(1.0), int(str(_mcu_state(second)["next_index"])) >= 1)[1])
        second.run(5.0)
        raised = second.events_of("mcu")
        assert len(raised) == (1 if cursor == "damaged" else 0), raised
    finally:
        second.close()
        mcu.close()
