"""Checks shared by the analytics functions: time ranges and numeric parameters."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from cloud.analytics.errors import AnalyticsError

MAX_RANGE = timedelta(days=93)


def check_range(start: datetime, end: datetime, max_range: timedelta = MAX_RANGE) -> None:
    """`start < end`, both timezone-aware, at most `max_range` apart; `AnalyticsError` otherwise."""
    if start.tzinfo is None or end.tzinfo is None:
        raise AnalyticsError("from and to must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
    if not start < end:
        raise AnalyticsError(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    if end - start > max_range:
        raise AnalyticsError(f"the range from {start.isoformat()} to {end.isoformat()} is longer than "
                             f"{max_range.days} days: ask for a shorter one")


def check_number(name: str, value: float, low: float, high: float) -> float:
    """A finite number in [low, high]; `AnalyticsError` naming the parameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise AnalyticsError(f"{name} must be a number from {low:g} to {high:g} (got {value!r})")
    return float(value)


def iso_times(time_ns: npt.NDArray[np.int64]) -> list[str]:
    """UTC instants as ISO 8601 text with a Z, to the second (to the millisecond if needed)."""
    stamps = time_ns.astype("datetime64[ns]")
    if np.any(time_ns % 1_000_000_000):
        return list(np.datetime_as_string(stamps, unit="ms", timezone="UTC").tolist())
    return list(np.datetime_as_string(stamps, unit="s", timezone="UTC").tolist())


def iso(instant: datetime) -> str:
    """A datetime as ISO 8601 UTC with a Z."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
