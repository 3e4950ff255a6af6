"""The detection framework through the real agent: features, lifecycle, caps, config, persistence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from cython_ext import spec as sp
from edge.agent.config import parse_config
from edge.detect.base import Detector, Finding, Observation
from edge.detect.features import FeatureBank, FeatureRequest, PositionRequest
from edge.detect.policy import Policy
from edge.detect.registry import DetectorSpec, build_detector, register_detector
from edge.detect.vehicle import GeofenceStore, parse_vehicle, point_in_polygon
from edge.options import Option
from edge.sources.base import Sample
from hil.scenario import ScenarioCar
from lienwatch.errors import ConfigError
from protocol.catalog import default_catalog
from protocol.messages import Geofence, Severity, Transition

SUPPLY = "Vehicle.LowVoltageBattery.CurrentVoltage"
LOW = FeatureRequest(SUPPLY, sp.Min(), window=64, window_s=5.0)
MEAN = FeatureRequest(SUPPLY, sp.Mean(), window=64, window_s=5.0)
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


class LowSupply(Detector):
    """A test double: ALERT while the 5 s minimum of the supply is below 11 V, EMERGENCY below 6 V."""

    kind = "low-supply-test"
    features = (LOW, MEAN)

    def observe(self, observation: Observation) -> Sequence[Finding]:
        low = observation.feature(LOW)
        if not low < 11.0:
            return ()
        severity = Severity.EMERGENCY if low < 6.0 else Severity.ALERT
        return (Finding(self.name, severity, observation.wall_ns,
                        {LOW.name: low, MEAN.name: observation.feature(MEAN)}, f"supply {low:.2f} V",
                        observation.position),)


def low_car(policy: Policy | None = None, **kwargs: object) -> ScenarioCar:
    detector = LowSupply("low")
    detector.policy = policy or Policy()
    return ScenarioCar(detector_objects=[detector], nmea=False, **kwargs)  # type: ignore[arg-type]


def test_raised_escalated_cleared_keep_one_event_id_with_evidence_and_position() -> None:
    with low_car(Policy(clear_s=10.0)) as car:
        car.run(10)
        car.set(supply_v=10.0).run(8)
        car.set(supply_v=4.0).run(8)
        car.set(supply_v=12.6).run(30)
        raised, escalated, cleared = car.events
    assert [e.transition for e in (raised, escalated, cleared)] == [
        Transition.RAISED, Transition.ESCALATED, Transition.CLEARED]
    assert raised.event_id == escalated.event_id == cleared.event_id
    assert (raised.severity, escalated.severity) == (Severity.ALERT, Severity.EMERGENCY)
    assert raised.features["CurrentVoltage.min"] == 10.0
    assert escalated.features["CurrentVoltage.min"] == 4.0 and escalated.raised_ns == raised.time_ns
    assert raised.position is not None and abs(raised.position.lat_deg - 47.3769) < 1e-6
    # cleared once the 5 s window is clean and 10 s of hysteresis passed (not before)
    assert cleared.time_ns - escalated.time_ns >= 10 * 10**9
    assert cleared.raised_ns == raised.time_ns


def test_a_condition_that_holds_for_hours_is_one_event() -> None:
    with low_car() as car:
        car.set(supply_v=10.0).run(3 * 3600, tick_s=5.0)
        assert len(car.events) == 1
        state = car.status()["detectors"]["low"]
    assert state["raised"] == 1 and len(state["open_events"]) == 1
    assert state["open_events"][0]["severity"] == "ALERT"


def test_debounce_ignores_a_short_dip() -> None:
    with low_car(Policy(debounce_s=6.0)) as car:
        car.run(10)
        car.set(supply_v=10.0).run(1)  # one low sample: the 5 s minimum is low for 5 s
        car.set(supply_v=12.6).run(30)
        assert car.events == []
        car.set(supply_v=10.0).run(6)
        assert car.events == []
        car.run(1)
        assert len(car.events) == 1


def test_cooldown_and_hourly_cap_hold_back_floods_but_not_emergencies() -> None:
    with low_car(Policy(clear_s=1.0, cooldown_s=60.0, max_events_per_hour=2)) as car:
        for _ in range(6):  # flapping every 8 s: raised once, then the cooldown holds it
            car.set(supply_v=10.0).run(2)
            car.set(supply_v=12.6).run(6)
        assert len(car.events_of("low")) == 1
        for _ in range(6):  # flapping every 90 s: the cap allows two raises an hour
            car.set(supply_v=10.0).run(2)
            car.set(supply_v=12.6).run(88)
        assert len(car.events_of("low")) == 2
        car.set(supply_v=4.0).run(3)  # an EMERGENCY goes despite the cap
        assert len(car.events_of("low", severity=Severity.EMERGENCY)) == 1
        suppressed = car.status()["detectors"]["low"]["suppressed"]
    assert suppressed["cooldown"] > 0 and suppressed["capped"] > 0


def test_warnings_ride_the_next_telemetry_batch_emergencies_go_at_once() -> None:
    class Warn(LowSupply):
        def observe(self, observation: Observation) -> Sequence[Finding]:
            return [Finding(f.detector, Severity.WARNING, f.time_ns, f.features, condition="warn")
                    for f in super().observe(observation)] + list(super().observe(observation))

    with ScenarioCar(detector_objects=[Warn("low")], nmea=False, batch_interval_s=20.0) as car:
        car.run(25)  # a batch has just gone
        car.set(supply_v=4.0).run(1)
        assert [e.severity for e in car.events] == [Severity.EMERGENCY]
        assert car.status()["held_warnings"] == 1
        car.run(25)
        assert sorted(e.severity for e in car.events) == [Severity.WARNING, Severity.EMERGENCY]
        assert car.status()["held_warnings"] == 0


def test_features_are_shared_and_variants_get_their_own_set() -> None:
    crossings_a = FeatureRequest(SUPPLY, sp.Crossings(11.0, 12.0), window=64)
    crossings_b = FeatureRequest(SUPPLY, sp.Crossings(5.0, 6.0), window=64)
    mean = FeatureRequest(SUPPLY, sp.Mean(), window=64)
    bank = FeatureBank([crossings_a, mean, crossings_b, mean, PositionRequest("dwell", radius_m=30.0)])
    assert len(bank) == 3  # {crossings 11/12, mean}, {crossings 5/6}, the dwell
    sid = default_catalog().id_of(SUPPLY)
    for i, volts in enumerate([12.5, 10.5, 12.5, 4.0, 12.5]):
        bank.push_samples([Sample(i * 10**9, sid, volts)])
    assert bank.value(crossings_a) == 4 and bank.value(crossings_b) == 2
    assert bank.value(mean) == pytest.approx(52.0 / 5)
    assert math.isnan(bank.value(PositionRequest("dwell", radius_m=30.0)))
    bank.push_position(0, 47.0, 8.0)
    bank.push_position(60 * 10**9, 47.0001, 8.0)
    assert bank.value(PositionRequest("dwell", radius_m=30.0)) == pytest.approx(60.0)


def test_a_feature_of_an_unknown_signal_or_bad_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not in the signal catalog"):
        FeatureBank([FeatureRequest("Vehicle.Nope", sp.Mean())])
    with pytest.raises(ConfigError, match="window"):
        FeatureBank([FeatureRequest(SUPPLY, sp.Mean(), window=0)])
    with pytest.raises(ConfigError, match="radius_m"):
        FeatureBank([PositionRequest("dwell", radius_m=-1.0)])


def test_open_events_continue_after_a_restart_and_clear_when_the_condition_is_gone(tmp_path: Path) -> None:
    with low_car(Policy(clear_s=10.0), state_dir=tmp_path) as car:
        car.set(supply_v=10.0).run(5)
        (raised,) = car.events
        car.agent.shutdown(flush_timeout_s=0)
    with low_car(Policy(clear_s=10.0), state_dir=tmp_path) as car:  # still low: the same event
        car.set(supply_v=4.0).run(5)
        (escalated,) = car.events
        car.agent.shutdown(flush_timeout_s=0)
    assert escalated.transition is Transition.ESCALATED and escalated.event_id == raised.event_id
    with low_car(Policy(clear_s=10.0), state_dir=tmp_path) as car:  # back to normal: cleared
        car.run(15)
        (cleared,) = car.events
    assert cleared.transition is Transition.CLEARED and cleared.event_id == raised.event_id


class Baseline(Detector):
    """A test double keeping a counter across restarts."""

    kind = "baseline-test"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ticks = 0

    def observe(self, observation: Observation) -> Sequence[Finding]:
        self.ticks += 1
        return ()

    def saved_state(self) -> dict[str, int]:
        return {"ticks": self.ticks}

    def restore_state(self, data: object) -> None:
        assert isinstance(data, dict)
        self.ticks = int(data["ticks"])


def test_detector_baselines_persist_in_the_state_dir(tmp_path: Path) -> None:
    with ScenarioCar(detector_objects=[Baseline("b")], nmea=False, state_dir=tmp_path) as car:
        car.run(30)
        car.agent.shutdown(flush_timeout_s=0)
    again = Baseline("b")
    with ScenarioCar(detector_objects=[again], nmea=False, state_dir=tmp_path) as car:
        assert again.ticks == 30
        (tmp_path / "state/detector_state.json").write_text("{not json")
    broken = Baseline("b")
    with ScenarioCar(detector_objects=[broken], nmea=False, state_dir=tmp_path):
        assert broken.ticks == 0  # damaged state: start afresh, no crash


class LocalNight(Detector):
    kind = "night-test"

    def observe(self, observation: Observation) -> Sequence[Finding]:
        hour = observation.local_time.hour
        if hour >= 22 or hour < 6:
            return (Finding(self.name, Severity.WARNING, observation.wall_ns, {"hour": hour}),)
        return ()


def test_local_time_follows_the_vehicle_time_zone() -> None:
    # 2026-01-01 20:30 UTC = 21:30 in Zurich (UTC+1): night starts at 21:00 UTC
    start = 1_767_299_400 * 10**9
    with ScenarioCar(detector_objects=[LocalNight("night")], nmea=False, start_ns=start,
                     vehicle={"time_zone": "Europe/Zurich"}) as car:
        car.run(29 * 60, tick_s=60.0)
        assert car.events == []
        car.run(11 * 60, tick_s=60.0)  # the warning rides the next batch (at most 30 s later)
        (raised,) = car.events_of("night")
    assert raised.time_ns >= start + 30 * 60 * 10**9
    assert raised.features["hour"] == 22


def test_vehicle_table_parses_and_refuses_bad_keys_and_values() -> None:
    vehicle = parse_vehicle({
        "vin": "wvwzzz1jzxw000001", "time_zone": "Europe/Zurich",
        "contract_region": [[47.0, 8.0], [47.0, 9.0], [48.0, 9.0], [48.0, 8.0]],
        "places": [{"name": "Autohof", "class": "used_car_market", "lat": 47.41, "lon": 8.55,
                    "radius_m": 300}]})
    assert vehicle.vin == "WVWZZZ1JZXW000001" and vehicle.places[0].radius_m == 300.0
    assert vehicle.in_contract_region(47.5, 8.5) is True
    assert vehicle.in_contract_region(46.9, 8.5) is False
    assert parse_vehicle(None).in_contract_region(0, 0) is None
    bad = [
        ({"colour": "red"}, "vehicle: unknown key 'colour'"),
        ({"time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"time_zone": 3}, "vehicle.time_zone must be"),
        ({"vin": "not a vin!"}, "vehicle.vin"),
        ({"contract_region": [[47, 8], [47, 9]]}, "at least 3"),
        ({"contract_region": [[47, 8], [47, 9], [95, 9]]}, r"contract_region\[2\] latitude"),
        ({"contract_region": [[47, 8], [47, 9], "x"]}, r"contract_region\[2\] must be \[lat, lon\]"),
        ({"places": [{"name": "x", "class": "casino", "lat": 1, "lon": 1, "radius_m": 5}]},
         "class must be one of"),
        ({"places": [{"name": "x", "class": "pawn", "lat": 1, "lon": 1}]},
         r"places\[0\].radius_m is required"),
        ({"places": [{"name": "x", "class": "pawn", "lat": 1, "lon": 1, "radius_m": float("nan")}]},
         "radius_m must be a number"),
        ({"places": [{"name": "x", "class": "pawn", "lat": 1, "lon": 1, "radius_m": 5, "r": 1}]},
         "unknown key 'r'"),
        ({"places": "pawn"}, "array of tables"),
    ]
    for table, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config({**MINIMAL, "vehicle": table})


def test_point_in_polygon_handles_concave_regions() -> None:
    u_shape = [(0.0, 0.0), (0.0, 3.0), (3.0, 3.0), (3.0, 2.0), (1.0, 2.0), (1.0, 1.0), (3.0, 1.0), (3.0, 0.0)]
    assert point_in_polygon(u_shape, 0.5, 1.5)
    assert not point_in_polygon(u_shape, 2.0, 1.5)  # in the notch
    assert point_in_polygon(u_shape, 2.0, 2.5)


SPEC = DetectorSpec("framework-test", "a detector for the framework tests",
                    (Option("limit_v", float, 11.0, "alarm below this"),),
                    lambda name, options, context: LowSupply(name), Policy(cooldown_s=42.0),
                    check=lambda options: None if options["limit_v"] > 0 else (_ for _ in ()).throw(
                        ConfigError("detectors.framework-test.limit_v must be > 0")))
register_detector(SPEC)


def test_detector_tables_are_checked_at_load_naming_the_bad_key() -> None:
    config = parse_config({**MINIMAL, "detectors": [{"kind": "framework-test", "clear_s": 5}]})
    detector = build_detector(config.detectors[0])
    assert detector.policy == Policy(clear_s=5.0, cooldown_s=42.0)
    bad = [
        ({"kind": "framework-test", "limt_v": 1.0}, "unknown option 'limt_v'"),
        ({"kind": "framework-test", "limit_v": "low"}, "limit_v must be float"),
        ({"kind": "framework-test", "limit_v": -1.0}, "limit_v must be > 0"),
        ({"kind": "framework-test", "clear_s": -1.0}, "clear_s must be in"),
        ({"kind": "framework-test", "max_events_per_hour": 0}, "max_events_per_hour must be in"),
        ({"kind": "framework-test", "latched": 1}, "latched must be bool"),
        ({"kind": "no-such-detector"}, "unknown detector kind 'no-such-detector'"),
        ({"name": "x"}, "needs kind"),
    ]
    for table, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config({**MINIMAL, "detectors": [table]})
    with pytest.raises(ConfigError, match="names must be unique"):
        parse_config({**MINIMAL, "detectors": [{"kind": "framework-test"}, {"kind": "framework-test"}]})


def test_geofences_from_commands_persist(tmp_path: Path) -> None:
    store = GeofenceStore(tmp_path / "geofences.json")
    store.set(Geofence(3, 47.0, 8.0, 250.0))
    store.set(Geofence(4, 46.0, 7.0, 50.0))
    assert store.clear(4) == 1 and store.clear(99) == 0
    assert GeofenceStore(tmp_path / "geofences.json").fences == {3: Geofence(3, 47.0, 8.0, 250.0)}
    (tmp_path / "geofences.json").write_text("[]")
    assert GeofenceStore(tmp_path / "geofences.json").fences == {}  # damaged: empty, logged


class Raises(Detector):
    kind = "raises-test"

    def observe(self, observation: Observation) -> Sequence[Finding]:
        raise RuntimeError("bug")

    def state(self) -> dict[str, object]:
        raise RuntimeError("bug in state")


def test_a_broken_detector_is_counted_and_the_others_still_run() -> None:
    with ScenarioCar(detector_objects=[Raises("bad"), LowSupply("low")], nmea=False) as car:
        car.set(supply_v=10.0).run(3)
        assert len(car.events_of("low")) == 1
        detectors = car.status()["detectors"]
    assert detectors["bad"]["errors"] == 3 and "state_error" in detectors["bad"]
    assert car.agent.errors["detector_errors"] == {"bad": 3}


def test_edge_status_shows_each_detector_open_events_and_last_fired() -> None:
    from edge.agent.status import render

    with low_car() as car:
        car.set(supply_v=4.0).run(3)
        status = car.status()
        text = render(status, car.clock.wall_ns() + 10 * 10**9)
    (line,) = [x for x in text.splitlines() if x.startswith("detector")]
    assert "low" in line and "EMERGENCY" in line and "last fired 12 s ago" in line


def test_the_example_config_vehicle_and_detectors_validate() -> None:
    from edge.agent.config import load_config
    from hil.services import REPO_ROOT

    config = load_config(REPO_ROOT / "deploy/agent.example.toml")
    assert config.vehicle.time_zone == "Europe/Zurich" and config.vehicle.places
    assert config.vehicle.in_contract_region(47.37, 8.54)  # Zurich is inside the example region
    for table in config.detectors:
        build_detector(table)


def test_an_operator_clears_an_open_event_by_signed_command() -> None:
    from protocol.messages import AckStatus, ClearEvent

    with low_car(Policy(cooldown_s=600.0)) as car:
        car.set(supply_v=10.0).run(5)
        (raised,) = car.events
        ack = car.command(ClearEvent(raised.event_id))
        assert ack is not None and ack.status is AckStatus.DONE
        (cleared,) = car.events_of("low", Transition.CLEARED)
        car.run(60)  # still low, but cleared by the operator: the cooldown holds it back
        assert len(car.events) == 2
        again = car.command(ClearEvent(raised.event_id))
    assert cleared.event_id == raised.event_id and "cleared by command" in cleared.detail
    assert again is not None and again.status is AckStatus.FAILED and "no open event" in again.detail


@pytest.mark.parametrize("content", [
    "{not json", "[]", '{"open": 3}', '{"open": [3]}',
    '{"open": [{"detector": "low", "condition": "", "event_id": "x", "raised_ns": 1, "severity": 2}]}',
    '{"open": [{"detector": "low", "condition": "", "event_id": 5, "raised_ns": 1, "severity": 9}]}',
])
def test_a_damaged_open_events_file_never_stops_the_agent(tmp_path: Path, content: str) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state/open_events.json").write_text(content)
    with low_car(state_dir=tmp_path) as car:
        car.set(supply_v=10.0).run(3)
        (event,) = car.events
    assert event.transition is Transition.RAISED and not car.agent.errors
