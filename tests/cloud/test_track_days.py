"""Packed tracks (cloud/store/track_days.py): stored significance = live Douglas-Peucker, and a
track answers the same whether its days are packed, dirty or not packed yet."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cloud.analytics.geo import segment_distance_m, unit_vectors
from cloud.analytics.simplify import CUT_EVERY, significance, simplify
from cloud.analytics.track import fetch_fixes, playback, to_json
from cloud.store import summaries, track_days
from cloud.store.db import Conn
from cloud.store.errors import StoreError
from cloud.store.partitions import PartitionKeeper
from tests.cloud.conftest import register
from tests.cloud.seed import T0, Fix, Scenario, write_fixes

Floats = npt.NDArray[np.float64]


def _textbook(lat: Floats, lon: Floats, tolerance: float, forced: npt.NDArray[np.bool_]) -> set[int]:
    """Recursive Douglas-Peucker, one segment at a time (the oracle), with the same initial
    kept points as the implementation: ends, forced points, every CUT_EVERY-th point."""
    x, y, z = unit_vectors(lat, lon)
    anchors = sorted({0, len(lat) - 1, *range(0, len(lat), CUT_EVERY), *np.flatnonzero(forced).tolist()})
    kept = set(anchors)
    stack = list(itertools.pairwise(anchors))
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        inner = np.arange(a + 1, b)
        d = segment_distance_m((x[inner], y[inner], z[inner]), (x[a:a + 1], y[a:a + 1], z[a:a + 1]),
                               (x[b:b + 1], y[b:b + 1], z[b:b + 1]))
        far = int(np.argmax(d))
        if d[far] > tolerance:
            kept.add(int(inner[far]))
            stack += [(a, int(inner[far])), (int(inner[far]), b)]
    return kept


def _random_track(rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
    heading = np.cumsum(rng.normal(0, 0.4, n))
    step = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0, 30, n))  # parked stretches
    lat = 48.0 + np.cumsum(step * np.cos(heading)) / 111_195 + rng.normal(0, 3, n) / 111_195
    lon = 11.0 + np.cumsum(step * np.sin(heading)) / 74_000 + rng.normal(0, 3, n) / 74_000
    repeat = rng.random(n) < 0.1  # the same position twice: zero-length segments
    lat[1:][repeat[1:]] = lat[:-1][repeat[1:]]
    lon[1:][repeat[1:]] = lon[:-1][repeat[1:]]
    return lat, lon


@pytest.mark.parametrize("seed", range(12))
def test_stored_significance_keeps_what_douglas_peucker_keeps_at_every_tolerance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lat, lon = _random_track(rng, int(rng.integers(3, 900)))
    forced = rng.random(len(lat)) < 0.01
    stored = significance(lat, lon, forced)
    for tolerance in (0.5, 2.0, 5.0, 10.0, 37.0, 200.0):
        expected = _textbook(lat, lon, tolerance, forced)
        assert set(np.flatnonzero(stored > tolerance).tolist()) == expected
        assert set(np.flatnonzero(simplify(lat, lon, tolerance, forced)).tolist()) == expected


def test_a_value_is_packed_and_unpacked_unchanged_and_a_wrong_size_is_refused() -> None:
    rng = np.random.default_rng(3)
    n = 50
    columns = track_days.DayColumns(
        rng.integers(0, 2**60, n), rng.normal(48, 1, n), rng.normal(11, 1, n),
        np.where(rng.random(n) < 0.2, np.inf, rng.random(n)), rng.random(n).astype(np.float32),
        rng.integers(-1, 4, n).astype(np.int16))
    data = track_days.pack(columns)
    assert len(data) == n * track_days.ROW_BYTES
    back = track_days.unpack(data, n)
    for name in ("time_us", "lat_deg", "lon_deg", "significance", "speed_kmh", "fix_type"):
        assert np.array_equal(getattr(back, name), getattr(columns, name))
    for bad, count in ((data[:-1], n), (data, n + 1), (data, -1), (b"garbage", 1)):
        with pytest.raises(StoreError, match="does not hold"):
            track_days.unpack(bad, count)
    # What the server sends for a read without significance (two slices of the value).
    motion = data[:24 * n] + data[32 * n:]
    back = track_days.unpack(motion, n, significance=False)
    for name in ("time_us", "lat_deg", "lon_deg", "speed_kmh", "fix_type"):
        assert np.array_equal(getattr(back, name), getattr(columns, name))
    assert np.isnan(back.significance).all() and len(back.significance) == n
    with pytest.raises(StoreError, match="does not hold"):
        track_days.unpack(data, n, significance=False)
    with pytest.raises(StoreError, match="width"):
        track_days.decode_raw(b"\x00" * 7)


BERLIN = "Europe/Berlin"  # local midnight is 23:00 UTC in winter
TOLERANCES = (None, 0.0, 3.0, track_days.KEPT_MIN_M, 10.0, 150.0)


def _three_days(device_id: str) -> list[Fix]:
    start = T0 - timedelta(hours=1)  # local midnight of 2026-03-02
    s = Scenario(start, 48.1, 11.5, step_s=60.0).park(7 * 3600).drive_north(1800, 50).park(3600)
    s.park(1800, fix_type=0).park(12 * 3600)  # a garage without GNSS
    s.drive_north(3600, 70).park(20 * 3600)  # a drive across the next local midnight
    s.silence(3 * 3600).drive_north(900, 30).park(14 * 3600)
    fixes = s.fixes
    fixes.append(Fix(start + timedelta(days=2), fixes[-1].lat, fixes[-1].lon, 0.0))  # at midnight
    return sorted(fixes, key=lambda f: f.time)


def _answers(db: Conn, device_id: str, start: datetime) -> list[str]:
    ranges = [(start, start + timedelta(days=3)),
              (start + timedelta(hours=5), start + timedelta(days=2, hours=7)),
              (start - timedelta(days=1), start + timedelta(days=4))]
    return [to_json(playback(db, device_id, a, b, tolerance_m=t, events=False)).decode()
            for a, b in ranges for t in TOLERANCES]


def _seeded(db: Conn, device_id: str, track: Callable[[str], list[Fix]]) -> tuple[datetime, list[date]]:
    """`device_id` registered in Berlin with the fixes of `track`: the first local midnight and
    the days to pack (one each side of the three)."""
    register(db, device_id, BERLIN)
    write_fixes(db, device_id, track(device_id))
    return T0 - timedelta(hours=1), [(T0 + timedelta(days=k)).date() for k in range(-1, 4)]


def _pack_all(db: Conn, device_id: str, days: list[Any]) -> None:
    PartitionKeeper().ensure(db, "track_days", days[0], days[-1])
    PartitionKeeper().ensure(db, "daily_summaries", days[0], days[-1])
    db.execute("INSERT INTO summary_dirty (device_id, day) SELECT %s, d FROM unnest(%s::date[]) d "
               "ON CONFLICT DO NOTHING", (device_id, days))
    summaries.refresh_dirty(db, oldest_day=days[0] - timedelta(days=400))


def test_a_track_is_the_same_packed_or_read_from_positions(db: Conn) -> None:
    device_id = "gw-packed"
    start, days = _seeded(db, device_id, _three_days)
    from_positions = _answers(db, device_id, start)
    fixes = fetch_fixes(db, device_id, start, start + timedelta(days=3))
    assert {p.packed for p in fixes.pieces} == {False} and len(fixes.pieces) == 3  # cut at midnights

    _pack_all(db, device_id, days)
    stored = db.execute("SELECT day, t0, fix_count FROM track_days WHERE device_id = %s AND fix_count > 0 "
                        "ORDER BY day", (device_id,)).fetchall()
    assert [row[0] for row in stored] == days[1:4]
    assert stored[0][1] == start  # local midnight, not UTC
    fixes = fetch_fixes(db, device_id, start, start + timedelta(days=3))
    assert [p.packed for p in fixes.pieces] == [True, True, True]
    assert _answers(db, device_id, start) == from_positions
    parsed = json.loads(from_positions[TOLERANCES.index(10.0)])  # the 3 days at 10 m: simplified, gaps marked
    assert parsed["properties"]["points"] < parsed["properties"]["fixes"] / 5
    assert any(f["properties"]["kind"] == "no_fix" for f in parsed["features"])


def test_a_day_that_gets_new_fixes_is_read_from_positions_until_it_is_packed_again(db: Conn) -> None:
    device_id = "gw-late"
    start, days = _seeded(db, device_id, _three_days)
    _pack_all(db, device_id, days)
    # A late fix far away on the second day, stored the way ingest stores it: with its day dirty.
    late = start + timedelta(days=1, hours=3, seconds=30)
    with db.transaction():
        db.execute("INSERT INTO positions (device_id, time, boot_id, seq, row_idx, lat_deg, lon_deg, "
                   "speed_kmh, fix_type, clock_quality) VALUES (%s, %s, 2, 1, 0, 48.5, 11.9, 0, 2, 3)",
                   (device_id, late))
        db.execute("INSERT INTO summary_dirty (device_id, day) VALUES (%s, %s)", (device_id, days[2]))
    end = start + timedelta(days=3)
    fixes = fetch_fixes(db, device_id, start, end)
    assert [p.packed for p in fixes.pieces] == [True, False, True]
    track = playback(db, device_id, start, end, tolerance_m=10.0)
    assert [f["geometry"]["coordinates"][1] == 48.5 for f in track["features"]
            if f["properties"]["kind"] == "fix"].count(True) == 1
    dirty = _answers(db, device_id, start)
    summaries.refresh_dirty(db, oldest_day=days[0] - timedelta(days=400))
    assert [p.packed for p in fetch_fixes(db, device_id, start, end).pieces] == [True, True, True]
    assert _answers(db, device_id, start) == dirty


def test_packed_days_of_another_time_zone_are_not_used(db: Conn) -> None:
    device_id = "gw-moved"
    start, days = _seeded(db, device_id, _three_days)
    _pack_all(db, device_id, days)
    db.execute("UPDATE devices SET time_zone = 'Asia/Tokyo' WHERE device_id = %s", (device_id,))
    fixes = fetch_fixes(db, device_id, start - timedelta(days=1), start + timedelta(days=4))
    assert not any(p.packed for p in fixes.pieces)
    assert len(fixes) == len(_three_days(device_id))


def _columns(rng: np.random.Generator, n: int) -> track_days.DayColumns:
    lat, lon = _random_track(rng, n)
    fix_type = np.where(rng.random(n) < 0.05, 0, 2).astype(np.int16)
    from cloud.analytics.simplify import track_significance
    return track_days.DayColumns(
        np.arange(n, dtype=np.int64) * 60_000_000 + 1_780_000_000_000_000, lat, lon,
        track_significance(lat, lon, fix_type != 0), rng.uniform(0, 90, n).astype(np.float32), fix_type)


@pytest.mark.parametrize("seed", range(4))
def test_kept_rows_are_the_fixes_above_the_floor_most_significant_first(seed: int) -> None:
    columns = _columns(np.random.default_rng(seed), 1440)
    kept, ladder, no_fix_rows = track_days.kept_rows(columns)
    assert no_fix_rows == int(np.count_nonzero(columns.fix_type == 0))
    rows = np.frombuffer(kept, dtype=track_days.ROW)
    wanted = (columns.fix_type != 0) & (columns.significance > track_days.KEPT_MIN_M)
    assert len(rows) == np.count_nonzero(wanted) and len(rows) < len(columns)
    value = rows["significance"]
    assert np.all(value[:-1] >= value[1:]) and np.isinf(value[0])
    assert sorted(rows["time_us"].tolist()) == columns.time_us[wanted].tolist()
    assert len(ladder) == len(track_days.LADDER_M)
    for step, count in zip(track_days.LADDER_M, ladder, strict=True):
        assert count == np.count_nonzero(rows["significance"] > step)
    floor = track_days.KEPT_MIN_M
    for tolerance in (floor, floor * 1.1, floor * 3, 10.0, 150.0, 9999.0, 10_000.0):
        step = track_days.ladder_step(tolerance)
        assert track_days.LADDER_M[step - 1] <= tolerance < track_days.LADDER_M[step]
        prefix = track_days.unpack_kept(kept[:track_days.ROW_BYTES * ladder[step - 1]])
        assert np.all(np.diff(prefix.time_us) > 0)  # back in time order
        keeps = set(columns.time_us[wanted & (columns.significance > tolerance)].tolist())
        assert keeps <= set(prefix.time_us.tolist())
    with pytest.raises(StoreError, match="whole"):
        track_days.unpack_kept(kept[:track_days.ROW_BYTES + 5])


def _gaps_at_midnights(device_id: str) -> list[Fix]:
    """A fix-less stretch ending the first local day and one starting the third; the second is
    clean, so a simplified read takes only its kept rows between them."""
    start = T0 - timedelta(hours=1)  # local midnight of 2026-03-02
    s = Scenario(start, 48.1, 11.5, step_s=60.0).park(7 * 3600).drive_north(3600, 50).park(15 * 3600)
    s.park(3600, fix_type=0)  # until the first midnight
    s.drive_north(2 * 3600, 60).park(22 * 3600)  # the clean day
    s.park(2 * 3600, fix_type=0).drive_north(3600, 40).park(21 * 3600)
    return sorted(s.fixes, key=lambda f: f.time)


def test_a_simplified_track_reads_the_kept_rows_of_clean_days_and_answers_the_same(db: Conn) -> None:
    device_id = "gw-kept"
    start, days = _seeded(db, device_id, _gaps_at_midnights)
    from_positions = _answers(db, device_id, start)
    _pack_all(db, device_id, days)
    assert _answers(db, device_id, start) == from_positions
    stored = db.execute("SELECT day, no_fix_rows, fix_count, length(kept) / %s FROM track_days "
                        "WHERE device_id = %s AND fix_count > 0 ORDER BY day",
                        (track_days.ROW_BYTES, device_id)).fetchall()
    assert [(row[1] > 0, row[3] < row[2] / 3) for row in stored] == \
        [(True, True), (False, True), (True, True)]
    # The clean day's full value is not what a simplified read uses: spoiled, only the
    # unsimplified answers change.
    clean_day = stored[1][0]
    db.execute("UPDATE track_days SET fixes = decode(repeat('00', length(fixes)), 'hex') "
               "WHERE device_id = %s AND day = %s", (device_id, clean_day))
    spoiled = _answers(db, device_id, start)
    for i, (answer, before) in enumerate(zip(spoiled, from_positions, strict=True)):
        tolerance = TOLERANCES[i % len(TOLERANCES)]  # every range holds the clean day whole
        assert (answer == before) == (tolerance is not None and tolerance >= track_days.KEPT_MIN_M)
    parsed = json.loads(spoiled[TOLERANCES.index(10.0)])
    gaps = [f for f in parsed["features"] if f["properties"]["kind"] == "no_fix"]
    assert len(gaps) == 2 and parsed["properties"]["fixes"] == sum(row[2] for row in stored)


def test_a_damaged_kept_prefix_is_refused(db: Conn) -> None:
    """A kept value that is not whole rows is refused day by day (the days' prefixes are unpacked
    together, where two damaged ones could add up to whole rows)."""
    device_id = "gw-kept-bad"
    start, days = _seeded(db, device_id, _gaps_at_midnights)
    _pack_all(db, device_id, days)
    db.execute("UPDATE track_days SET kept = substring(kept FROM 2) WHERE device_id = %s AND no_fix_rows = 0",
               (device_id,))
    with pytest.raises(StoreError, match="not whole"):
        fetch_fixes(db, device_id, start, start + timedelta(days=3), tolerance_m=10.0)


def test_days_packed_before_the_kept_rows_are_read_whole(db: Conn) -> None:
    device_id = "gw-old-pack"
    start, days = _seeded(db, device_id, _gaps_at_midnights)
    from_positions = _answers(db, device_id, start)
    _pack_all(db, device_id, days)
    db.execute("UPDATE track_days SET kept = NULL, kept_ladder = NULL, no_fix_rows = NULL "
               "WHERE device_id = %s", (device_id,))
    fixes = fetch_fixes(db, device_id, start, start + timedelta(days=3), tolerance_m=10.0)
    assert [p.packed for p in fixes.pieces] == [True, True, True] and len(fixes) == fixes.stored_rows
    assert _answers(db, device_id, start) == from_positions


def test_days_partly_inside_a_range_are_cut_from_their_packed_rows(db: Conn) -> None:
    device_id = "gw-cut"
    start, days = _seeded(db, device_id, _three_days)
    a, b = start + timedelta(hours=5), start + timedelta(days=2, hours=7)
    from_positions = [to_json(playback(db, device_id, a, b, tolerance_m=t)).decode() for t in TOLERANCES]
    _pack_all(db, device_id, days)
    fixes = fetch_fixes(db, device_id, a, b)
    assert [p.packed for p in fixes.pieces] == [False, True, False]  # cut days: simplified anew
    # Not read from positions: without those rows the answers stay the same.
    db.execute("DELETE FROM positions WHERE device_id = %s", (device_id,))
    answers = [to_json(playback(db, device_id, a, b, tolerance_m=t)).decode() for t in TOLERANCES]
    assert answers == from_positions
    assert fetch_fixes(db, device_id, a, b).stored_rows == len(fixes) > 0
