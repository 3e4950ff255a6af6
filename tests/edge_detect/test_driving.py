"""Driving through the real agent: a crash is an EMERGENCY; harsh driving, overspeed and idling
are counted per day, never raised."""

from __future__ import annotations

import cbor2
import pytest

import protocol
from edge.agent.config import parse_config
from edge.agent.status import render
from edge.detect.registry import build_detector
from hil.scenario import ScenarioCar, utc
from lienwatch.errors import ConfigError
from protocol.messages import DrivingDay, Severity

MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}
G = 9.81


def car(**kwargs: object) -> ScenarioCar:
    return ScenarioCar([{"kind": "driving"}], nmea=False, **kwargs)  # type: ignore[arg-type]


def pulse(c: ScenarioCar, longitudinal: float = 0.0, lateral: float = 0.0, seconds: float = 1.0) -> None:
    c.set(accel=(longitudinal, lateral, G)).run(seconds)
    c.set(accel=(0.0, 0.0, G)).run(5)


def test_a_crash_is_an_emergency_at_once_with_the_peak_and_position() -> None:
    with car(tick_s=0.1) as c:
        c.drive(60).run(30)
        pulse(c, longitudinal=-4.0 * G, lateral=1.5 * G, seconds=0.2)
        (event,) = c.events_of("driving")
    assert event.severity is Severity.EMERGENCY and event.condition == "crash"
    assert event.features["peak_g"] == pytest.approx(4.27, abs=0.1)
    assert event.features["longitudinal_ms2"] < -3.5 * G and event.features["speed_kmh"] == 60.0
    assert event.position is not None


def test_harsh_driving_overspeed_and_idling_are_counted_not_raised() -> None:
    with car(start_ns=utc(2026, 1, 5, 7, 0)) as c:
        c.drive(80).run(30)
        pulse(c, longitudinal=3.0)  # harsh acceleration
        pulse(c, longitudinal=-3.0, seconds=3.0)  # one long harsh braking is one
        pulse(c, longitudinal=-2.0)  # firm, not harsh
        pulse(c, lateral=-3.6)  # harsh cornering (left)
        pulse(c, lateral=3.6)  # and right
        pulse(c, lateral=1.0 * G, seconds=1.0)  # a 1 g swerve: harsh cornering, far from a crash
        c.drive(140).run(60).drive(100).run(10).drive(150).run(10).drive(80)  # two overspeed episodes
        c.set(speed_kmh=0.0, rpm=800.0).gnss(speed_kmh=0.0).run(400)  # long idling
        c.set(speed_kmh=0.0, rpm=800.0).run(1)
        today = c.status()["detectors"]["driving"]["today"]
        assert c.alarms(Severity.WARNING) == []
        (line,) = [x for x in render(c.status(), c.clock.wall_ns()).splitlines() if x.startswith("detector")]
    assert "today: harsh_accel 1, harsh_brake 1, harsh_corner 3, overspeed 2" in line
    assert (today["harsh_accel"], today["harsh_brake"], today["harsh_corner"]) == (1, 1, 3)
    assert today["overspeed"] == 2 and today["overspeed_s"] == pytest.approx(70, abs=2)
    assert today["idle"] == 1 and today["idle_s"] == pytest.approx(401, abs=2)


def test_potholes_and_a_parked_car_shaken_by_wind_stay_quiet() -> None:
    with car(tick_s=0.1) as c:
        c.drive(50).run(10)
        for _ in range(10):  # potholes: big vertical spikes
            c.set(accel=(0.5, 0.3, 3.0 * G)).run(0.1)
            c.set(accel=(0.0, 0.0, G)).run(2)
        c.park().set(vibration_ms2=0.5).run(60)
        assert c.alarms(Severity.WARNING) == []
        assert c.status()["detectors"]["driving"]["today"]["harsh_brake"] == 0


def test_the_counters_roll_over_at_local_midnight_and_survive_a_restart() -> None:
    first = build_detector({"kind": "driving"})
    with ScenarioCar(detector_objects=[first], nmea=False, start_ns=utc(2026, 1, 5, 22, 50),
                     vehicle={"time_zone": "Europe/Zurich"}) as c:  # 23:50 local
        c.drive(60).run(5)
        pulse(c, longitudinal=-3.0)
        c.run(15 * 60, tick_s=10.0)  # past midnight
        pulse(c, longitudinal=-3.0)
        pulse(c, longitudinal=-3.0)
    state = first.state()
    assert state["yesterday"]["harsh_brake"] == 1 and state["yesterday"]["day"] == "2026-01-05"  # type: ignore[index]
    second = build_detector({"kind": "driving"})
    second.restore_state(first.saved_state() or {})
    assert second.state()["today"]["harsh_brake"] == 2  # type: ignore[index]


def test_a_silent_speed_or_engine_speed_stops_counting_overspeed_and_idling() -> None:
    with car() as c:
        c.drive(140).run(10)
        c.set(speed_kmh=None).gnss(speed_kmh=60.0).run(100)  # the CAN speed falls silent: GNSS counts
        c.set(speed_kmh=0.0, rpm=800.0).run(400)  # idling
        c.set(rpm=None).run(400)  # the engine ECU falls silent
        today = c.status()["detectors"]["driving"]["today"]
    assert today["overspeed"] == 1 and today["overspeed_s"] == pytest.approx(15, abs=2)
    assert today["idle"] == 1 and today["idle_s"] == pytest.approx(405, abs=2)


@pytest.mark.parametrize(("table", "message"), [
    ({"crash_g": 0.2}, "detectors.driving.crash_g"),
    ({"harsh_brake_ms2": 40.0}, "detectors.driving.harsh_brake_ms2"),
    ({"idle_s": -1.0}, "detectors.driving.idle_s"),
    ({"crash_g": 1.0, "harsh_corner_ms2": 12.0}, "detectors.driving.crash_g must be above"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [{"kind": "driving", **table}]})


def test_the_agent_puts_the_day_counters_in_its_status_yesterday_after_midnight() -> None:
    with ScenarioCar([{"kind": "driving"}], nmea=False, start_ns=utc(2026, 1, 5, 22, 50),
                     vehicle={"time_zone": "Europe/Zurich"}) as c:  # 23:50 local
        c.drive(60).run(5)
        pulse(c, longitudinal=-3.0)
        pulse(c, lateral=3.6)
        (today,) = c.agent.heartbeat().driving
        assert today == DrivingDay("2026-01-05", harsh_brake=1, harsh_corner=1)
        c.run(15 * 60, tick_s=10.0)  # past midnight
        pulse(c, longitudinal=3.0)
        heartbeat = c.agent.heartbeat()
    assert heartbeat.driving == (DrivingDay("2026-01-05", harsh_brake=1, harsh_corner=1),
                                 DrivingDay("2026-01-06", harsh_accel=1))
    assert protocol.decode(protocol.encode(heartbeat)).driving == heartbeat.driving  # type: ignore[union-attr]


def test_a_status_without_a_driving_detector_or_with_a_far_day_carries_no_counters() -> None:
    with ScenarioCar([{"kind": "battery"}], nmea=False) as c:
        c.drive(60).run(5)
        assert c.agent.heartbeat().driving == ()
    detector = build_detector({"kind": "driving"})
    with ScenarioCar(detector_objects=[detector], nmea=False, start_ns=utc(2026, 1, 5, 12)) as c:
        c.drive(60).run(5)
        detector.day = "2025-06-01"  # type: ignore[attr-defined]  # as if the clock had jumped
        heartbeat = c.agent.heartbeat()
    assert heartbeat.driving == () and 13 not in cbor2.loads(protocol.encode(heartbeat))[3]
