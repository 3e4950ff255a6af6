"""A device's track as numpy columns, packed by the server into one value (no object per fix).

A 30-day track at one fix a minute is 43,200 rows. Fetched as rows, psycopg builds a tuple, a
datetime and three floats per fix; here the server packs each fix with the `*send` functions
(the binary wire form: big-endian, timestamps as microseconds since 2000-01-01) into one bytea,
and numpy reads it in one step. Measured in bench/ingest.py against the fetch-as-rows form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from cloud.store.copybin import PG_EPOCH_US
from cloud.store.db import Conn
from cloud.store.errors import StoreError

_FIX = np.dtype([("time", ">i8"), ("lat", ">f8"), ("lon", ">f8"), ("speed", ">f4")])
_QUERY = """
    SELECT string_agg(timestamptz_send(time) || float8send(lat_deg) || float8send(lon_deg)
                      || float4send(coalesce(speed_kmh, 'NaN'::real)), ''::bytea ORDER BY time)
    FROM positions WHERE device_id = %s AND time >= %s AND time < %s"""


@dataclass(frozen=True)
class Track:
    """Fixes in time order; `speed_kmh` is NaN where the fix carried no speed."""

    time_ns: npt.NDArray[np.int64]
    lat_deg: npt.NDArray[np.float64]
    lon_deg: npt.NDArray[np.float64]
    speed_kmh: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.time_ns)


def track(conn: Conn, device_id: str, start: datetime, end: datetime) -> Track:
    """The positions of `device_id` with start <= time < end (timezone-aware datetimes)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise StoreError("track(): start and end must be timezone-aware datetimes")
    row = conn.execute(_QUERY, (device_id, start, end), binary=True).fetchone()
    data = bytes(row[0]) if row is not None and row[0] is not None else b""
    if len(data) % _FIX.itemsize:
        raise StoreError("track(): packed fixes are not of the expected width")
    fixes = np.frombuffer(data, dtype=_FIX)
    return Track(
        time_ns=(fixes["time"].astype(np.int64) + PG_EPOCH_US) * 1000,
        lat_deg=fixes["lat"].astype(np.float64),
        lon_deg=fixes["lon"].astype(np.float64),
        speed_kmh=fixes["speed"].astype(np.float32),
    )
