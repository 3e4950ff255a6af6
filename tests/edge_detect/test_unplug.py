"""Power cut / unplug through the real agent on a ManualClock."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from hil.scenario import ON, START, ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


def test_unplugging_is_an_emergency_within_seconds_and_plugging_back_clears_it() -> None:
    with ScenarioCar([{"kind": "unplug"}], nmea=False, tick_s=0.5) as car:
        car.park().run(60)
        car.set(supply_v=0.3, external_power=0.0, backup_v=3.9)
        latency_s = car.run_until(lambda c: c.events_of("unplug"), 10)
        (event,) = car.events_of("unplug")
        car.run(60)  # still unplugged: the same event, no flood
        assert len(car.events_of("unplug", transition=None)) == 1
        car.set(supply_v=12.5, external_power=1.0).run(10)
        (cleared,) = car.events_of("unplug", Transition.CLEARED)
    assert latency_s is not None and 1.5 <= latency_s <= 3.0
    assert event.severity is Severity.EMERGENCY and event.position is not None
    assert event.features["supply_v"] == pytest.approx(0.3)
    assert event.features["backup_v"] == pytest.approx(3.9)
    assert event.features["external_power"] == 0.0
    assert cleared.event_id == event.event_id


def test_cut_while_driving_waits_for_the_longer_hold() -> None:
    with ScenarioCar([{"kind": "unplug"}], nmea=False, tick_s=0.5) as car:
        car.drive(80).run(30)
        car.set(supply_v=0.0)
        latency_s = car.run_until(lambda c: c.events_of("unplug"), 10)
    assert latency_s is not None and 3.0 <= latency_s <= 4.5


def test_crank_dips_and_alternator_dips_are_quiet() -> None:
    with ScenarioCar([{"kind": "unplug"}], nmea=False, tick_s=0.25) as car:
        for _ in range(30):  # thirty starts of a car with a tired battery
            car.park().set(supply_v=12.3).run(20)
            car.set(ignition=START, rpm=200.0, supply_v=4.6).run(0.5)  # the crank dip, 0.5 s
            car.set(ignition=ON, supply_v=14.2).drive(30).run(30)
            for volts in (11.8, 14.4, 4.9, 14.1):  # smart alternator + a glitch while driving
                car.set(supply_v=volts).run(1.0)
        assert car.events == []


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "unplug", "threshold_v": 0.0}, "threshold_v must be in"),
    ({"kind": "unplug", "hold_s": 1000.0}, "hold_s must be in"),
    ({"kind": "unplug", "hold": 1.0}, "unknown option 'hold'"),
])
def test_bad_unplug_options_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [table]})
