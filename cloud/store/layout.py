"""Which tables are time series, how they are partitioned, and which retention class each has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Granularity = Literal["day", "month"]
RetentionClass = Literal["signals", "status", "positions", "events", "summaries", "rejected", "audit"]
RETENTION_CLASSES: tuple[RetentionClass, ...] = (
    "signals", "status", "positions", "events", "summaries", "rejected", "audit",
)


@dataclass(frozen=True, slots=True)
class TimeSeriesTable:
    """A table partitioned (plain mode) or chunked (TimescaleDB) by `time_column`."""

    name: str
    time_column: str
    granularity: Granularity
    retention: RetentionClass
    column_is_date: bool = False


TIME_SERIES: tuple[TimeSeriesTable, ...] = (
    TimeSeriesTable("signal_samples", "time", "day", "signals"),
    TimeSeriesTable("positions", "time", "month", "positions"),
    TimeSeriesTable("events", "time", "month", "events"),
    TimeSeriesTable("event_lifecycle", "event_time", "month", "events"),
    TimeSeriesTable("device_status", "time", "month", "status"),
    TimeSeriesTable("command_acks", "time", "month", "events"),
    TimeSeriesTable("rejected_messages", "received_at", "day", "rejected"),
    TimeSeriesTable("daily_summaries", "day", "month", "summaries", column_is_date=True),
    # Who read whose location (cloud/api/audit.py, migration 0006): kept as long as positions.
    TimeSeriesTable("audit_log", "time", "month", "audit"),
    # Packed tracks per device and local day (cloud/store/track_days.py, migration 0009): derived
    # from positions, so kept exactly as long as positions.
    TimeSeriesTable("track_days", "day", "month", "positions", column_is_date=True),
)
BY_NAME = {table.name: table for table in TIME_SERIES}
