"""The lead-acid and Li-ion models and the state-of-charge estimator."""

from __future__ import annotations

import pytest

from edge.power.battery import (
    LeadAcidBattery,
    LiIonCell,
    SocEstimator,
    resting_voltage,
    soc_from_resting_voltage,
)
from lienwatch.errors import ConfigError


def test_resting_voltage_and_soc_are_inverse_and_monotonic() -> None:
    socs = [0, 10, 25, 40, 50, 63, 75, 90, 100]
    volts = [resting_voltage(s) for s in socs]
    assert volts == sorted(volts)
    for soc in socs:
        assert soc_from_resting_voltage(resting_voltage(soc)) == pytest.approx(soc)
    assert soc_from_resting_voltage(12.2) == pytest.approx(50.0)
    assert soc_from_resting_voltage(13.5) == 100.0  # a charging voltage is not above full
    assert soc_from_resting_voltage(9.0) == 0.0
    with pytest.raises(ValueError):
        soc_from_resting_voltage(float("nan"))


def test_discharge_and_self_discharge_lower_the_soc() -> None:
    battery = LeadAcidBattery(capacity_ah=60, soc_pct=80)
    battery.discharge(6000)  # 10 % of 60 Ah
    assert battery.soc_pct == pytest.approx(70.0)
    battery.age(30 * 24)  # a month at 25 °C
    assert battery.soc_pct == pytest.approx(66.0)
    assert battery.cranks
    battery.discharge(60_000)
    assert battery.soc_pct == 0.0 and not battery.cranks


def test_cold_derates_capacity_and_slows_self_discharge() -> None:
    warm = LeadAcidBattery(temperature_c=25)
    cold = LeadAcidBattery(temperature_c=0)
    assert cold.available_ah == pytest.approx(0.8 * warm.available_ah)
    assert cold.self_discharge_pct_per_h() < warm.self_discharge_pct_per_h()
    assert cold.usable_mah() < warm.usable_mah()


@pytest.mark.parametrize("kwargs", [{"capacity_ah": 0}, {"soc_pct": 120}, {"temperature_c": float("nan")},
                                    {"crank_soc_pct": -1}, {"capacity_ah": True}])
def test_bad_battery_figures_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"battery\."):
        LeadAcidBattery(**kwargs)


def test_estimator_counts_and_follows_a_weaker_rested_voltage() -> None:
    estimator = SocEstimator(LeadAcidBattery(capacity_ah=60, soc_pct=80))
    estimator.consume(600)  # 1 %
    assert estimator.soc_pct == pytest.approx(79.0)
    assert not estimator.observe_rest(resting_voltage(77.0))  # within tolerance: keep counting
    assert estimator.soc_pct == pytest.approx(79.0)
    assert estimator.observe_rest(resting_voltage(60.0))  # much weaker: follow the voltage
    assert estimator.weaker and estimator.soc_pct == pytest.approx(60.0)
    estimator.observe_rest(resting_voltage(70.0))  # higher: only halfway (a charger may be on)
    assert estimator.soc_pct == pytest.approx(65.0)


def test_li_ion_cell() -> None:
    cell = LiIonCell(500, soc_pct=100)
    cell.discharge(125)
    assert cell.soc_pct == pytest.approx(75.0) and cell.usable_mah() == pytest.approx(375.0)
    assert LiIonCell.soc_from_voltage(4.2) == 100.0 and LiIonCell.soc_from_voltage(3.3) == 0.0
    assert 0 < LiIonCell.soc_from_voltage(3.7) < 100
