"""Odometer fraud through the real agent: rollback, odometer vs GNSS, codes-cleared reset, mileage."""

from __future__ import annotations

import datetime as dt

import pytest

from edge.agent.config import parse_config
from edge.detect.registry import build_detector
from hil.scenario import OFF, ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity

DTC = "Vehicle.OBD.DistanceSinceDTCClear"
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


def car(**kwargs: object) -> ScenarioCar:
    return ScenarioCar([{"kind": "odometer"}], nmea=False, **kwargs)  # type: ignore[arg-type]


def odometer(c: ScenarioCar) -> float:
    assert c.state.odometer_m is not None
    return c.state.odometer_m


def test_an_odometer_going_back_is_an_alert_with_the_readings_and_position() -> None:
    with car() as c:
        c.drive(50).run(60)
        assert c.events == []
        c.set(odometer_m=odometer(c) - 5_000_000).run(2)
        (event,) = c.events_of("odometer")
    assert event.severity is Severity.ALERT and event.condition == "rollback"
    assert event.features["rollback_km"] == pytest.approx(5000.0, abs=2.0)
    assert event.features["odometer_km"] < event.features["highest_km"]
    assert event.position is not None and abs(event.position.lat_deg - 47.3769) < 0.1


def test_a_rollback_while_the_tracker_was_off_is_seen_after_a_restart() -> None:
    first = build_detector({"kind": "odometer"})
    with ScenarioCar(detector_objects=[first], nmea=False) as c:
        c.drive(50).run(30)
    second = build_detector({"kind": "odometer"})
    second.restore_state(first.saved_state() or {})
    with ScenarioCar(detector_objects=[second], nmea=False) as c:
        c.set(odometer_m=30_000_000.0).run(3)
        assert [e.condition for e in c.events_of("odometer")] == ["rollback"]


def test_an_odometer_short_of_gnss_over_a_trip_is_an_alert_at_the_trip_end() -> None:
    with car() as c:
        c.drive(90).run(5)
        stuck = odometer(c)
        for _ in range(600):  # 15 km by GNSS, the odometer blocked at 20 % of it
            c.state.odometer_m = stuck
            stuck += 90 / 3.6 * 0.2
            c.run(1)
        assert c.events == []  # judged when the trip ends
        c.park().run(3)
        (event,) = c.events_of("odometer")
    assert event.condition == "trip_divergence" and event.severity is Severity.ALERT
    assert event.features["gnss_trip_km"] == pytest.approx(15.0, rel=0.05)
    assert event.features["odometer_short_pct"] == pytest.approx(80.0, abs=2.0)


def test_normal_trips_tunnels_and_short_hops_stay_quiet() -> None:
    with car() as c:
        c.drive(90).run(600).park().run(60)  # 15 km, odometer and GNSS agree
        c.drive(90).run(300)
        c.gnss(quality=0).run(200)  # a tunnel: GNSS counts less than the odometer
        c.gnss(quality=1).run(100).park().run(60)
        c.drive(30)
        for _ in range(60):  # a 0.5 km hop with a stuck odometer is below min_trip_km
            c.state.odometer_m = odometer(c) - 30 / 3.6
            c.run(1)
        c.park().run(60)
        c.set(extra={DTC: 1200.0}).run(10).set(extra={DTC: 1201.0}).run(10)
        assert c.alarms(Severity.WARNING) == []


def test_distance_since_codes_cleared_resetting_is_an_alert() -> None:
    with car() as c:
        c.set(extra={DTC: 1834.0}).run(10)
        c.set(extra={DTC: 0.0}).run(3)
        (event,) = c.events_of("odometer")
    assert event.condition == "dtc_clear_reset"
    assert (event.features["before_km"], event.features["dtc_distance_km"]) == (1834.0, 0.0)


def _history(recent_km_per_day: float) -> dict[str, object]:
    today = dt.date(2026, 1, 1)
    days = {(today - dt.timedelta(days=age)).isoformat(): (recent_km_per_day if age < 30 else 30.0)
            for age in range(1, 95)}
    return {"max_odo_m": 42_000_000.0, "day_km": days}


@pytest.mark.parametrize(("km_per_day", "fires"), [(100.0, True), (45.0, False)])
def test_monthly_mileage_far_above_the_own_baseline(km_per_day: float, fires: bool) -> None:
    detector = build_detector({"kind": "odometer"})
    detector.restore_state(_history(km_per_day))
    with ScenarioCar(detector_objects=[detector], nmea=False) as c:
        c.run(5)
        events = c.events_of("odometer")
    assert [e.condition for e in events] == (["monthly_mileage"] if fires else [])
    if fires:
        assert events[0].features["baseline_km_30d"] == pytest.approx(900.0, rel=0.05)
        assert events[0].features["km_30d"] == pytest.approx(2900.0, rel=0.05)


def test_ignition_off_between_samples_is_not_a_trip() -> None:
    with car() as c:
        c.set(ignition=OFF).run(30)
        assert c.events == []


@pytest.mark.parametrize(("table", "message"), [
    ({"tolerance_pct": -1.0}, "detectors.odometer.tolerance_pct"),
    ({"baseline_days": 5}, "detectors.odometer.baseline_days"),
    ({"rollback_m": "far"}, "detectors.odometer.rollback_m must be float"),
    ({"rolback_m": 1.0}, "unknown option 'rolback_m'"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [{"kind": "odometer", **table}]})


def test_garbled_odometer_readings_neither_fire_nor_blind_it() -> None:
    with car() as c:
        c.set(odometer_m=float("nan")).run(3)
        c.set(odometer_m=-5.0).run(3)
        c.set(odometer_m=42_000_000.0).run(3)
        assert c.events == []
        c.set(odometer_m=41_000_000.0).run(3)
        assert [e.condition for e in c.events_of("odometer")] == ["rollback"]
