"""Retention drops whole expired partitions per data class and keeps everything else."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cloud.store.db import Conn
from cloud.store.layout import BY_NAME
from cloud.store.partitions import PartitionKeeper, list_partitions
from cloud.store.retention import DEFAULT_DAYS, RetentionPolicy, apply_retention
from lienwatch.errors import ConfigError

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _insert_signal(db: Conn, at: datetime, seq: int) -> None:
    db.execute("INSERT INTO signal_samples VALUES ('gw', %s, 1, %s, 0, 1, 42.0)", (at, seq))


@pytest.mark.plain_only
def test_expired_signal_partitions_are_dropped_and_the_rest_kept(db: Conn) -> None:
    keeper = PartitionKeeper()
    first, last = date(2026, 2, 1), date(2026, 6, 20)
    keeper.ensure(db, "signal_samples", first, last)
    days = [(NOW - timedelta(days=n)) for n in (120, 95, 91, 89, 10, 0)]
    for seq, at in enumerate(days):
        _insert_signal(db, at, seq)
    result = apply_retention(db, RetentionPolicy(), NOW, "plain")
    horizon = (NOW - timedelta(days=90)).date()
    remaining = list_partitions(db, BY_NAME["signal_samples"])
    assert remaining and all(p.end > horizon for p in remaining)
    assert min(p.start for p in remaining) == horizon  # the horizon's day is kept whole
    dropped = [n for n in result.removed if n.startswith("signal_samples_")]
    assert len(dropped) == (horizon - first).days
    kept_times = [r[0] for r in db.execute("SELECT time FROM signal_samples ORDER BY time")]
    assert kept_times == days[3:]
    # Dropped, not just detached: the tables are gone.
    assert db.execute("SELECT to_regclass('signal_samples_p20260201')").fetchone() == (None,)


@pytest.mark.plain_only
def test_positions_survive_where_signals_of_the_same_age_expire(db: Conn) -> None:
    keeper = PartitionKeeper()
    old = NOW - timedelta(days=200)
    keeper.ensure(db, "signal_samples", old.date(), old.date())
    keeper.ensure(db, "positions", old.date(), old.date())
    _insert_signal(db, old, 1)
    db.execute("INSERT INTO positions (device_id, time, boot_id, seq, row_idx, lat_deg, lon_deg,"
               " clock_quality) VALUES ('gw', %s, 1, 1, 0, 48.1, 11.5, 3)", (old,))
    apply_retention(db, RetentionPolicy(), NOW, "plain")
    assert db.execute("SELECT count(*) FROM signal_samples").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM positions").fetchone() == (1,)


@pytest.mark.plain_only
def test_detach_action_keeps_the_table_for_archiving(db: Conn) -> None:
    PartitionKeeper().ensure(db, "rejected_messages", date(2026, 1, 1), date(2026, 1, 1))
    result = apply_retention(db, RetentionPolicy(action="detach"), NOW, "plain")
    assert "rejected_messages_p20260101" in result.removed
    assert db.execute("SELECT to_regclass('rejected_messages_p20260101') IS NOT NULL").fetchone() == (True,)
    assert not [p for p in list_partitions(db, BY_NAME["rejected_messages"]) if p.start == date(2026, 1, 1)]


@pytest.mark.plain_only
def test_retention_is_configurable_per_class(db: Conn) -> None:
    PartitionKeeper().ensure(db, "rejected_messages", date(2026, 6, 1), date(2026, 6, 14))
    days = dict(DEFAULT_DAYS)
    days["rejected"] = 7
    result = apply_retention(db, RetentionPolicy(days=days), NOW, "plain")
    assert sorted(result.removed) == [f"rejected_messages_p202606{d:02d}" for d in range(1, 8)]


@pytest.mark.plain_only
def test_partitions_ahead_and_repeat_calls_are_cheap(db: Conn) -> None:
    keeper = PartitionKeeper()
    made = keeper.ensure_ahead(db, NOW.date(), 3)
    assert made > 0
    assert keeper.ensure_ahead(db, NOW.date(), 3) == 0
    assert PartitionKeeper().ensure_ahead(db, NOW.date(), 3) == 0  # another receiver finds them
    days = {p.start for p in list_partitions(db, BY_NAME["signal_samples"])}
    assert days == {NOW.date() + timedelta(days=n) for n in range(4)}


@pytest.mark.parametrize("days", [{"signals": 0}, {"signals": "90"}, {"signals": True}])
def test_bad_retention_values_are_config_errors(days: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"retention\.signals_days"):
        RetentionPolicy(days={**DEFAULT_DAYS, **days})  # type: ignore[dict-item]
