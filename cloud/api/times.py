"""Instants and days a request may name: 1970-01-01 to 2200-01-01.

Python's datetime reaches year 1 and year 9999, but a range near either end overflows as soon as
it is widened by a day (`OverflowError`, a 500 the OpenAPI fuzz found in the track), and the time
series keeps nanoseconds since 1970 in 64 bits (to 2262). Bounded here once, for every route, as a
422 saying the range.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
RANGE_DETAIL = f"must be from {EARLIEST.date()} to {LATEST.date()}"


def _instant_in_range(value: datetime) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"{value.isoformat()} is out of range: an instant {RANGE_DETAIL}")
    return value


def _day_in_range(value: date) -> date:
    if not EARLIEST.date() <= value <= LATEST.date():
        raise ValueError(f"{value.isoformat()} is out of range: a day {RANGE_DETAIL}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_instant_in_range)]
Day = Annotated[date, AfterValidator(_day_in_range)]
