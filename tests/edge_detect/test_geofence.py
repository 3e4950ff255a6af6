"""Geofence through the real agent: the contract region, commanded circles, and the normal cases."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from edge.detect.geofence import border_distance_m
from hil.scenario import ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import AckStatus, ClearGeofence, Geofence, SetGeofence, Severity, Transition

REGION = [[47.0, 8.0], [47.0, 9.0], [47.7, 9.0], [47.7, 8.0]]
VEHICLE = {"time_zone": "Europe/Zurich", "contract_region": REGION}
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}
M_PER_DEG = 111_320.0


def car(**kwargs: object) -> ScenarioCar:
    return ScenarioCar([{"kind": "geofence"}], vehicle=VEHICLE, nmea=False, **kwargs)  # type: ignore[arg-type]


def test_border_distance_of_a_square() -> None:
    square = [(47.0, 8.0), (47.0, 9.0), (47.7, 9.0), (47.7, 8.0)]
    assert border_distance_m(square, 47.69, 8.5) == pytest.approx(0.01 * M_PER_DEG, rel=1e-3)
    assert border_distance_m(square, 47.8, 8.5) == pytest.approx(0.1 * M_PER_DEG, rel=1e-3)


def test_nearing_the_border_warns_and_leaving_escalates_the_same_event_to_an_alert() -> None:
    with car() as c:
        c.teleport(47.65, 8.5).drive(100, course_deg=0.0).run(60)  # 5.5 km from the northern border
        assert c.events == []
        c.run(150)  # within 2 km, for more than the 30 s debounce
        (warning,) = c.events_of("geofence")
        assert warning.severity is Severity.WARNING and warning.condition == "region"
        assert 0 < warning.features["border_m"] < 2000
        c.run(100)  # out, for more than 30 s
        (alert,) = c.events_of("geofence", Transition.ESCALATED)
    assert alert.event_id == warning.event_id and alert.severity is Severity.ALERT
    assert alert.features["outside_by_m"] > 0 and alert.position is not None
    assert alert.position.lat_deg > 47.7


def test_multipath_jumps_garages_and_driving_inside_stay_quiet() -> None:
    with car() as c:
        c.drive(80, course_deg=90.0).run(300)
        c.park().run(60)
        for _ in range(5):  # a 60 km multipath jump for 5 s, five times
            c.teleport(48.3, 8.5).run(5)
            c.teleport(47.3769, 8.55).run(120)
        c.gnss(quality=0).run(600)  # a garage without GNSS
        assert c.alarms(Severity.WARNING) == []


def test_a_commanded_circular_geofence_is_a_keep_in_area() -> None:
    with car() as c:
        ack = c.command(SetGeofence(Geofence(7, 47.3769, 8.5417, 3000.0)))
        assert ack is not None and ack.status is AckStatus.DONE
        c.drive(60, course_deg=90.0).run(170)  # 2.8 km east: in the fence's outer half (WARNING
        # raised after the 30 s debounce, queued with the next telemetry batch)
        (warning,) = c.events_of("geofence")
        assert warning.condition == "fence:7" and warning.severity is Severity.WARNING
        c.run(100)  # 4.5 km: outside
        (alert,) = c.events_of("geofence", Transition.ESCALATED)
        assert alert.severity is Severity.ALERT and alert.features["centre_m"] > 3000.0
        assert alert.features["radius_m"] == 3000.0
        c.command(ClearGeofence(7))
        c.park().run(200)
        assert c.events_of("geofence", Transition.CLEARED)


@pytest.mark.parametrize(("table", "message"), [
    ({"border_warning_m": -5.0}, "detectors.geofence.border_warning_m"),
    ({"max_hdop": 0.0}, "detectors.geofence.max_hdop"),
    ({"confirm_s": True}, "detectors.geofence.confirm_s must be float"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "vehicle": VEHICLE, "detectors": [{"kind": "geofence", **table}]})
