"""Trips and stops from the runs packed with each day (cloud/analytics/motion.py) equal the SQL
definition, and the receiver marks the days an ignition sample reaches to be packed again.

The random tracks of the SQL-oracle test (drives, parks, crawls, silences, fixes without speed or
fix, ignition absent / on key changes / periodic / only before `from`, inside or outside the
lookback / starting late) are written for devices in time zones whose midnights cut them, every
day is packed as the receiver does, and the ranges are widened to whole days on either side, so an
answer is made of packed runs, fixes read around them and the segments that join the two.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

import protocol
from cloud.analytics import motion
from cloud.analytics.trips import TripRules, trips_and_stops
from cloud.ingest.validate import Incoming, Validator
from cloud.ingest.writer import BatchWriter
from cloud.store import summaries, track_days
from cloud.store.db import Conn
from cloud.store.devices import Device, add_device
from cloud.store.errors import StoreError
from cloud.store.partitions import PartitionKeeper
from cloud.store.retention import RetentionPolicy
from protocol.messages import ClockQuality, FixColumns, Header, SampleColumns, TelemetryBatch
from tests.cloud.helpers import topic_of
from tests.cloud.seed import Fix, write_fixes, write_ignition
from tests.cloud.test_analytics_trips_sql_oracle import assert_equal, random_case, sql_trips_and_stops

ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/Los_Angeles", "Pacific/Kiritimati",
         "America/St_Johns")
CASES = 48


def _pack(db: Conn, device_id: str, first: date, last: date) -> None:
    """Pack every local day of `device_id` from `first` to `last` as the receiver does."""
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    for table in ("track_days", "daily_summaries"):
        PartitionKeeper().ensure(db, table, first, last)
    db.execute("INSERT INTO summary_dirty (device_id, day) SELECT %s, d FROM unnest(%s::date[]) d "
               "ON CONFLICT DO NOTHING", (device_id, days))
    summaries.refresh_dirty(db, oldest_day=first - timedelta(days=400))


def _repeated(fixes: list[Fix], ignition: list[tuple[datetime, float]], end: datetime,
              times: int) -> tuple[list[Fix], list[tuple[datetime, float]], datetime]:
    """The track and its ignition `times` over, one after the other (a track of several days)."""
    every = fixes[-1].time - fixes[0].time + timedelta(minutes=30)
    out_fixes = [dataclasses.replace(f, time=f.time + k * every) for k in range(times) for f in fixes]
    out_ignition = [(t + k * every, v) for k in range(times) for t, v in ignition]
    return out_fixes, out_ignition, end + (times - 1) * every


def test_trips_from_packed_runs_equal_the_sql_definition(db: Conn) -> None:
    seen = {"cases": 0, "packed_days": 0, "days_from_fixes": 0, "carried_too_old": 0, "trips": 0,
            "stops": 0, "by_ignition": 0}
    for seed in range(CASES):
        case = random_case(seed)
        rng = np.random.default_rng(1000 + seed)
        rules = dataclasses.replace(case.rules, gap_s=motion.RUNS_GAP_S, moving_kmh=motion.RUNS_MOVING_KMH,
                                    use_ignition=True)
        device_id = f"gw-runs-{seed}"
        zone = str(rng.choice(ZONES))
        add_device(db, Device(device_id, time_zone=zone, points_of_interest=tuple(case.points_of_interest)))
        fixes, ignition, end = _repeated(case.fixes, case.ignition, case.end, int(rng.integers(2, 7)))
        write_fixes(db, device_id, fixes)
        write_ignition(db, device_id, ignition)
        start = case.start - timedelta(days=int(rng.integers(0, 2)), hours=float(rng.uniform(0, 3)))
        end += timedelta(days=int(rng.integers(0, 3)))
        _pack(db, device_id, (start - timedelta(days=2)).date(), (end + timedelta(days=2)).date())
        packed = track_days.usable_runs(db, device_id, start, end)
        lookback_ns = track_days.epoch_us(start - motion.IGNITION_LOOKBACK) * 1000
        used = [d for d in packed if d.runs.carried_ns is None or d.runs.carried_ns >= lookback_ns]
        seen["packed_days"] += len(used)
        seen["carried_too_old"] += len(packed) - len(used)
        seen["days_from_fixes"] += bool(used) and (used[0].t0 > start or used[-1].t1 < end)
        expected = sql_trips_and_stops(db, device_id, start, end, rules)
        got = trips_and_stops(db, device_id, start, end, rules)
        assert_equal(got, expected, f"seed {seed} in {zone} ({rules})")
        seen["cases"] += any(d.runs.fixes for d in used)
        seen["trips"] += len(got.trips)
        seen["stops"] += len(got.stops)
        seen["by_ignition"] += got.ignition
    # most answers came from packed runs, joined to fixes read around them; some days' runs were
    # left unused because the ignition they started with lies beyond the range's lookback
    assert seen["cases"] >= CASES // 2 and all(seen.values()), seen


def test_other_rules_and_unpacked_days_read_the_fixes(db: Conn) -> None:
    """A classification other than the packed one, and days packed before runs existed (NULL), give
    the answers of the fixes."""
    case = random_case(7)
    device_id = "gw-runs-other"
    add_device(db, Device(device_id, time_zone="Asia/Kolkata"))
    write_fixes(db, device_id, case.fixes)
    write_ignition(db, device_id, case.ignition)
    start, end = case.start - timedelta(days=1), case.end + timedelta(days=1)
    _pack(db, device_id, (start - timedelta(days=2)).date(), (end + timedelta(days=2)).date())
    assert track_days.usable_runs(db, device_id, start, end)
    for rules in (TripRules(moving_kmh=12.0), TripRules(gap_s=900.0), TripRules(use_ignition=False)):
        assert_equal(trips_and_stops(db, device_id, start, end, rules),
                     sql_trips_and_stops(db, device_id, start, end, rules), str(rules))
    db.execute("UPDATE track_days SET runs = NULL WHERE device_id = %s", (device_id,))
    assert track_days.usable_runs(db, device_id, start, end) == []
    assert_equal(trips_and_stops(db, device_id, start, end, TripRules()),
                 sql_trips_and_stops(db, device_id, start, end, TripRules()), "runs NULL")


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"\x01" * (motion.HEAD.itemsize + 3)])
def test_damaged_runs_are_refused(data: bytes) -> None:
    with pytest.raises(StoreError, match="packed runs"):
        motion.unpack_runs(data)


def test_runs_of_another_format_or_count_are_refused() -> None:
    track = motion.Track(np.array([0, 60, 120], np.int64) * 10**9, np.array([48.0, 48.001, 48.002]),
                         np.array([11.0, 11.0, 11.0]), np.array([50.0, 50.0, 0.0]), np.full(3, np.nan))
    packed = motion.pack_runs(track, None)
    day = motion.unpack_runs(packed)
    assert day.fixes == 3 and day.carried_ns is None and day.run_state.tolist() == [motion.MOVING]
    assert day.first.time_ns.tolist() == [0] and day.last.time_ns.tolist() == [120 * 10**9]
    head = np.frombuffer(packed, dtype=motion.HEAD, count=1).copy()
    head["format"] = 9
    with pytest.raises(StoreError, match="format 9"):
        motion.unpack_runs(head.tobytes() + packed[motion.HEAD.itemsize:])
    head["format"], head["fixes"] = motion.RUNS_FORMAT, 1
    with pytest.raises(StoreError, match="1 runs for 1 fixed rows"):
        motion.unpack_runs(head.tobytes() + packed[motion.HEAD.itemsize:])


def _ignition_message(device_id: str, seq: int, samples: list[tuple[datetime, float]]) -> TelemetryBatch:
    times = tuple(int(t.timestamp()) * 10**9 for t, _ in samples)
    return TelemetryBatch(Header(device_id, 5, seq, max(times), ClockQuality.GNSS), FixColumns.from_fixes([]),
                          SampleColumns(times, tuple(motion.IGNITION_SIGNAL_ID for _ in samples),
                                        tuple(v for _, v in samples)))


def test_an_ignition_sample_marks_the_days_it_reaches_dirty(db: Conn) -> None:
    """A sample changes the runs of its day and of each day after it up to the next sample's (or
    today, with none later): the receiver marks exactly those to be packed again."""
    device_id = "gw-runs-key"
    add_device(db, Device(device_id, time_zone="Europe/Berlin"))
    writer = BatchWriter(db, mode="plain", receiver_id="test", policy=RetentionPolicy())
    validator = Validator(lambda d: d == device_id, lambda table: 0, 10**15, time.time_ns)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    berlin = ZoneInfo("Europe/Berlin")

    def local_days(first: datetime, last: datetime) -> set[date]:
        """The device's local days from `first` to `last` (its today is not UTC's for an hour
        or two before UTC midnight: CI of 4e2a971 ran then)."""
        start, end = first.astimezone(berlin).date(), last.astimezone(berlin).date()
        return {start + timedelta(days=k) for k in range((end - start).days + 1)}

    def write(seq: int, samples: list[tuple[datetime, float]]) -> set[Any]:
        db.execute("DELETE FROM summary_dirty")
        message = _ignition_message(device_id, seq, samples)
        incoming = Incoming(topic_of(message), protocol.encode(message), seq, 1, time.time_ns())
        outcome = validator.check(incoming)
        assert not hasattr(outcome, "reason_code"), outcome
        writer.write([outcome], now)
        return {row[0] for row in db.execute("SELECT day FROM summary_dirty WHERE device_id = %s",
                                             (device_id,)).fetchall()}

    noon = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=12)
    ten_days_ago = noon - timedelta(days=10)
    assert write(1, [(ten_days_ago, 2.0)]) == local_days(ten_days_ago, now)
    later = noon - timedelta(days=6)
    write(2, [(later, 4.0)])
    # a late sample between the two: its day to the next sample's day, no further
    between = noon - timedelta(days=8)
    assert write(3, [(between, 4.0)]) == local_days(between, later) == {(between + timedelta(days=k)).date()
                                                                          for k in range(3)}
    # a batch without ignition samples marks nothing for them
    message = TelemetryBatch(Header(device_id, 5, 4, time.time_ns(), ClockQuality.GNSS),
                             FixColumns.from_fixes([]), SampleColumns((time.time_ns(),), (40,), (12.6,)))
    db.execute("DELETE FROM summary_dirty")
    outcome = validator.check(Incoming(topic_of(message), protocol.encode(message), 4, 1, time.time_ns()))
    writer.write([outcome], now)
    assert db.execute("SELECT count(*) FROM summary_dirty").fetchone() == (0,)
