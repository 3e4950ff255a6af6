"""The planner: the four states, choices within the budget, promises, re-planning."""

from __future__ import annotations

import pytest

from edge.power.accounting import EnergyLedger
from edge.power.battery import LeadAcidBattery, resting_voltage
from edge.power.planner import BACKUP_LADDER_S, SLEEP_OPTIONS, Planner, Policy, PowerMode, SleepOptions
from edge.power.profile import load_profile
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from protocol.messages import PowerState

PROFILE = load_profile("tbox-reference")


def test_default_plan_keeps_every_promise_within_the_budget() -> None:
    planner = Planner(PROFILE)
    plans = planner.current
    sleep = plans.plans[PowerMode.PARKED_SLEEP]
    policy = planner.policy
    assert sleep.avg_current_ma <= plans.budget_ma
    assert sleep.position_interval_s is not None
    assert sleep.position_interval_s <= policy.position_interval_max_h * 3600
    assert sleep.heartbeat_interval_s <= policy.heartbeat_interval_h * 3600
    assert sleep.tow_latency_s <= policy.tow_latency_max_s
    assert plans.soc_at_horizon_pct > planner.battery.crank_soc_pct
    assert plans.forecast_days > policy.horizon_days
    currents = [plans.plans[mode].avg_current_ma for mode in PowerMode if mode is not PowerMode.BACKUP]
    assert currents == sorted(currents, reverse=True)  # driving > watch > sleep > critical
    assert all(plan.reasons for plan in plans.plans.values())


def test_the_chosen_sleep_plan_is_the_cheapest_of_its_freshness() -> None:
    planner = Planner(PROFILE)
    sleep = planner.current.plans[PowerMode.PARKED_SLEEP]
    same_interval = [c for c in planner.candidates() if c.wake_interval_s == sleep.wake_interval_s
                     and c.tow_latency_s <= planner.policy.tow_latency_max_s]
    assert sleep.avg_current_ma == pytest.approx(min(c.avg_current_ma for c in same_interval))


def test_a_smaller_battery_gets_a_longer_interval_and_says_why() -> None:
    big = Planner(PROFILE).current.plans[PowerMode.PARKED_SLEEP]
    # 20 Ah at 70 %: its self-discharge leaves the tracker a fraction of a mA.
    small = Planner(PROFILE, battery=LeadAcidBattery(capacity_ah=20, soc_pct=70)).current
    sleep = small.plans[PowerMode.PARKED_SLEEP]
    assert big.wake_interval_s is not None and sleep.wake_interval_s is not None
    assert sleep.wake_interval_s > big.wake_interval_s
    assert sleep.avg_current_ma <= small.budget_ma
    assert any("the freshest that fits" in r for r in sleep.reasons)


def test_no_budget_at_all_is_said_plainly() -> None:
    plans = Planner(PROFILE, Policy(vehicle_quiescent_ma=40.0)).current
    assert plans.budget_ma == 0.0
    sleep = plans.plans[PowerMode.PARKED_SLEEP]
    assert "no plan fits the budget" in sleep.reasons[0]
    assert plans.soc_at_horizon_pct < 50
    # the cheapest plan that still keeps the promises, not the freshest
    planner = Planner(PROFILE, Policy(vehicle_quiescent_ma=40.0))
    keeping = [c for c in planner.candidates() if c.position_interval_s is not None
               and c.position_interval_s <= 6 * 3600 and c.tow_latency_s <= 60]
    assert sleep.avg_current_ma == pytest.approx(min(c.avg_current_ma for c in keeping))
    assert sleep.position_interval_s is not None and sleep.position_interval_s > 3600


def test_a_tight_tow_promise_buys_a_suspended_soc() -> None:
    default = Planner(PROFILE).current.plans[PowerMode.PARKED_SLEEP]
    assert default.soc == "off"
    strict = Planner(PROFILE, Policy(tow_latency_max_s=25.0)).current.plans[PowerMode.PARKED_SLEEP]
    assert strict.soc == "suspend" and strict.tow_latency_s <= 25.0
    assert strict.avg_current_ma > default.avg_current_ma


def test_plan_cost_matches_what_the_ledger_charges_for_the_same_wake() -> None:
    planner = Planner(PROFILE)
    options = SleepOptions("off", "psm", "backup")
    segments = planner.wake_segments(options, fix="hot", heartbeat=True)
    clock = ManualClock()
    ledger = EnergyLedger(PROFILE, clock, states=planner.sleep_states(options), cpu_seconds=lambda: 0.0)
    for seg in segments:
        ledger.set_states(seg.states)
        if seg.fix:
            ledger.charge_fix(seg.fix)
        if seg.attach:
            ledger.charge_attach(from_psm=seg.attach == "psm")
        ledger.charge_bytes(seg.bytes_sent)
        clock.advance(seg.seconds)
    assert ledger.spent_mah == pytest.approx(planner.segments_mah(segments))


