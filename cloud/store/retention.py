"""Retention by data class: whole partitions (plain) or chunks (TimescaleDB) go, never a DELETE.

Plain mode: a partition is removed once its whole range is older than the class's horizon; it is
first detached with `DETACH PARTITION ... CONCURRENTLY` (no lock that blocks ingest or queries),
then dropped, or only detached when the policy says `detach` (for archiving it elsewhere).
TimescaleDB mode: migration 0003 creates a retention policy per hypertable (and one for the
`signal_hourly` aggregate) with the default horizons; the extension's background jobs drop whole
chunks. `apply_retention` only reconciles those jobs with the configuration: a horizon that
differs is changed in place with `alter_job` (same job id, history kept), a missing policy is
added, an unchanged configuration changes nothing.
"""

from __future__ import annotations

import logging
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
log = logging.getLogger(__name__)
AGGREGATE = "signal_hourly"  # TimescaleDB: the continuous aggregate of signal_samples
# Refresh policy of the aggregate besides its start offset (which follows the signals' horizon);
# the same values as in migration 0003.
REFRESH_END_OFFSET = "1 hour"
REFRESH_SCHEDULE = "30 minutes"

MAX_DAYS = 100 * 366  # a century; longer is a typo (and overflows date arithmetic)
DEFAULT_DAYS: dict[RetentionClass, int] = {
    "signals": 90,  # raw high-rate signals
    "status": 90,  # heartbeats: raw telemetry too
    "positions": 5 * 365,
    "events": 5 * 365,
    "summaries": 5 * 365,
    "rejected": 30,
    "audit": 5 * 365,  # the API's record of every location read: necessary data, as long as positions
}


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days each data class is kept, and what happens to an expired partition."""

    days: dict[RetentionClass, int] = field(default_factory=lambda: dict(DEFAULT_DAYS))
    action: RetentionAction = "drop"

    def __post_init__(self) -> None:
        for name in RETENTION_CLASSES:
            value = self.days.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
                raise ConfigError(f"retention.{name}_days must be an integer in 1..{MAX_DAYS:,} "
                                  f"(got {value!r})")
        if self.action not in ("drop", "detach"):
            raise ConfigError(f"retention.action must be 'drop' or 'detach' (got {self.action!r})")

    def horizon(self, table: TimeSeriesTable, now: datetime) -> datetime:
        """Rows of `table` older than this are expired."""
        return now - timedelta(days=self.days[table.retention])


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """Plain: the partitions removed and kept. TimescaleDB: the jobs added or changed."""

    removed: tuple[str, ...]
    kept: int
    changed: tuple[str, ...] = ()


def apply_retention(
    conn: Conn, policy: RetentionPolicy, now: datetime, mode: StorageMode
) -> RetentionResult:
    """Remove expired partitions (plain) or (re)configure retention policies (TimescaleDB).

    `conn` must be in autocommit mode: DETACH ... CONCURRENTLY cannot run inside a transaction.
    A role that does not own the tables (the receiver as lienwatch_ingest) changes nothing: the
    owner runs retention (`lienwatch cloud maintain`, deploy/postgres/roles.sql).
    """
    if not owns_time_series(conn):
        log.info("retention skipped: this role does not own the tables; run `lienwatch cloud maintain` "
                 "as the owner (docs/security.md)")
        return RetentionResult(removed=(), kept=0)
    if mode == "timescaledb":
        return RetentionResult(removed=(), kept=0, changed=reconcile_timescale_jobs(conn, policy))
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


def owns_time_series(conn: Conn) -> bool:
    """Whether this session's role is (or acts as) the owner of every time-series table."""
    row = conn.execute("SELECT coalesce(bool_and(pg_has_role(relowner, 'USAGE')), false) FROM pg_class "
                       "WHERE oid = ANY(SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)",
                       ([table.name for table in TIME_SERIES],)).fetchone()
    return bool(row and row[0])


def _remove(conn: Conn, table: TimeSeriesTable, name: str, action: RetentionAction) -> None:
    conn.execute(
        sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
            sql.Identifier(table.name), sql.Identifier(name)
        )
    )
    if action == "drop":
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


@dataclass(frozen=True, slots=True)
class JobSetting:
    """One TimescaleDB job setting lienwatch manages: `key` of the `proc` job on `relation`."""

    relation: str
    proc: str
    key: str
    days: int


def timescale_settings(policy: RetentionPolicy) -> list[JobSetting]:
    """What the TimescaleDB jobs must say for `policy`: each hypertable's retention horizon,
    and for the hourly aggregate its own retention and the start of its refresh window (both the
    signals' horizon: late data is aggregated as far back as raw signals are accepted)."""
    signals = policy.days["signals"]
    return [
        *(JobSetting(t.name, "policy_retention", "drop_after", policy.days[t.retention])
          for t in TIME_SERIES),
        JobSetting(AGGREGATE, "policy_retention", "drop_after", signals),
        JobSetting(AGGREGATE, "policy_refresh_continuous_aggregate", "start_offset", signals),
    ]


# Days are compared as interval text ('90 days'): interval equality would call 3 mons = 90 days.
_WANT = "make_interval(days => %(days)s::int)::text"
_JOBS = f"""
    SELECT job_id, coalesce((config->>%(key)s::text)::interval::text <> {_WANT}, true)
    FROM timescaledb_information.jobs
    WHERE hypertable_schema = current_schema() AND hypertable_name = %(relation)s AND proc_name = %(proc)s
    ORDER BY job_id"""


def reconcile_timescale_jobs(conn: Conn, policy: RetentionPolicy) -> tuple[str, ...]:
    """Make the jobs say what `policy` says, touching only what differs; returns what changed."""
    changed: list[str] = []
    for setting in timescale_settings(policy):
        params = {"key": setting.key, "days": setting.days, "relation": setting.relation,
                  "proc": setting.proc}
        with conn.transaction():
            jobs = conn.execute(_JOBS, params).fetchall()
            for job_id, differs in jobs:
                if differs:
                    conn.execute(
                        "SELECT alter_job(job_id, config => config || jsonb_build_object("
                        f"%(key)s::text, {_WANT})) FROM timescaledb_information.jobs "
                        "WHERE job_id = %(job)s",
                        {**params, "job": job_id})
                    changed.append(f"{setting.relation}.{setting.key} = {setting.days} days (job {job_id})")
            if not jobs:
                conn.execute(_ADD[setting.proc], params)
                changed.append(f"{setting.relation}.{setting.key} = {setting.days} days (new job)")
    if changed:
        log.info("timescaledb jobs reconciled with the retention configuration: %s", "; ".join(changed))
    else:
        log.debug("timescaledb jobs unchanged: they match the retention configuration")
    return tuple(changed)


_ADD = {
    "policy_retention": "SELECT add_retention_policy(%(relation)s::regclass, "
                        "drop_after => make_interval(days => %(days)s::int), if_not_exists => true)",
    "policy_refresh_continuous_aggregate": (
        "SELECT add_continuous_aggregate_policy(%(relation)s::regclass, "
        "start_offset => make_interval(days => %(days)s::int), "
        f"end_offset => INTERVAL '{REFRESH_END_OFFSET}', "
        f"schedule_interval => INTERVAL '{REFRESH_SCHEDULE}', if_not_exists => true)"),
}


def oldest_kept_day(policy: RetentionPolicy, table: TimeSeriesTable, now: datetime) -> date:
    """The first UTC day whose rows the receiver still accepts for `table`."""
    return policy.horizon(table, now).astimezone(UTC).date()
