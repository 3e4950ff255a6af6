"""Range partitions by time for plain PostgreSQL: named, created ahead, listed, detached.

A partition of table T covering [start, end) is named `T_pYYYYMMDD` after its (UTC) start; day
partitions cover one UTC day, month partitions one calendar month. Bounds are derived from the
name, so nothing else has to be stored. Creation takes a transaction-scoped advisory lock, so
several receivers may call `ensure_partitions` at the same time.
Under TimescaleDB none of this runs: hypertables create their chunks themselves.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from psycopg import sql

from cloud.store.db import Conn
from cloud.store.layout import BY_NAME, TIME_SERIES, Granularity, TimeSeriesTable

_SUFFIX = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One partition: its table name and UTC day range [start, end)."""

    start: date
    end: date
    name: str


def period_start(granularity: Granularity, day: date) -> date:
    return day if granularity == "day" else day.replace(day=1)


def period_end(granularity: Granularity, start: date) -> date:
    if granularity == "day":
        return start + timedelta(days=1)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def partition_for(table: TimeSeriesTable, day: date) -> Partition:
    start = period_start(table.granularity, day)
    return Partition(start, period_end(table.granularity, start), f"{table.name}_p{start:%Y%m%d}")


def partitions_covering(table: TimeSeriesTable, first: date, last: date) -> list[Partition]:
    """Every partition needed for rows whose UTC day lies in [first, last]."""
    result: list[Partition] = []
    day = period_start(table.granularity, first)
    while day <= last:
        partition = partition_for(table, day)
        result.append(partition)
        day = partition.end
    return result


def list_partitions(conn: Conn, table: TimeSeriesTable) -> list[Partition]:
    """The existing partitions of `table` that follow the naming scheme, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        (table.name,),
    ).fetchall()
    found: list[Partition] = []
    for (relname,) in rows:
        match = _SUFFIX.search(str(relname))
        if match is None or str(relname) != f"{table.name}_p{match[1]}":
            continue
        start = datetime.strptime(match[1], "%Y%m%d").date()
        found.append(Partition(start, period_end(table.granularity, start), str(relname)))
    return sorted(found)


def _bound(table: TimeSeriesTable, day: date) -> sql.Composable:
    if table.column_is_date:
        return sql.Literal(day.isoformat())
    return sql.Literal(f"{day.isoformat()} 00:00:00+00")


def create_partition(conn: Conn, table: TimeSeriesTable, partition: Partition) -> bool:
    """Create one partition unless it exists; returns whether it was created. Runs in its own
    transaction (or savepoint), serialised per table by an advisory lock. A table that is not
    declaratively partitioned (TimescaleDB mode: a hypertable, which makes its own chunks) needs
    none: nothing is created, so callers are the same in both storage modes."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(table.name.encode()),))
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL, pg_has_role(relowner, 'USAGE'), relkind "
                           "FROM pg_class WHERE oid = to_regclass(%s)",
                           (partition.name, table.name)).fetchone()
        if row and (row[0] or row[2] != "p"):
            return False
        if row and not row[1]:
            # Not the owner (the receiver as lienwatch_ingest, deploy/postgres/roles.sql): the
            # owner's function creates exactly this partition and nothing else.
            created = conn.execute("SELECT lienwatch_create_partition(%s, %s, %s)",
                                   (table.name, partition.start, partition.end)).fetchone()
            return bool(created and created[0])
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(partition.name), sql.Identifier(table.name),
                _bound(table, partition.start), _bound(table, partition.end),
            )
        )
    return True


class PartitionKeeper:
    """Creates partitions on demand and remembers which exist (one per database connection)."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def ensure(self, conn: Conn, table_name: str, first: date, last: date) -> int:
        """Make sure partitions exist for every UTC day in [first, last]; returns how many were made."""
        table = BY_NAME[table_name]
        created = 0
        for partition in partitions_covering(table, first, last):
            if partition.name in self._known:
                continue
            if create_partition(conn, table, partition):
                created += 1
            self._known.add(partition.name)
        return created

    def ensure_ahead(self, conn: Conn, today: date, ahead_days: int) -> int:
        """Partitions for every time-series table from `today` to `today + ahead_days`."""
        return sum(
            self.ensure(conn, table.name, today, today + timedelta(days=ahead_days))
            for table in TIME_SERIES
        )

    def forget(self, name: str) -> None:
        self._known.discard(name)


def utc_day(instant: datetime) -> date:
    return instant.astimezone(UTC).date()
