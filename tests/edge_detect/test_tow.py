"""Tow / moved while parked, through the real agent on a ManualClock (hil/scenario.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.agent.config import parse_config
from hil.scenario import ON, T0_NS, ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


def parked_and_armed(**kwargs: object) -> ScenarioCar:
    car = ScenarioCar([{"kind": "tow"}], nmea=False, **kwargs)  # type: ignore[arg-type]
    car.drive(40).run(120)
    car.park().run(310)
    assert car.status()["detectors"]["tow"]["armed"]
    return car


def test_tow_by_hook_lift_is_an_emergency_within_60_s_with_evidence_and_position() -> None:
    with parked_and_armed() as car:
        car.tilt(9.0, vibration_ms2=0.3)
        latency_s = car.run_until(lambda c: c.events_of("tow"), 120)
        (event,) = car.events_of("tow")
        car.gnss(speed_kmh=30.0).run(120)  # the truck drives off: still the same open event
        assert len(car.events_of("tow", transition=None)) == 1
        car.tilt(0.0, 0.02).drive(20).run(90)  # the owner gets it back and drives: cleared
        (cleared,) = car.events_of("tow", Transition.CLEARED)
    assert latency_s is not None and latency_s <= 60
    assert event.severity is Severity.EMERGENCY and event.condition == "tow"
    assert event.features["tilt_deg"] > 6.0 and event.features["ignition_on"] == 0.0
    assert event.position is not None and abs(event.position.lat_deg - 47.3769) < 0.01
    assert cleared.event_id == event.event_id and cleared.features["displacement_m"] > 500


def test_tow_seen_only_by_gnss_when_there_is_no_accelerometer() -> None:
    with ScenarioCar([{"kind": "tow"}], nmea=False) as car:
        car.set(accel=None).drive(40).run(60)
        car.park().run(310)
        car.gnss(speed_kmh=25.0)
        latency_s = car.run_until(lambda c: c.events_of("tow"), 120)
        (event,) = car.events_of("tow")
    assert latency_s is not None and latency_s <= 60
    assert event.features["gnss_speed_min_kmh"] >= 10.0


def test_flatbed_tow_short_ramp_tilt_then_level_transport() -> None:
    with parked_and_armed() as car:
        car.tilt(12.0, vibration_ms2=0.3).run(15)  # winched up the ramp: less than the grace
        car.tilt(0.5, vibration_ms2=0.1).run(5)  # level on the bed
        car.gnss(speed_kmh=45.0)
        latency_s = car.run_until(lambda c: c.events_of("tow"), 120)
        (event,) = car.events_of("tow")
    assert latency_s is not None and latency_s <= 60
    assert event.severity is Severity.EMERGENCY


def test_the_owner_getting_in_within_the_grace_cancels() -> None:
    with parked_and_armed() as car:
        car.tilt(7.0, vibration_ms2=1.0).run(12)  # door, seat, a heavy driver
        car.set(ignition=ON).run(5)
        car.tilt(0.0, 0.02).drive(30).run(120)
        assert car.events == []
        assert not car.status()["detectors"]["tow"]["armed"]


def test_a_ferry_is_not_an_alarm() -> None:
    with parked_and_armed() as car:
        car.set(vibration_ms2=0.08).gnss(speed_kmh=28.0).run(40 * 60, tick_s=2.0)
        assert car.alarms() == []
        level = car.events_of("tow", severity=Severity.WARNING)
    assert level and level[0].condition == "moved_level"


def test_a_car_park_lift_and_a_garage_without_gnss_are_quiet() -> None:
    with parked_and_armed() as car:
        car.gnss(quality=0, cn0=0)  # underground: no fix for hours
        for _ in range(3):  # the rotary lift moves the car: jolts, no tilt
            car.set(accel=(0.0, 0.0, 10.3)).run(2)
            car.set(accel=(0.0, 0.0, 9.81), vibration_ms2=0.15).run(30)
            car.set(accel=(0.0, 0.0, 9.3)).run(2)
            car.set(accel=(0.0, 0.0, 9.81), vibration_ms2=0.02).run(3600, tick_s=30.0)
        car.gnss(quality=1, cn0=40)
        lat = car.gnss_state.lat
        car.teleport(lat + 0.006, car.gnss_state.lon).run(4)  # a multipath fix 660 m off
        car.teleport(lat, car.gnss_state.lon).run(60)
        assert car.events == []


def test_not_armed_in_the_first_minutes_after_parking() -> None:
    with ScenarioCar([{"kind": "tow"}], nmea=False) as car:
        car.drive(40).run(60)
        car.park().run(120)
        assert not car.status()["detectors"]["tow"]["armed"]
        car.tilt(9.0, 0.3).run(60)
        assert car.events == []


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "tow", "tilt_deg": -1.0}, "detectors.tow.tilt_deg must be in"),
    ({"kind": "tow", "displacement_m": float("nan")}, "displacement_m must be in"),
    ({"kind": "tow", "arm_delay": 300}, "unknown option 'arm_delay'"),
    ({"kind": "tow", "speed_kmh": "fast"}, "speed_kmh must be float"),
])
def test_bad_tow_options_are_refused_at_load(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [table]})


def test_armed_while_the_bus_sleeps_after_saying_off() -> None:
    with parked_and_armed() as car:
        car.set(speed_kmh=None, rpm=None, ignition=None).run(3600, tick_s=30.0)  # the CAN sleeps
        assert car.status()["detectors"]["tow"]["armed"]
        car.set(vibration_ms2=0.08).gnss(speed_kmh=25.0).run(30 * 60, tick_s=2.0)  # a ferry
        assert car.alarms() == []
        car.gnss(speed_kmh=0.0).run(600)
        car.tilt(9.0, vibration_ms2=0.4)
        latency_s = car.run_until(lambda c: c.alarms(), 120)
        (event,) = car.alarms()
    assert latency_s is not None and latency_s <= 60 and event.condition == "tow"


# -- the arming across a reboot (the SoC booted from off by the MCU's wake) ---------------------

HOUR_NS = 3600 * 10**9


def saved_armed(state_dir: Path) -> Path:
    """Park, arm, and save the detectors' state as the agent does at the sleep moment."""
    with parked_and_armed(state_dir=state_dir) as car:
        car.agent.detection.save_detector_state()
    path = state_dir / "state" / "detector_state.json"
    assert json.loads(path.read_text())["tow"]["state"]["armed"] is True
    return path


