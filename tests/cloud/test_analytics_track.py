"""Track playback: simplification within its tolerance, no-fix stretches, events on the track."""

from __future__ import annotations

import itertools
import json
import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.simplify import simplify
from cloud.analytics.track import playback, to_json
from cloud.store.db import Conn
from cloud.store.partitions import PartitionKeeper
from tests.cloud.conftest import register
from tests.cloud.seed import T0, Fix, Scenario, write, write_fixes

R = 6_371_008.8


def _haversine(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R * np.arcsin(np.sqrt(h))


def _unit(lat: float, lon: float) -> Any:
    la, lo = math.radians(lat), math.radians(lon)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


def _deviation_oracle(lat: Any, lon: Any, kept: Any) -> float:
    """Max distance of any point from the kept polyline, by sampling each great-circle arc
    densely (independent of the implementation's cross-track formula; slightly pessimistic)."""
    worst = 0.0
    idx = np.flatnonzero(kept)
    for a, b in itertools.pairwise(idx):
        if b - a < 2:
            continue
        pa, pb = _unit(lat[a], lon[a]), _unit(lat[b], lon[b])
        length = _haversine(lat[a:a + 1], lon[a:a + 1], lat[b:b + 1], lon[b:b + 1])[0]
        f = np.linspace(0, 1, max(2, int(length / 0.2) + 2))[:, None]
        samples = pa * (1 - f) + pb * f  # chord samples, normalised back onto the sphere
        samples /= np.linalg.norm(samples, axis=1)[:, None]
        s_lat = np.degrees(np.arcsin(samples[:, 2]))
        s_lon = np.degrees(np.arctan2(samples[:, 1], samples[:, 0]))
        for i in range(a + 1, b):
            worst = max(worst, float(_haversine(lat[i], lon[i], s_lat, s_lon).min()))
    return worst


@pytest.mark.parametrize("tolerance_m", [2.0, 15.0, 80.0])
def test_simplification_stays_within_its_tolerance(tolerance_m: float) -> None:
    rng = np.random.default_rng(7)
    n = 1500
    heading = np.cumsum(rng.normal(0, 0.3, n))
    step = np.abs(rng.normal(8, 6, n))  # metres per fix, parked jitter to fast driving
    lat = 48.1 + np.cumsum(step * np.cos(heading)) / 111_195
    lon = 11.5 + np.cumsum(step * np.sin(heading)) / (111_195 * math.cos(math.radians(48.1)))
    kept = simplify(lat, lon, tolerance_m)
    assert kept[0] and kept[-1]
    assert kept.sum() < n / 2
    assert _deviation_oracle(lat, lon, kept) <= tolerance_m + 0.15  # the sampling's slack


def test_simplification_keeps_forced_points_and_zero_tolerance_keeps_corners() -> None:
    lat = np.array([0.0, 0.0, 0.0, 0.001, 0.002, 0.002])
    lon = np.array([0.0, 0.001, 0.002, 0.002, 0.002, 0.003])
    forced = np.zeros(6, dtype=bool)
    forced[1] = True
    assert simplify(lat, lon, 1.0).tolist() == [True, False, True, False, True, True]
    assert simplify(lat, lon, 1.0, forced).tolist() == [True, True, True, False, True, True]
    assert simplify(lat, lon, 1e6).tolist() == [True, False, False, False, False, True]


def test_playback_geojson_with_simplification(db: Conn) -> None:
    register(db, "gw-play")
    s = Scenario(T0, 48.1, 11.5).park(600).drive_north(600, 36).park(600)
    write(db, "gw-play", s)
    raw = playback(db, "gw-play", T0, T0 + timedelta(hours=1))
    line = raw["features"][0]
    assert raw["type"] == "FeatureCollection" and line["geometry"]["type"] == "LineString"
    assert len(line["geometry"]["coordinates"]) == len(s.fixes) == raw["properties"]["fixes"]
    points = [f for f in raw["features"] if f["properties"]["kind"] == "fix"]
    assert points[0]["properties"] == {"kind": "fix", "time": "2026-03-02T00:00:00Z", "speed_kmh": 0.0}
    assert points[60]["properties"]["speed_kmh"] == 36.0
    assert points[0]["geometry"]["coordinates"] == [11.5, 48.1]  # longitude first (RFC 7946)
    small = playback(db, "gw-play", T0, T0 + timedelta(hours=1), tolerance_m=5)
    coords = small["features"][0]["geometry"]["coordinates"]
    # A straight drive between two parked spells: the corners and little else survive.
    assert 2 <= len(coords) <= 6 and small["properties"]["points"] == len(coords)
    assert coords[0] == [11.5, 48.1] and small["bbox"][1] == 48.1
    assert json.loads(to_json(small)) == small


def test_no_fix_stretch_is_marked_at_the_last_known_position(db: Conn) -> None:
    register(db, "gw-nofix")
    s = Scenario(T0, 48.1, 11.5).drive_north(300, 36)
    last_known = (s.fixes[-1].lat, s.fixes[-1].lon)
    fixes = list(s.fixes)
    t = s.t
    fixes += [Fix(t + timedelta(seconds=10 * i), 0.0, 0.0, None, fix_type=0) for i in range(30)]  # junk
    s.t = t + timedelta(seconds=300)
    s.fixes = []
    s.drive_north(300, 36)
    fixes += s.fixes
    write_fixes(db, "gw-nofix", fixes)
    got = playback(db, "gw-nofix", T0, T0 + timedelta(hours=1), tolerance_m=50)
    gaps = [f for f in got["features"] if f["properties"]["kind"] == "no_fix"]
    assert len(gaps) == 1 and got["properties"]["no_fix_stretches"] == 1
    gap = gaps[0]
    assert gap["geometry"]["coordinates"] == [round(last_known[1], 6), round(last_known[0], 6)]
    assert gap["properties"]["position"] == "last_known" and gap["properties"]["rows"] == 30
    assert gap["properties"]["from"] == "2026-03-02T00:05:00Z"
    assert gap["properties"]["to"] == "2026-03-02T00:10:00Z" and gap["properties"]["duration_s"] == 300
    line = got["features"][0]["geometry"]["coordinates"]
    assert [0.0, 0.0] not in line
    # The fixes on both sides of the stretch are vertices even though the drive is straight.
    assert [round(last_known[1], 6), round(last_known[0], 6)] in line and len(line) >= 4


def test_events_along_the_track(db: Conn) -> None:
    register(db, "gw-ev")
    s = Scenario(T0, 48.1, 11.5).park(600)
    write(db, "gw-ev", s)
    PartitionKeeper().ensure(db, "events", T0.date(), T0.date())
    PartitionKeeper().ensure(db, "event_lifecycle", T0.date(), T0.date())
    for seq, (minute, lat) in enumerate(((5, None), (7, 47.0))):
        db.execute("INSERT INTO events (device_id, time, boot_id, seq, event_id, detector, severity, "
                   "lat_deg, lon_deg, clock_quality, received_at) "
                   "VALUES ('gw-ev', %s, 1, %s, %s, 'tow', 'ALERT', %s, %s, 3, now())",
                   (T0 + timedelta(minutes=minute), seq, seq + 10, lat, None if lat is None else 8.0))
    plain = playback(db, "gw-ev", T0, T0 + timedelta(hours=1))
    assert not [f for f in plain["features"] if f["properties"]["kind"] == "event"]
    got = playback(db, "gw-ev", T0, T0 + timedelta(hours=1), events=True)
    events = [f for f in got["features"] if f["properties"]["kind"] == "event"]
    assert [e["properties"]["position"] for e in events] == ["track", "reported"]
    assert events[0]["geometry"]["coordinates"] == [11.5, 48.1]
    assert events[1]["geometry"]["coordinates"] == [8.0, 47.0]
    assert events[0]["properties"]["event_id"] == 10 and events[0]["properties"]["detector"] == "tow"


def test_empty_track_and_bad_parameters(db: Conn) -> None:
    got = playback(db, "gw-none", T0, T0 + timedelta(days=1))
    assert got["features"] == [] and got["properties"]["fixes"] == 0
    for bad in (-1.0, float("inf"), float("nan"), 1e9):
        with pytest.raises(AnalyticsError, match="tolerance_m"):
            playback(db, "gw-none", T0, T0 + timedelta(days=1), tolerance_m=bad)
    with pytest.raises(AnalyticsError):
        playback(db, "gw-none", T0 + timedelta(days=1), T0)
