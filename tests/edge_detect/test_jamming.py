"""GNSS jamming / spoofing through the real agent on a ManualClock (GNSS as parsed NMEA)."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from hil.scenario import ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


def driving(nmea: bool = False) -> ScenarioCar:
    car = ScenarioCar([{"kind": "gnss_jamming"}], nmea=nmea)
    car.drive(60).run(180)  # three minutes of healthy sky: the C/N0 baseline
    assert car.status()["detectors"]["gnss_jamming"]["armed"]
    return car


def test_cn0_collapse_warns_and_the_fix_lost_in_motion_escalates_to_emergency() -> None:
    with driving(nmea=True) as car:  # through the real NMEA parser
        car.gnss(cn0=22).run(40)
        car.gnss(quality=0, cn0=12)
        latency_s = car.run_until(lambda c: c.events_of("gnss_jamming", Transition.ESCALATED), 60)
        (raised,) = car.events_of("gnss_jamming")
        (escalated,) = car.events_of("gnss_jamming", Transition.ESCALATED)
        car.gnss(quality=1, cn0=42).run(90)  # the jammer is gone
        (cleared,) = car.events_of("gnss_jamming", Transition.CLEARED)
    assert raised.severity is Severity.WARNING and escalated.severity is Severity.EMERGENCY
    assert raised.event_id == escalated.event_id == cleared.event_id
    assert raised.features["cn0_drop_dbhz"] >= 12 and "cn0_gps_dbhz" in raised.features
    assert escalated.features["can_speed_kmh"] == 60.0 and escalated.features["fix_lost_s"] >= 20
    assert latency_s is not None and latency_s <= 30


def test_a_parked_car_losing_its_fix_in_a_garage_is_not_jamming() -> None:
    with driving() as car:
        car.drive(8).gnss(cn0=20).run(20)  # down the ramp, slowly
        car.park().gnss(quality=0, cn0=0).run(8 * 3600, tick_s=30.0)
        car.gnss(quality=1, cn0=40).drive(20).run(120)
        assert car.events == []


def test_tunnels_are_quiet_and_a_long_loss_in_motion_is_an_alert() -> None:
    with driving() as car:
        for _ in range(3):  # three tunnels of four minutes, signal gone at once
            car.gnss(quality=0, cn0=0).run(240)
            car.gnss(quality=1, cn0=42).run(300)
        assert car.events == []
        car.gnss(quality=0, cn0=0).run(16 * 60)
        (event,) = car.events_of("gnss_jamming")
    assert event.severity is Severity.ALERT


def test_multipath_jumps_are_not_spoofing_and_a_persistent_jump_is() -> None:
    with driving() as car:
        car.park().run(60)
        for _ in range(5):  # parked between buildings: fixes 300 m and 1.5 km off, one at a time
            lat, lon = car.gnss_state.lat, car.gnss_state.lon
            car.teleport(lat + 0.0027, lon).run(1)
            car.teleport(lat, lon).run(30)
            car.teleport(lat + 0.0135, lon).run(2)
            car.teleport(lat, lon).run(30)
        assert car.events == []
        car.drive(50).run(30)
        car.teleport(car.gnss_state.lat + 0.3, car.gnss_state.lon)  # 33 km away, and it stays
        car.run(20)
        (event,) = car.events_of("gnss_jamming")
    assert event.severity is Severity.ALERT and event.condition == "spoofing"
    assert event.features["jump_m"] > 30_000


def test_gnss_speed_while_the_car_stands_is_spoofing() -> None:
    with driving() as car:
        car.set(speed_kmh=0.0, rpm=800.0).gnss(speed_kmh=90.0).run(40)
        (event,) = car.events_of("gnss_jamming")
    assert event.condition == "spoofing" and event.features["gnss_speed_kmh"] == 90.0


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "gnss_jamming", "drop_db": 0.0}, "drop_db must be in"),
    ({"kind": "gnss_jamming", "jump_m": 1.0}, "jump_m must be in"),
    ({"kind": "gnss_jamming", "cn0": 1.0}, "unknown option 'cn0'"),
])
def test_bad_jamming_options_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [table]})
