"""Risky places through the real agent: a 72 h stay, repeated visits, and the normal cases."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from edge.detect.registry import build_detector
from hil.scenario import ScenarioCar
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

MARKET = (47.4102, 8.5530)
PAWN = (47.3600, 8.5000)
HOME = (47.3769, 8.5417)
M_PER_DEG = 111_320.0
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}
VEHICLE = {"time_zone": "Europe/Zurich", "places": [
    {"name": "Automarkt Nord", "class": "used_car_market", "lat": MARKET[0], "lon": MARKET[1],
     "radius_m": 300.0},
    {"name": "Pfandhaus", "class": "pawn", "lat": PAWN[0], "lon": PAWN[1], "radius_m": 100.0},
    {"name": "Garage Meier", "class": "other", "lat": HOME[0], "lon": HOME[1], "radius_m": 200.0},
]}


def car(**options: object) -> ScenarioCar:
    return ScenarioCar([{"kind": "risky_places", **options}], vehicle=VEHICLE, nmea=False, tick_s=60.0)


def at(c: ScenarioCar, place: tuple[float, float], north_m: float = 0.0) -> ScenarioCar:
    return c.park().teleport(place[0] + north_m / M_PER_DEG, place[1])


def test_standing_72_hours_at_a_used_car_market_is_an_alert_with_the_stay() -> None:
    with car() as c:
        at(c, MARKET, 120.0).run(71 * 3600, tick_s=600.0)
        assert c.events_of("risky_places") == []
        c.run(3600 + 900)  # (the stay counts from the first fix, 10 min in)
        (event,) = c.events_of("risky_places")
        assert event.severity is Severity.ALERT and event.condition == "stay:Automarkt Nord"
        assert 72.0 <= event.features["stay_h"] < 72.1 and event.features["radius_m"] == 300.0
        assert event.position is not None and abs(event.position.lat_deg - MARKET[0]) < 0.01
        c.gnss(quality=0).run(6 * 3600, tick_s=600.0)  # in the hall, no GNSS: still there
        assert c.events_of("risky_places", Transition.CLEARED) == []
        at(c, HOME).gnss(quality=1).run(1800)  # home again: cleared
        assert len(c.events_of("risky_places", Transition.CLEARED)) == 1


def test_three_visits_to_pawn_shops_in_30_days_is_an_alert() -> None:
    with car() as c:
        for visit in range(3):
            at(c, HOME).run(2 * 86400, tick_s=1800.0)
            assert c.events_of("risky_places") == [], visit
            at(c, PAWN).run(20 * 60)
        (event,) = c.events_of("risky_places")
    assert event.condition == "visits:pawn" and event.features["visits"] == 3.0
    assert "Pfandhaus" in event.detail


def test_driving_past_parking_outside_jitter_at_the_edge_and_an_own_garage_stay_quiet() -> None:
    with car() as c:
        for _ in range(6):  # six drive-bys through the market, 5 min each
            at(c, MARKET).run(300)
            at(c, HOME).run(3600, tick_s=600.0)
        for _ in range(30):  # parked 20 min on the market's edge, GNSS jitter in and out
            at(c, MARKET, 290.0).run(60)
            at(c, MARKET, 330.0).run(60)
        at(c, (MARKET[0] + 500 / M_PER_DEG, MARKET[1])).run(100 * 3600, tick_s=1800.0)  # 500 m off
        at(c, HOME).run(200 * 3600, tick_s=1800.0)  # "other" class: the own garage
        assert c.alarms(Severity.WARNING) == []
        assert c.status()["detectors"]["risky_places"]["visits_in_window"] == 1  # the edge stay


def test_visits_and_stays_survive_a_restart() -> None:
    from edge.detect.registry import DetectorContext
    from edge.detect.vehicle import parse_vehicle

    context = DetectorContext(vehicle=parse_vehicle(VEHICLE))
    first = build_detector({"kind": "risky_places", "visits": 2}, context)
    with ScenarioCar(detector_objects=[first], vehicle=VEHICLE, nmea=False, tick_s=60.0) as c:
        at(c, PAWN).run(20 * 60)
        at(c, HOME).run(3600)
    second = build_detector({"kind": "risky_places", "visits": 2}, context)
    second.restore_state(first.saved_state() or {})
    with ScenarioCar(detector_objects=[second], vehicle=VEHICLE, nmea=False, tick_s=60.0,
                     start_ns=c.clock.wall_ns()) as c:
        at(c, PAWN).run(20 * 60)
        assert [e.condition for e in c.events_of("risky_places")] == ["visits:pawn"]


@pytest.mark.parametrize(("table", "message"), [
    ({"stay_h": 0.0}, "detectors.risky_places.stay_h"),
    ({"visits": 0}, "detectors.risky_places.visits"),
    ({"classes": ["casino"]}, "detectors.risky_places.classes"),
    ({"classes": "pawn"}, "detectors.risky_places.classes must be list"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [{"kind": "risky_places", **table}]})
