"""Retention by data class: whole partitions (plain) or chunks (TimescaleDB) go, never a DELETE.

Plain mode: a partition is removed once its whole range is older than the class's horizon; it is
first detached with `DETACH PARTITION ... CONCURRENTLY` (no lock that blocks ingest or queries),
then dropped, or only detached when the policy says `detach` (for archiving it elsewhere).
TimescaleDB mode: `add_retention_policy` per hypertable with the configured horizon (the
extension's background job then drops whole chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from psycopg import sql

from cloud.store.db import Conn
from cloud.store.layout import RETENTION_CLASSES, TIME_SERIES, RetentionClass, TimeSeriesTable
from cloud.store.migrate import StorageMode
from cloud.store.partitions import list_partitions
from lienwatch.errors import ConfigError

RetentionAction = Literal["drop", "detach"]

DEFAULT_DAYS: dict[RetentionClass, int] = {
    "signals": 90,  # raw high-rate signals
    "status": 90,  # heartbeats: raw telemetry too
    "positions": 5 * 365,
    "events": 5 * 365,
    "summaries": 5 * 365,
    "rejected": 30,
}


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days each data class is kept, and what happens to an expired partition."""

    days: dict[RetentionClass, int] = field(default_factory=lambda: dict(DEFAULT_DAYS))
    action: RetentionAction = "drop"

    def __post_init__(self) -> None:
        for name in RETENTION_CLASSES:
            value = self.days.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"retention.{name}_days must be an integer >= 1 (got {value!r})")
        if self.action not in ("drop", "detach"):
            raise ConfigError(f"retention.action must be 'drop' or 'detach' (got {self.action!r})")

    def horizon(self, table: TimeSeriesTable, now: datetime) -> datetime:
        """Rows of `table` older than this are expired."""
        return now - timedelta(days=self.days[table.retention])


@dataclass(frozen=True, slots=True)
class RetentionResult:
    removed: tuple[str, ...]
    kept: int


def apply_retention(
    conn: Conn, policy: RetentionPolicy, now: datetime, mode: StorageMode
) -> RetentionResult:
    """Remove expired partitions (plain) or (re)configure retention policies (TimescaleDB).

    `conn` must be in autocommit mode: DETACH ... CONCURRENTLY cannot run inside a transaction.
    """
    if mode == "timescaledb":
        _timescale_policies(conn, policy)
        return RetentionResult(removed=(), kept=0)
    removed: list[str] = []
    kept = 0
    for table in TIME_SERIES:
        cutoff = policy.horizon(table, now).astimezone(UTC)
        cutoff_day = cutoff.date()
        for partition in list_partitions(conn, table):
            if partition.end <= cutoff_day:
                _remove(conn, table, partition.name, policy.action)
                removed.append(partition.name)
            else:
                kept += 1
    return RetentionResult(removed=tuple(removed), kept=kept)


def _remove(conn: Conn, table: TimeSeriesTable, name: str, action: RetentionAction) -> None:
    conn.execute(
        sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
            sql.Identifier(table.name), sql.Identifier(name)
        )
    )
    if action == "drop":
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


def _timescale_policies(conn: Conn, policy: RetentionPolicy) -> None:
    for table in TIME_SERIES:
        days = policy.days[table.retention]
        drop_after = sql.SQL("make_interval(days => {})").format(sql.Literal(days))
        with conn.transaction():
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table.name,))
            conn.execute(
                sql.SQL("SELECT add_retention_policy({}, drop_after => {})").format(
                    sql.Literal(table.name), drop_after
                )
            )


def oldest_kept_day(policy: RetentionPolicy, table: TimeSeriesTable, now: datetime) -> date:
    """The first UTC day whose rows the receiver still accepts for `table`."""
    return policy.horizon(table, now).astimezone(UTC).date()
