"""Energy accounting on a ManualClock: state time, events and measured CPU seconds, in mAh."""

from __future__ import annotations

import pytest

from edge.power.accounting import SLEEP_STATES, EnergyLedger
from edge.power.profile import ProfileError, load_profile
from lienwatch.clock import ManualClock

PROFILE = load_profile("tbox-reference")


class FakeCpu:
    """A CPU-seconds source the test moves by hand (what the process would report)."""

    def __init__(self) -> None:
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds


def test_state_time_is_integrated_on_the_clock() -> None:
    clock = ManualClock()
    ledger = EnergyLedger(PROFILE, clock, cpu_seconds=FakeCpu())
    sleep_ma = PROFILE.battery_ma(SLEEP_STATES)
    clock.advance(3600)
    assert ledger.spent_mah == pytest.approx(sleep_ma)
    ledger.set_state("soc", "active")
    clock.advance(1800)
    awake_ma = PROFILE.battery_ma({**SLEEP_STATES, "soc": "active"})
    assert ledger.spent_mah == pytest.approx(sleep_ma + awake_ma / 2)
    assert ledger.average_ma() == pytest.approx((sleep_ma + awake_ma / 2) / 1.5)
    assert ledger.counts["state_changes"] == 1
    assert ledger.breakdown.parts["soc"] > ledger.breakdown.parts["mcu"] > 0


def test_events_are_charged_on_top() -> None:
    clock = ManualClock()
    ledger = EnergyLedger(PROFILE, clock, cpu_seconds=FakeCpu())
    hot = ledger.charge_fix("hot")
    cold = ledger.charge_fix("cold")
    assert cold == pytest.approx(hot * PROFILE.timings.gnss_ttff_cold_s / PROFILE.timings.gnss_ttff_hot_s)
    one_kb = ledger.charge_bytes(1000)
    assert ledger.charge_bytes(2000) == pytest.approx(2 * one_kb)
    assert ledger.charge_attach(from_psm=False) > ledger.charge_attach(from_psm=True)
    assert ledger.spent_mah == pytest.approx(sum(ledger.breakdown.events.values()))
    assert ledger.counts == {"fixes": 2, "bytes": 3000, "attaches": 1, "psm_wakes": 1, "state_changes": 0}
    with pytest.raises(ValueError):
        ledger.charge_fix("lukewarm")
    with pytest.raises(ValueError):
        ledger.charge_bytes(-1)


def test_cpu_seconds_come_from_the_injected_source() -> None:
    clock = ManualClock()
    cpu = FakeCpu()
    ledger = EnergyLedger(PROFILE, clock, cpu_seconds=cpu)
    assert ledger.sample_cpu() == 0.0
    cpu.seconds += 3600.0  # one busy CPU hour
    mah = ledger.sample_cpu()
    soc = PROFILE.parts["soc"]
    assert mah == pytest.approx(PROFILE.timings.soc_busy_extra_ma * soc.rail_v
                                / PROFILE.regulator.efficiency_heavy / 12.0)
    assert ledger.cpu_s == pytest.approx(3600.0)
    cpu.seconds -= 10  # a source going backwards charges nothing
    assert ledger.sample_cpu() == 0.0


def test_the_real_process_cpu_source_is_measured() -> None:
    ledger = EnergyLedger(PROFILE, ManualClock())  # default: time.process_time
    total = sum(i * i for i in range(300_000))
    assert total > 0
    ledger.sample_cpu()
    assert ledger.cpu_s > 0


def test_forecast_days() -> None:
    clock = ManualClock()
    ledger = EnergyLedger(PROFILE, clock, cpu_seconds=FakeCpu())
    assert ledger.forecast_days(2400.0, draw_ma=1.0) == pytest.approx(100.0)
    clock.advance(86400)
    days = ledger.forecast_days(ledger.spent_mah * 10)
    assert days == pytest.approx(10.0)


def test_bad_states_are_refused() -> None:
    ledger = EnergyLedger(PROFILE, ManualClock(), cpu_seconds=FakeCpu())
    with pytest.raises(ProfileError, match="no state 'warp'"):
        ledger.set_state("modem", "warp")
    with pytest.raises(ProfileError, match="no part 'radio'"):
        ledger.set_state("radio", "on")
    assert ledger.states == dict(SLEEP_STATES)
