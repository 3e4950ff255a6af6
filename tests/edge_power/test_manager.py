"""The agent's power manager on a ManualClock: states from ignition, measured draw, forecasts."""

from __future__ import annotations

import pytest

from edge.agent.config import SCHEMA
from edge.power.battery import LeadAcidBattery, resting_voltage
from edge.power.manager import PowerManager
from edge.power.planner import PowerMode
from edge.power.profile import load_profile
from hil.scenario import OFF, ScenarioCar
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from protocol import decode, encode
from protocol.messages import ClockQuality, Header, PowerState, Status

PROFILE = load_profile("tbox-reference")


class Cpu:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def _manager(clock: ManualClock, cpu: Cpu | None = None) -> PowerManager:
    return PowerManager(PROFILE, clock, battery=LeadAcidBattery(), cpu_seconds=cpu or Cpu(),
                        account_interval_s=10.0)


def _run(manager: PowerManager, clock: ManualClock, seconds: float, *, ignition: bool | None,
         supply_v: float | None = 12.5, bytes_today: int = 0, backup_v: float | None = None) -> None:
    for _ in range(int(seconds // 10)):
        clock.advance(10)
        manager.observe(ignition=ignition, supply_v=supply_v, bytes_sent_today=bytes_today,
                        backup_v=backup_v)


def test_unknown_until_the_ignition_is_known() -> None:
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 60, ignition=None)
    assert manager.wire_state is PowerState.UNKNOWN and manager.avg_current_ma() is None
    assert manager.snapshot()["state"] == "unknown"


def test_states_follow_ignition_and_parking_time() -> None:
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 600, ignition=True)
    assert manager.snapshot()["state"] == "driving" and manager.snapshot()["wire_state"] == "ACTIVE"
    driving_ma = PROFILE.battery_ma(manager.ledger.states)
    assert manager.avg_current_ma() == pytest.approx(driving_ma, rel=0.02)
    _run(manager, clock, 1800, ignition=False)
    assert manager.snapshot()["state"] == "parked_watch" and manager.snapshot()["wire_state"] == "IDLE"
    _run(manager, clock, 1900, ignition=False)
    assert manager.snapshot()["state"] == "parked_sleep"
    assert manager.wire_state in (PowerState.SLEEP, PowerState.DEEP_SLEEP)
    _run(manager, clock, 20, ignition=True)
    assert manager.snapshot()["state"] == "driving"


def test_parked_consumption_lowers_the_estimate_and_driving_does_not() -> None:
    clock = ManualClock()
    manager = _manager(clock)
    start = manager.planner.estimator.soc_pct
    _run(manager, clock, 3600, ignition=True)
    assert manager.planner.estimator.soc_pct == start
    _run(manager, clock, 3600, ignition=False)
    assert manager.planner.estimator.soc_pct < start


def test_cpu_seconds_and_bytes_are_charged() -> None:
    clock = ManualClock()
    cpu = Cpu()
    manager = _manager(clock, cpu)
    _run(manager, clock, 20, ignition=True, bytes_today=5000)
    cpu.seconds = 30.0
    _run(manager, clock, 20, ignition=True, bytes_today=8000)
    _run(manager, clock, 20, ignition=True, bytes_today=1000)  # a new UTC day: the counter restarted
    ledger = manager.ledger
    assert ledger.cpu_s == pytest.approx(30.0)
    assert ledger.counts["bytes"] == 9000
    assert ledger.breakdown.events["cpu"] > 0 and ledger.breakdown.events["bytes_sent"] > 0


def test_a_low_rested_voltage_replans_and_lowers_the_forecast() -> None:
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 60, ignition=False)
    before = manager.forecast_days()
    _run(manager, clock, 5 * 3600, ignition=False, supply_v=resting_voltage(62.0))
    assert manager.planner.replans == 1
    after = manager.forecast_days()
    assert before is not None and after is not None and after < before
    assert manager.snapshot()["soc_pct"] == pytest.approx(62.0, abs=0.5)


def test_status_with_power_fields_survives_the_wire() -> None:
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 120, ignition=False)
    status = Status(Header("veh-1", 1, 0, clock.wall_ns(), ClockQuality.NTP), manager.wire_state, 12.5, 4.0,
                    "x", 0, 0, energy_forecast_days=manager.forecast_days(),
                    avg_current_ma=manager.avg_current_ma())
    back = decode(encode(status))
    assert isinstance(back, Status)
    assert back.power_state is PowerState.IDLE
    assert back.energy_forecast_days == pytest.approx(status.energy_forecast_days, abs=0.01)
    assert back.avg_current_ma == pytest.approx(status.avg_current_ma, abs=0.01)


def test_from_config_refuses_a_bad_profile() -> None:
    values = {k.name: k.default for k in SCHEMA}
    manager = PowerManager.from_config(values, ManualClock())
    assert manager.planner.policy.horizon_days == 90.0
    with pytest.raises(ConfigError, match="unknown power profile"):
        PowerManager.from_config({**values, "power.profile": "no-such-board"}, ManualClock())


