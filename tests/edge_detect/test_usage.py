"""Usage change through the real agent: robust z-scores and CUSUM against the own 30-day baseline."""

from __future__ import annotations

from pathlib import Path
from statistics import median

import pytest

from edge.agent.config import parse_config
from edge.detect.registry import build_detector
from edge.detect.usage import robust_z
from hil.scenario import ScenarioCar, utc
from lienwatch.errors import ConfigError
from protocol.messages import Severity, Transition

MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}
ZURICH = {"time_zone": "Europe/Zurich"}
START = utc(2026, 1, 20, 23, 0)  # local midnight, 2026-01-21 in Zurich


def baseline(days: int = 20) -> dict[str, object]:
    """The vehicle's own past: commuting ~40 km a day, two trips, two places, no night driving."""
    history = [{"km": 38.0 + (d % 5), "night_min": 0.0 if d % 7 else 12.0, "trips": 2.0, "places": 2.0}
               for d in range(days)]
    return {"history": history, "day": "2026-01-20", "today": history[-1]}


def car(state: dict[str, object] | None = None, **kwargs: object) -> ScenarioCar:
    detector = build_detector({"kind": "usage"})
    if state is not None:
        detector.restore_state(state)
    return ScenarioCar(detector_objects=[detector], vehicle=ZURICH, nmea=False, start_ns=START,
                       **kwargs)  # type: ignore[arg-type]


def day(c: ScenarioCar, *, night_drive_min: int = 0, commute_km: float = 20.0) -> None:
    """One local day from midnight: an optional night drive at 01:00, a commute there and back."""
    c.park().run(3600, tick_s=600.0)
    if night_drive_min:
        c.drive(60).run(night_drive_min * 60, tick_s=30.0).park()
    c.run(6 * 3600 - night_drive_min * 60, tick_s=600.0)
    for _ in range(2):
        c.drive(60).run(commute_km * 60, tick_s=30.0).park().run(3600, tick_s=600.0)
    c.run(24 * 3600 - 7 * 3600 - 2 * (commute_km * 60 + 3600), tick_s=600.0)


def test_robust_z_uses_median_and_mad_with_a_floor() -> None:
    history = [10.0, 11.0, 12.0, 13.0, 100.0]  # one outlier barely moves it
    assert median(history) == 12.0
    assert robust_z(20.0, history, 0.1) == pytest.approx(8.0 / (1.4826 * 1.0))
    assert robust_z(20.0, [5.0] * 10, 2.0) == pytest.approx(15.0 / (1.4826 * 2.0))  # MAD 0 → floor


def test_a_car_suddenly_driven_every_night_warns_then_alerts_on_the_same_event() -> None:
    with car(baseline()) as c:
        day(c, night_drive_min=90)
        day(c, night_drive_min=90)  # judged at midnight: the first night was unusual
        (warning,) = c.events_of("usage")
        assert warning.severity is Severity.WARNING and warning.condition == "usage"
        assert warning.features["z_night_min"] >= 4.0 and warning.features["yesterday_night_min"] >= 85
        day(c, night_drive_min=90)
        day(c, night_drive_min=90)
        (alert,) = c.events_of("usage", Transition.ESCALATED)
        assert alert.severity is Severity.ALERT and alert.event_id == warning.event_id
        assert alert.features["unusual_days"] == 3.0 and alert.position is not None
        for _ in range(2):
            day(c)
        assert c.events_of("usage", Transition.CLEARED)


def test_usual_days_a_holiday_trip_and_a_young_baseline_stay_quiet() -> None:
    with car(baseline()) as c:
        day(c)
        day(c, commute_km=50.0)  # a long day out: 100 km instead of 40
        day(c, night_drive_min=25)  # home late once
        day(c)
        assert c.alarms(Severity.WARNING) == []
    with car(baseline(days=5)) as c:  # five days of history: nothing is judged yet
        day(c, night_drive_min=120)
        day(c, night_drive_min=120)
        assert c.events == []


def test_the_baseline_persists_in_the_state_dir(tmp_path: Path) -> None:
    with car(baseline(), state_dir=tmp_path) as c:
        day(c)
        c.agent.detection.save_detector_state()
        before = c.status()["detectors"]["usage"]["baseline_days"]
    fresh = build_detector({"kind": "usage"})
    with ScenarioCar(detector_objects=[fresh], vehicle=ZURICH, nmea=False, start_ns=c.clock.wall_ns(),
                     state_dir=tmp_path) as c2:
        assert c2.status()["detectors"]["usage"]["baseline_days"] == before >= 21


@pytest.mark.parametrize(("table", "message"), [
    ({"z_threshold": 0.0}, "detectors.usage.z_threshold"),
    ({"baseline_days": 200}, "detectors.usage.baseline_days"),
    ({"min_baseline_days": 40}, "detectors.usage.min_baseline_days"),
    ({"night_start": "late"}, "detectors.usage.night_start"),
])
def test_bad_options_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "detectors": [{"kind": "usage", **table}]})