def test_modes_follow_ignition_parking_time_and_charge() -> None:
    planner = Planner(PROFILE)
    assert planner.mode_for(ignition_on=True, parked_s=0) is PowerMode.DRIVING
    assert planner.mode_for(ignition_on=False, parked_s=60) is PowerMode.PARKED_WATCH
    assert planner.mode_for(ignition_on=False, parked_s=7200) is PowerMode.PARKED_SLEEP
    assert planner.mode_for(ignition_on=False, parked_s=7200, soc_pct=54.0) is PowerMode.CRITICAL
    assert planner.mode_for(ignition_on=True, parked_s=0, soc_pct=54.0) is PowerMode.DRIVING
    plans = planner.current.plans
    assert plans[PowerMode.DRIVING].wire_state is PowerState.ACTIVE
    assert plans[PowerMode.PARKED_WATCH].wire_state is PowerState.IDLE
    assert plans[PowerMode.CRITICAL].wire_state is PowerState.DEEP_SLEEP


def test_a_weaker_battery_than_counted_triggers_a_replan() -> None:
    planner = Planner(PROFILE)
    before = planner.current
    assert not planner.observe_rest(resting_voltage(79.0))
    assert planner.replans == 0
    assert planner.observe_rest(resting_voltage(60.0))
    after = planner.current
    assert planner.replans == 1
    assert after.soc_pct == pytest.approx(60.0)
    assert after.budget_ma < before.budget_ma and after.forecast_days < before.forecast_days
    assert after.reasons[0].startswith("re-planned: a rested")


def test_cold_shrinks_the_budget() -> None:
    warm = Planner(PROFILE).current
    cold = Planner(PROFILE, battery=LeadAcidBattery(temperature_c=-18)).current
    assert cold.usable_mah < warm.usable_mah


@pytest.mark.parametrize("table, message", [
    ({"horizon_days": 0}, "horizon_days must be > 0"),
    ({"horizon_days": -5}, "horizon_days must be a finite number"),
    ({"horizon_days": float("inf")}, "horizon_days must be a finite number"),
    ({"position_interval_max_h": "6"}, "position_interval_max_h must be a finite number"),
    ({"rtk_when_driving": 1}, "rtk_when_driving must be true or false"),
    ({"position_interval_min_h": 8}, "position_interval_min_h must be <= position_interval_max_h"),
    ({"bogus": 1}, "unknown option(s) bogus"),
    ({"horizon_days": 10_000}, "horizon_days must be <= 3650"),
])
def test_bad_policy_is_a_config_error(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Policy.from_mapping(table)


def test_after_an_unplug_the_backup_plan_lasts_its_hours_with_the_freshest_positions() -> None:
    planner = Planner(PROFILE)
    policy = planner.policy
    backup = planner.current.plans[PowerMode.BACKUP]
    assert backup.wire_state is PowerState.BACKUP_BATTERY
    assert backup.endurance_h is not None and backup.endurance_h >= policy.backup_hours_min
    assert backup.endurance_h == pytest.approx(PROFILE.backup_cell.capacity_mah / backup.avg_current_ma)
    assert backup.position_interval_s is not None
    assert backup.position_interval_s >= policy.backup_position_interval_min_s
    # every fresher rung of the ladder would empty the cell before backup_hours_min
    for interval in BACKUP_LADDER_S:
        if policy.backup_position_interval_min_s <= interval < backup.position_interval_s:
            assert all((planner.backup_plan(o, interval).endurance_h or 0.0) < policy.backup_hours_min
                       for o in SLEEP_OPTIONS)
    assert "lasts" in " ".join(backup.reasons) and "duty cycle" in " ".join(backup.reasons)


def test_the_backup_cell_draws_the_rail_currents_and_nothing_of_the_cars_supply() -> None:
    planner = Planner(PROFILE)
    states = planner.sleep_states(SleepOptions("off", "psm", "backup"))
    rails = sum(PROFILE.parts[p].ma(s) for p, s in states.items() if not PROFILE.parts[p].direct)
    assert planner.cell_ma(states) == pytest.approx(rails)
    assert PROFILE.parts["can"].direct and PROFILE.parts["can"].ma(states["can"]) > 0  # not on the cell


def test_a_longer_backup_promise_buys_rarer_positions_and_an_impossible_one_says_so() -> None:
    base = Planner(PROFILE).current.plans[PowerMode.BACKUP]
    longer = Planner(PROFILE, Policy(backup_hours_min=200.0)).current.plans[PowerMode.BACKUP]
    assert longer.position_interval_s is not None and base.position_interval_s is not None
    assert longer.position_interval_s > base.position_interval_s
    assert longer.endurance_h is not None and longer.endurance_h >= 200.0
    never = Planner(PROFILE, Policy(backup_hours_min=1e6)).current.plans[PowerMode.BACKUP]
    assert "no plan lasts" in " ".join(never.reasons)
    assert never.endurance_h is not None and never.endurance_h >= longer.endurance_h
    half = Planner(PROFILE).backup(cell_soc_pct=50.0)
    assert half.endurance_h is not None and half.endurance_h >= 48.0
    assert half.position_interval_s is not None and half.position_interval_s >= base.position_interval_s
