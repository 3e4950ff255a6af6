"""bench/power.py's park simulation: its figures follow from the ledger, planner and battery model."""

from __future__ import annotations

import pytest

from bench import power
from edge.power.planner import Planner, PowerMode
from edge.power.profile import load_profile

PROFILE = load_profile("tbox-reference")


def test_planned_park_keeps_the_promises_it_was_planned_for() -> None:
    result = power.run_planned(PROFILE)
    sleep = Planner(PROFILE).current.plans[PowerMode.PARKED_SLEEP]
    assert result.tow_latency_s == pytest.approx(sleep.tow_latency_s)
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
