"""Battery through the real agent: the resting 12 V reserve, EV state of health, cell imbalance."""

from __future__ import annotations

import datetime as dt

import pytest

from edge.agent.config import parse_config
from edge.detect.registry import build_detector
from hil.scenario import ON, START, ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

SOH = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
CELL_MIN = "Vehicle.Powertrain.TractionBattery.CellVoltage.Min"
CELL_MAX = "Vehicle.Powertrain.TractionBattery.CellVoltage.Max"
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


def car(**kwargs: object) -> ScenarioCar:
    return ScenarioCar([{"kind": "battery"}], nmea=False, **kwargs)  # type: ignore[arg-type]


def test_a_resting_battery_below_the_reserve_warns_and_escalates_when_lower() -> None:
    with car() as c:
        c.park().run(300)
        c.set(supply_v=12.15).run(230)
        assert c.events == []  # not yet held 240 s
        c.run(45)  # held, and the WARNING rode the next telemetry batch
        (warning,) = c.events_of("battery")
        assert warning.severity is Severity.WARNING and warning.condition == "resting_12v"
        assert warning.features["supply_max_v"] == pytest.approx(12.15)
        c.set(supply_v=11.8).run(245)
        (alert,) = c.events_of("battery", Transition.ESCALATED)
        assert alert.severity is Severity.ALERT and alert.event_id == warning.event_id
        assert alert.features["supply_max_v"] == pytest.approx(11.8) and alert.position is not None
        c.set(supply_v=12.6).run(600)
        assert c.events_of("battery", Transition.CLEARED)


def test_crank_dips_charging_a_healthy_rest_and_an_unplugged_tracker_stay_quiet() -> None:
    with car() as c:
        for _ in range(5):
            c.park().set(supply_v=12.45).run(1800, tick_s=5.0)  # healthy rest
            c.set(ignition=START, rpm=200.0, supply_v=9.6).run(2)  # crank dip
            c.drive(50).set(supply_v=14.2).run(600, tick_s=5.0)  # alternator
        c.park().set(supply_v=12.5).run(100)
        c.set(supply_v=11.5, ignition=ON).run(600, tick_s=5.0)  # lights on, ignition on: not resting
        c.park().set(supply_v=0.3, external_power=0.0).run(900, tick_s=5.0)  # unplugged: not a battery
        assert c.alarms(Severity.WARNING) == []


@pytest.mark.parametrize("silent", ["rpm", "ignition"])
def test_a_signal_that_falls_silent_is_unknown_not_running_forever(silent: str) -> None:
    """The ECU stops answering (the key turned off): its last "running" value goes stale."""
    with car() as c:
        c.set(ignition=ON if silent == "ignition" else None, rpm=900.0 if silent == "rpm" else None,
              supply_v=12.0).run(300)
        assert c.events == []  # fresh: the engine runs, the battery is not resting
        c.set(**{silent: None}).run(330)
        (warning,) = c.events_of("battery")
    assert warning.condition == "resting_12v" and warning.features["supply_max_v"] == pytest.approx(12.0)
    assert warning.features["rested_s"] < 300  # resting from a few seconds after the silence


def _soh_history(last_30_days_drop: float) -> dict[str, object]:
    today = dt.date(2026, 1, 1)
    days = {}
    for age in range(1, 181):
        # before the window the vehicle's own baseline: 2.5 % per year
        value = 92.0 + (age - 30) * 2.5 / 365 if age > 30 else 92.0 - (30 - age) / 29 * last_30_days_drop
        days[(today - dt.timedelta(days=age)).isoformat()] = round(value, 2)
    return {"soh_days": days}


@pytest.mark.parametrize(("drop", "severity"), [(2.0, Severity.WARNING), (6.0, Severity.ALERT), (0.3, None)])
def test_state_of_health_falling_faster_than_its_baseline(drop: float, severity: Severity | None) -> None:
    detector = build_detector({"kind": "battery"})
    detector.restore_state(_soh_history(drop))
    with ScenarioCar(detector_objects=[detector], nmea=False) as c:
        c.set(extra={SOH: 92.0 - drop - 0.05}).run(60)
        events = c.events_of("battery")
    assert [e.severity for e in events] == ([] if severity is None else [severity])
    if events:
        assert events[0].condition == "soh_fade" and events[0].features["soh_drop_pct"] >= drop
        assert events[0].features["baseline_pct_per_year"] == pytest.approx(2.5, rel=0.05)


def test_cell_imbalance_warns_then_alerts_and_a_load_spike_is_ignored() -> None:
    with car() as c:
        c.set(extra={CELL_MAX: 3.70, CELL_MIN: 3.69}).run(300)
        c.set(extra={CELL_MAX: 3.90, CELL_MIN: 3.60}).run(1)  # one sample under a load step
        c.set(extra={CELL_MAX: 3.70, CELL_MIN: 3.69}).run(300)
        assert c.events == []
        c.set(extra={CELL_MAX: 3.70, CELL_MIN: 3.62}).run(400)
        (warning,) = c.events_of("battery")
        assert warning.condition == "cell_imbalance" and warning.severity is Severity.WARNING
        c.set(extra={CELL_MAX: 3.75, CELL_MIN: 3.55}).run(400)
        (alert,) = c.events_of("battery", Transition.ESCALATED)
        assert alert.features["cell_spread_v"] >= 0.15 and alert.severity is Severity.ALERT


@pytest.mark.parametrize(("table", "message"), [
    ({"alert_v": 12.5}, "detectors.battery.alert_v"),
    ({"hold_s": 0.0}, "detectors.battery.hold_s"),
    ({"cell_alert_v": 0.01}, "detectors.battery.cell_alert_v"),
    ({"soh_window_days": 3}, "detectors.battery.soh_window_days"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [{"kind": "battery", **table}]})