def test_a_lost_external_supply_is_backup_battery_and_no_rest_reading() -> None:
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 600, ignition=False)
    assert manager.snapshot()["wire_state"] == "IDLE"
    soc = manager.planner.estimator.soc_pct
    _run(manager, clock, 5 * 3600, ignition=None, supply_v=0.4)  # the 12 V wire is cut
    assert manager.wire_state is PowerState.BACKUP_BATTERY and manager.supply_lost
    assert manager.snapshot()["wire_state"] == "BACKUP_BATTERY"
    assert manager.planner.estimator.soc_pct == pytest.approx(soc, abs=1.0)  # 0.4 V is no battery reading
    _run(manager, clock, 20, ignition=None, supply_v=float("nan"))  # an unreadable sample changes nothing
    assert manager.wire_state is PowerState.BACKUP_BATTERY
    _run(manager, clock, 20, ignition=None, supply_v=12.5)  # plugged back in
    assert manager.wire_state is not PowerState.BACKUP_BATTERY


def test_the_agents_heartbeat_says_backup_battery_after_an_unplug() -> None:
    with ScenarioCar() as car:
        car.set(ignition=OFF)
        car.run(30)
        assert car.agent.heartbeat().power_state is PowerState.IDLE
        car.set(supply_v=0.3)  # the power source reads the cut 12 V input
        car.run(30)
        status = car.agent.heartbeat()
        assert status.power_state is PowerState.BACKUP_BATTERY
        back = decode(encode(status))
        assert isinstance(back, Status) and back.power_state is PowerState.BACKUP_BATTERY


def test_a_sleep_is_charged_in_the_sleep_plans_states_including_time_the_clock_did_not_see() -> None:
    """A suspend hides its time from CLOCK_MONOTONIC: `leave_sleep(unseen_s)` charges it anyway,
    in the sleep plan's states, and the park's hours include it."""
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 2 * 3600, ignition=False)  # past the watch hour: PARKED_SLEEP
    plan = manager.planner.current.plans[PowerMode.PARKED_SLEEP]
    before = manager.ledger.spent_mah
    manager.enter_sleep()
    states = dict(manager.ledger.states)
    assert states["soc"] == plan.soc and states["mcu"] == "stop" and states["accel"] == "wake_on_motion"
    clock.advance(10.0)  # what the monotonic clock saw of the sleep ...
    manager.leave_sleep(3590.0)  # ... and what it did not
    sleep_mah = PROFILE.battery_ma(states) * 3600.0 / 3600.0
    attach_mah = PROFILE.event_mah(PROFILE.timings.modem_psm_wake_mj)
    assert manager.ledger.spent_mah - before == pytest.approx(sleep_mah + attach_mah, rel=1e-9)
    assert manager.ledger.states["soc"] == "active" and manager.sleeps == 1
    assert manager.slept_s == pytest.approx(3600.0)
    with pytest.raises(ValueError, match="unseen"):
        manager.ledger.hold_unseen(-1.0)


def test_on_the_backup_cell_the_plan_and_forecast_follow_the_cells_voltage() -> None:
    """Unplugged: BACKUP, the cell's plan from its measured charge; the vehicle battery is not
    charged for what the cell pays."""
    clock = ManualClock()
    manager = _manager(clock)
    _run(manager, clock, 600, ignition=False, backup_v=4.2)
    snapshot = manager.snapshot()
    assert snapshot["wire_state"] == "IDLE" and snapshot["backup"]["cell_soc_pct"] == 100.0
    _run(manager, clock, 10, ignition=None, supply_v=0.4, backup_v=4.2)  # the 12 V wire is cut
    soc = manager.planner.estimator.soc_pct
    _run(manager, clock, 3600, ignition=None, supply_v=0.4, backup_v=4.2)
    assert manager.mode is PowerMode.BACKUP and manager.wire_state is PowerState.BACKUP_BATTERY
    full = manager.plan
    assert full is not None and full.endurance_h is not None
    assert manager.forecast_days() == pytest.approx(full.endurance_h / 24.0)
    assert manager.avg_current_ma() == pytest.approx(full.avg_current_ma)  # at the cell
    assert manager.planner.estimator.soc_pct == pytest.approx(soc, abs=1e-9)  # the cell paid
    _run(manager, clock, 60, ignition=None, supply_v=0.4, backup_v=3.7)  # 45 % left (Li-ion OCV)
    half = manager.plan
    assert half is not None and half.endurance_h is not None and half.endurance_h < full.endurance_h
    snapshot = manager.snapshot()["backup"]
    assert snapshot["cell_soc_pct"] == pytest.approx(45.0)
    assert snapshot["lasts_h"] == round(half.endurance_h, 1)
    _run(manager, clock, 20, ignition=None, supply_v=12.5, backup_v=4.1)  # plugged back in
    assert manager.mode is not PowerMode.BACKUP
