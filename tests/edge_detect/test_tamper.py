"""Tampering / tracker removed through the real agent on a ManualClock."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from hil.scenario import ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity

MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}
VIN = "WVWZZZ1JZXW000001"


def silence(car: ScenarioCar) -> ScenarioCar:
    """The vehicle's bus says nothing any more."""
    return car.set(speed_kmh=None, rpm=None, ignition=None)


def test_can_wires_cut_while_driving_is_an_emergency() -> None:
    with ScenarioCar([{"kind": "tamper"}], nmea=False) as car:
        car.drive(70).set(supply_v=14.2).run(120)
        silence(car)
        latency_s = car.run_until(lambda c: c.events_of("tamper"), 90)
        (event,) = car.events_of("tamper")
    assert latency_s is not None and latency_s <= 40
    assert event.severity is Severity.EMERGENCY and event.condition == "can_silent"
    assert event.features["supply_min_v"] >= 13.4 and event.features["can_silent_s"] >= 30


def test_switching_off_and_an_ev_charging_overnight_are_quiet() -> None:
    with ScenarioCar([{"kind": "tamper"}], nmea=False) as car:
        for _ in range(5):
            car.drive(50).set(supply_v=14.3).run(600)
            car.park().set(supply_v=13.1).run(5)  # key off: surface charge
            silence(car).set(supply_v=12.7).run(3600, tick_s=10.0)
        car.drive(50).set(supply_v=14.3).run(120)
        car.park().run(20)
        silence(car).set(supply_v=14.0).run(8 * 3600, tick_s=30.0)  # the DC-DC while charging
        assert car.events == []


def test_another_vin_is_an_emergency_and_the_right_one_is_quiet() -> None:
    with ScenarioCar([{"kind": "tamper"}], nmea=False, vehicle={"vin": VIN}) as car:
        car.set(vin=VIN).drive(40).run(120)
        assert car.events == []
        car.set(vin="WAUZZZ8V5KA000002").run(5)
        (event,) = car.events_of("tamper")
    assert event.condition == "vin_mismatch" and "WAUZZZ8V5KA000002" in event.detail


def test_gnss_motion_without_the_car_and_a_bike_profile() -> None:
    with ScenarioCar([{"kind": "tamper"}], nmea=False) as car:  # in another car, bus not wired
        silence(car).set(supply_v=14.1).gnss(speed_kmh=60.0).run(120)
        (event,) = car.events_of("tamper")
    assert event.condition == "no_can_motion"
    with ScenarioCar([{"kind": "tamper"}], nmea=False) as car:  # tied to a bike
        silence(car).set(supply_v=0.0, external_power=0.0).gnss(speed_kmh=18.0).run(400)
        (event,) = car.events_of("tamper")
    assert event.condition == "bike_profile" and event.features["speed_max_kmh"] < 40


def test_a_towed_or_shipped_car_is_not_tampering() -> None:
    with ScenarioCar([{"kind": "tamper"}], nmea=False) as car:
        car.drive(50).set(supply_v=14.2).run(300)
        car.park().set(supply_v=12.9).run(10)
        silence(car).set(supply_v=12.5).gnss(speed_kmh=25.0).run(3 * 3600, tick_s=5.0)
        assert car.events == []


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "tamper", "can_signals": ["Vehicle.Nope"]}, "can_signals must name catalog signals"),
    ({"kind": "tamper", "can_signals": []}, "can_signals must name catalog signals"),
    ({"kind": "tamper", "silent_s": 0.5}, "silent_s must be in"),
    ({"kind": "tamper", "expect_can": "yes"}, "expect_can must be bool"),
])
def test_bad_tamper_options_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [table]})