def booted(state_dir: Path, after_ns: int = HOUR_NS) -> ScenarioCar:
    """A fresh agent (monotonic clock from scratch) on the same state dir, `after_ns` later."""
    return ScenarioCar([{"kind": "tow"}], nmea=False, state_dir=state_dir, start_ns=T0_NS + after_ns)


def test_an_armed_tow_detector_resumes_armed_after_a_boot_and_confirms_within_its_grace(
        tmp_path: Path) -> None:
    saved_armed(tmp_path)
    with booted(tmp_path) as car:
        car.park().tilt(9.0, vibration_ms2=0.3)  # towed while the SoC booted
        latency_s = car.run_until(lambda c: c.events_of("tow"), 120)
        state = car.status()["detectors"]["tow"]
        (event,) = car.events_of("tow")
    assert latency_s is not None and latency_s <= 30.0 + 5.0 + 3.0  # owner grace + tilt hold + ticks
    assert state["armed"] and state["resumed"]
    assert event.severity is Severity.EMERGENCY and event.features["tilt_deg"] > 6.0
    assert event.features["parked_s"] > 3000  # parked since before the reboot, an hour ago


def test_without_a_saved_arming_a_boot_learns_the_parked_state_afresh(tmp_path: Path) -> None:
    with booted(tmp_path) as car:
        car.park().tilt(9.0, vibration_ms2=0.3)
        assert car.run_until(lambda c: c.events_of("tow"), 120) is None
        assert not car.status()["detectors"]["tow"]["armed"]
        car.run(200)
        state = car.status()["detectors"]["tow"]
    assert state["armed"] and not state["resumed"]  # arm_delay_s (300 s) after the agent started


def _stale(path: Path) -> None:
    pass  # the boot comes 9 days later (resume_max_age_s is 8 days)


def _other_device(path: Path) -> None:
    data = json.loads(path.read_text())
    data["tow"]["state"]["device_id"] = "veh-other"
    path.write_text(json.dumps(data))


def _garbage(path: Path) -> None:
    data = json.loads(path.read_text())
    data["tow"]["state"]["reference"] = ["x", None]
    path.write_text(json.dumps(data))


def _from_the_future(path: Path) -> None:
    data = json.loads(path.read_text())
    data["tow"]["state"]["saved_wall_ns"] += 10 * HOUR_NS
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("damage", "after_ns", "reason"), [
    (_stale, 9 * 24 * HOUR_NS, "stale"), (_other_device, HOUR_NS, "another device"),
    (_garbage, HOUR_NS, "damaged"), (_from_the_future, HOUR_NS, "stale"),
])
def test_a_stale_foreign_or_damaged_saved_arming_is_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None], after_ns: int,
        reason: str) -> None:
    damage(saved_armed(tmp_path))
    with caplog.at_level(logging.WARNING, logger="lienwatch.detect"), booted(tmp_path, after_ns) as car:
        car.park().tilt(9.0, vibration_ms2=0.3)
        assert car.run_until(lambda c: c.events_of("tow"), 60) is None
        state = car.status()["detectors"]["tow"]
    assert not state["armed"] and not state["resumed"]
    assert any(f"saved arming ignored ({reason})" in r.getMessage() for r in caplog.records)
