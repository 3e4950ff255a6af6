"""bench/power.py's park simulation: its figures follow from the ledger, planner and battery model."""

from __future__ import annotations

import pytest

from bench import power
from bench.tow_wake import Tow, TowRun, tow_after_sleep
from edge.power.planner import Planner, Policy, PowerMode
from edge.power.profile import load_profile
from lienwatch.clock import ManualClock

PROFILE = load_profile("tbox-reference")


def test_planned_park_keeps_the_promises_it_was_planned_for() -> None:
    result = power.run_planned(PROFILE)
    sleep = Planner(PROFILE).current.plans[PowerMode.PARKED_SLEEP]
    # the tow was run (real supervisor, link, detectors), not modelled; the plan's model agrees
    assert result.tow is not None and result.tow.detector == "mcu"
    assert result.tow_latency_s == pytest.approx(sleep.tow_latency_s, abs=1.0)
    assert sleep.wake_interval_s is not None
    assert result.position_age_worst_h <= sleep.wake_interval_s / 3600 + 1e-6
    assert result.heartbeat_gap_worst_h <= 24.0
    # measured over 90 days: the sleep plan's average plus the watch phases, the tow and bumps
    assert sleep.avg_current_ma < result.avg_ma < sleep.avg_current_ma * 1.5
    assert len(result.daily_soc) == power.DAYS + 1
    assert result.daily_soc == sorted(result.daily_soc, reverse=True)
    assert result.cranks and result.soc_day90_pct == pytest.approx(result.daily_soc[-1], abs=0.05)


def test_an_unknown_car_draw_is_seen_in_the_resting_voltage_and_replanned() -> None:
    result = power.run_planned(PROFILE, car_draw_ma=5.0)
    assert result.replans >= 1
    planned = power.run_planned(PROFILE)
    assert result.soc_day90_pct < planned.soc_day90_pct


def test_teltonika_like_baseline_draws_more_and_sleeps_deeper_less() -> None:
    teltonika = power.run_teltonika_like(PROFILE)
    planned = power.run_planned(PROFILE)
    assert teltonika.avg_ma > 5 * planned.avg_ma
    assert teltonika.position_age_worst_h > 5.9


def _tow_run(policy: Policy, tow: Tow | None = None) -> tuple[TowRun, float]:
    planner = Planner(PROFILE, policy)
    plan = planner.current.plans[PowerMode.PARKED_SLEEP]
    clock = ManualClock()
    held: list[float] = []

    def hold(seconds: float, states: object = None) -> None:
        held.append(seconds)
        clock.advance(seconds)

    return tow_after_sleep(clock, planner, plan, hold, tow=tow), plan.tow_latency_s


@pytest.mark.parametrize("soc", ["off", "suspend"])
def test_a_tow_while_asleep_is_raised_from_the_mcus_log_and_edge_detect_confirms_later(soc: str) -> None:
    """The SoC's own tow detector was armed during the park: after a suspend it still is, after a
    boot from off it resumes the saved arming; either way it confirms after its owner grace. The
    MCU's MOTION, read at the first tick, is the EMERGENCY."""
    policy = Policy(tow_latency_max_s=20.0) if soc == "suspend" else Policy()
    run, planned_s = _tow_run(policy)
    assert run.detector == "mcu"
    confirm = policy.mcu_confirm_s
    assert confirm <= run.gpio_s <= confirm + 0.3  # the supervisor's window, at 10 Hz
    boot = PROFILE.timings.soc_resume_s if soc == "suspend" else PROFILE.timings.soc_boot_s
    assert run.awake_s == pytest.approx(run.gpio_s + boot, abs=1e-6)
    assert run.awake_s < run.raised_s <= run.awake_s + 0.5
    assert run.latency_s == pytest.approx(planned_s, abs=1.0)
    assert run.soc_tow_s is not None
    assert run.awake_s + 25.0 <= run.soc_tow_s <= run.awake_s + 60.0  # after its owner grace


def test_a_shake_below_the_mcus_motion_threshold_is_never_detected() -> None:
    with pytest.raises(RuntimeError, match="never detected"):
        _tow_run(Policy(), Tow(lift_deg=0.0, vibration_mg=20, speed_kmh=0.0))
