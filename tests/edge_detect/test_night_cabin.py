"""Night cabin activity through the real agent: door openings at night, in the vehicle's zone."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from hil.scenario import ScenarioCar, utc
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

PASSENGER = "Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen"
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}
ZURICH = {"time_zone": "Europe/Zurich"}


def car(start_ns: int, vehicle: dict[str, object] | None = None, **options: object) -> ScenarioCar:
    return ScenarioCar([{"kind": "night_cabin", **options}], vehicle=vehicle or ZURICH, nmea=False,
                       start_ns=start_ns)


def open_driver_door(c: ScenarioCar, times: int = 1, pause_s: float = 60.0) -> None:
    for _ in range(times):
        c.set(doors_open=1.0).run(3)
        c.set(doors_open=0.0).run(pause_s)


def test_four_openings_at_night_are_an_alert_cleared_in_the_morning() -> None:
    with car(utc(2026, 1, 10, 22, 0)) as c:  # 23:00 in Zurich
        c.run(10)
        open_driver_door(c, 3)
        assert c.events == []
        open_driver_door(c, 1)
        (event,) = c.events_of("night_cabin")
        assert event.severity is Severity.ALERT and event.features["door_openings"] == 4.0
        assert 23.0 <= event.features["local_hour"] < 23.2 and event.position is not None
        c.run(7 * 3600, tick_s=60.0)  # 06:04: the night is over
        c.run(120)
        assert c.events_of("night_cabin", Transition.CLEARED)


def test_the_owner_going_out_a_bouncing_door_and_daytime_stay_quiet() -> None:
    with car(utc(2026, 1, 10, 21, 30)) as c:  # 22:30 local
        c.set(extra={PASSENGER: 0.0}).run(10)
        open_driver_door(c)  # gets in, drives away
        c.drive(50).run(3600, tick_s=10.0).park()
        for _ in range(5):  # back home; the worn door switch bounces: one opening
            c.set(doors_open=1.0).run(1).set(doors_open=0.0).run(1)
        c.set(extra={PASSENGER: 1.0}).run(3).set(extra={PASSENGER: 0.0}).run(30)  # the passenger
        assert c.status()["detectors"]["night_cabin"]["openings_tonight"] == 3
        c.run(9 * 3600, tick_s=60.0)  # 09:00
        open_driver_door(c, 20, pause_s=20.0)  # a busy day
        assert c.alarms(Severity.WARNING) == []


def test_night_is_judged_in_the_vehicle_time_zone() -> None:
    start = utc(2026, 1, 10, 21, 30)  # 22:30 in Zurich, 21:30 UTC
    with car(start, {"time_zone": "UTC"}) as c:
        c.run(10)
        open_driver_door(c, 5, pause_s=20.0)
        assert c.events == []
    with car(start) as c:
        c.run(10)
        open_driver_door(c, 5, pause_s=20.0)
        assert len(c.events_of("night_cabin")) == 1


@pytest.mark.parametrize(("table", "message"), [
    ({"night_start": "25:00"}, "detectors.night_cabin.night_start"),
    ({"night_end": "6"}, "detectors.night_cabin.night_end"),
    ({"max_openings": -1}, "detectors.night_cabin.max_openings"),
    ({"doors": ["Vehicle.Cabin.Door.Row9.IsOpen"]}, "detectors.night_cabin.doors"),
    ({"doors": []}, "detectors.night_cabin.doors"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [{"kind": "night_cabin", **table}]})
