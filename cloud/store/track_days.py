"""Packed tracks: each (device, local day) of positions as one value, with its significance.

Why: a device's 30-day track in `positions` is ~43,000 rows scattered among every other device's
rows, one heap page per fix when not cached; a month of a busy fleet does not stay cached. When
the receiver recomputes a dirty day's summary (`summaries.refresh_dirty`) it also packs that
day's fixes into one `track_days` row (migration 0009), column by column, with each fix's
Douglas-Peucker significance (`cloud.analytics.simplify.track_significance`), so the API reads
one value per day and simplifies by comparing numbers.

A packed row is used only while it is exact: its day is not dirty (ingest marks a day dirty in
the same transaction that stores its new fixes) and it was packed under the device's current
time zone (its `t0` is the local midnight). A day partly inside a range is cut to it; anything
else in a range is read from `positions`.

Format 1, little-endian, column after column for `fix_count` rows in time order:
time (int64 microseconds since 1970), lat_deg, lon_deg, significance (float64: compared with a
tolerance, so never rounded), speed_kmh (float32, NaN = none), fix_type (int16, -1 = none).

Beside it (migration 0013) the rows a simplified track can keep: `kept`, the day's fixes with a
significance above `KEPT_MIN_M`, row after row (`ROW`, the same fields) from the most
significant; `kept_ladder`, how many of them lie above each step of `LADDER_M`; `no_fix_rows`.
A track at tolerance t >= `KEPT_MIN_M` reads of a day without fix-less rows only the prefix of
`kept` down to the ladder step at or below t (~5 % of the day at 10 m), not the whole value.

And (migration 0015) `runs`: the day's motion runs for trips and stops (`cloud.analytics.motion`),
computed from the day's fixes and ignition samples (with the last sample before the day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import LiteralString

import numpy as np
import numpy.typing as npt

from cloud.analytics import motion
from cloud.analytics.simplify import track_significance
from cloud.store.copybin import PG_EPOCH_US
from cloud.store.db import Conn
from cloud.store.errors import StoreError

FORMAT = 1
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_us", "<i8"), ("lat_deg", "<f8"), ("lon_deg", "<f8"), ("significance", "<f8"),
    ("speed_kmh", "<f4"), ("fix_type", "<i2"))
ROW_BYTES = sum(np.dtype(kind).itemsize for _, kind in _COLUMNS)
ROW = np.dtype(list(_COLUMNS))  # one row of `kept` (packed: ROW_BYTES)
# `kept` holds the fixes above this significance: tolerances below read whole days. Not lower:
# a parked car's GNSS jitter of a few metres is significant at 1 m (in bench/api.py's data 83 %
# of a day's rows lie above 1 m, 36 % above 5 m, 6 % above 10 m), and `kept` would double the
# table; 5 m is about twice a GNSS receiver's CEP, below what a map of a month shows.
KEPT_MIN_M = 5.0
LADDER_M = KEPT_MIN_M * 2.0 ** (np.arange(45) / 4.0)  # 5 m, 5.9 m, ... 10,240 m (analytics' maximum: 10 km)
PACK_BATCH = 200  # days fetched and written per statement (~8 MB at one fix a minute)

# The server packs rows with the binary `*send` functions (big-endian, microseconds since 2000).
RAW_FIX = np.dtype([("time", ">i8"), ("lat", ">f8"), ("lon", ">f8"), ("speed", ">f4"), ("fix", ">i2")])
RAW_FIX_SQL: LiteralString = """string_agg(timestamptz_send(p.time) || float8send(p.lat_deg)
    || float8send(p.lon_deg) || float4send(coalesce(p.speed_kmh, 'NaN'::real))
    || int2send(coalesce(p.fix_type, -1::smallint)), ''::bytea ORDER BY p.time)"""


@dataclass(frozen=True)
class DayColumns:
    """Rows of a track in time order, as numpy columns."""

    time_us: npt.NDArray[np.int64]
    lat_deg: npt.NDArray[np.float64]
    lon_deg: npt.NDArray[np.float64]
    significance: npt.NDArray[np.float64]
    speed_kmh: npt.NDArray[np.float32]
    fix_type: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return len(self.time_us)

    def rows(self, lo: int, hi: int) -> DayColumns:
        """Rows lo..hi-1 (views, no copy)."""
        return DayColumns(self.time_us[lo:hi], self.lat_deg[lo:hi], self.lon_deg[lo:hi],
                          self.significance[lo:hi], self.speed_kmh[lo:hi], self.fix_type[lo:hi])


@dataclass(frozen=True)
class PackedDay:
    """One usable packed row: its local day's bounds [t0, t1) (cut to the range asked for: then
    not `whole`), its rows in them (all, or with `complete` False only its kept rows above the
    tolerance asked for) and how many rows it holds in them."""

    t0: datetime
    t1: datetime
    columns: DayColumns
    fix_count: int
    complete: bool = True
    whole: bool = True


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(instant: datetime) -> int:
    """Microseconds since 1970 of an aware datetime (the packed rows' time)."""
    return (instant - _EPOCH) // timedelta(microseconds=1)


def _cut(t0: datetime, t1: datetime, columns: DayColumns, start: datetime, end: datetime) -> PackedDay:
    """A whole day's rows cut to [start, end)."""
    lo, hi = np.searchsorted(columns.time_us, [epoch_us(start), epoch_us(end)], side="left").tolist()
    rows = DayColumns(*(getattr(columns, name)[lo:hi] for name, _ in _COLUMNS))
    return PackedDay(max(t0, start), min(t1, end), rows, hi - lo, whole=False)


def decode_raw(data: bytes | None) -> DayColumns:
    """Rows packed by `RAW_FIX_SQL` as columns (significance NaN: not computed)."""
    data = data or b""
    if len(data) % RAW_FIX.itemsize:
        raise StoreError("packed positions are not of the expected width")
    rows = np.frombuffer(data, dtype=RAW_FIX)
    return DayColumns(rows["time"].astype(np.int64) + PG_EPOCH_US, rows["lat"].astype(np.float64),
                      rows["lon"].astype(np.float64), np.full(len(rows), np.nan),
                      rows["speed"].astype(np.float32), rows["fix"].astype(np.int16))


def pack(columns: DayColumns) -> bytes:
    """Format 1 bytes of `columns`."""
    return b"".join(np.ascontiguousarray(getattr(columns, name), dtype=kind).tobytes()
                    for name, kind in _COLUMNS)


def kept_rows(columns: DayColumns) -> tuple[bytes, list[int], int]:
    """`kept`, `kept_ladder` and `no_fix_rows` of a day's columns (see the module)."""
    has_fix = columns.fix_type != 0
    chosen = np.flatnonzero(has_fix & (columns.significance > KEPT_MIN_M))
    order = chosen[np.argsort(-columns.significance[chosen], kind="stable")]  # inf first
    rows = np.empty(len(order), dtype=ROW)
    for name, _ in _COLUMNS:
        rows[name] = getattr(columns, name)[order]
    descending = -columns.significance[order]  # ascending
    ladder = np.searchsorted(descending, -LADDER_M, side="left")  # how many lie above each step
    return rows.tobytes(), [int(n) for n in ladder], int(np.count_nonzero(~has_fix))


def unpack_kept(data: bytes) -> DayColumns:
    """Rows of a `kept` prefix (or of several days' prefixes, joined in day order: days do not
    overlap) as columns in time order (refused if not whole rows)."""
    if len(data) % ROW_BYTES:
        raise StoreError(f"a kept prefix of {len(data)} bytes is not whole {ROW_BYTES}-byte rows")
    rows = np.frombuffer(data, dtype=ROW)
    rows = rows[np.argsort(rows["time_us"], kind="stable")]
    return DayColumns(**{name: np.ascontiguousarray(rows[name]) for name, _ in _COLUMNS})  # type: ignore[arg-type]


def ladder_step(tolerance_m: float) -> int:
    """The 1-based `kept_ladder` index of the highest step at or below `tolerance_m` (>= KEPT_MIN_M)."""
    return int(np.searchsorted(LADDER_M, tolerance_m, side="right"))


_NANS = np.full(2 * 86_400, np.nan)  # two days at 1 Hz; read-only, shared by every unpack
_NANS.flags.writeable = False


def _nans(count: int) -> npt.NDArray[np.float64]:
    """`count` NaN, a read-only view of a shared array where it is long enough (nothing allocated)."""
    return _NANS[:count] if count <= len(_NANS) else np.full(count, np.nan)


def unpack(data: bytes, fix_count: int, *, significance: bool = True) -> DayColumns:
    """The columns of a format 1 value of `fix_count` rows (refused if its size disagrees);
    `significance=False`: a value read without that column (`_MOTION_FIXES`), NaN in its place."""
    row_bytes = ROW_BYTES if significance else ROW_BYTES - np.dtype("<f8").itemsize
    if fix_count < 0 or len(data) != fix_count * row_bytes:
        raise StoreError(f"track_days value of {len(data)} bytes does not hold {fix_count} rows")
    out: dict[str, npt.NDArray[np.generic]] = {}
    offset = 0
    for name, kind in _COLUMNS:
        if name == "significance" and not significance:
            out[name] = _nans(fix_count)
            continue
        dtype = np.dtype(kind)
        out[name] = np.frombuffer(data, dtype=dtype, count=fix_count, offset=offset)
        offset += dtype.itemsize * fix_count
    return DayColumns(**out)  # type: ignore[arg-type]


_USABLE_FILTER: LiteralString = """
    FROM track_days t JOIN devices d ON d.device_id = t.device_id
    WHERE t.device_id = %(device)s AND t.day BETWEEN %(first_day)s AND %(last_day)s
        AND t.t1 > %(start)s AND t.t0 < %(end)s AND t.format = %(format)s
        AND t.t0 = (t.day::timestamp AT TIME ZONE d.time_zone)
        AND NOT EXISTS (SELECT 1 FROM summary_dirty s WHERE s.device_id = t.device_id AND s.day = t.day)"""
_USABLE_WHERE: LiteralString = _USABLE_FILTER + "\n    ORDER BY t.t0"
_USABLE: LiteralString = "SELECT t.t0, t.t1, t.fix_count, t.fixes, NULL::bytea" + _USABLE_WHERE
# The columns but significance (time, lat, lon | significance | speed, fix_type): two slices of the
# out-of-line value, so the server reads a fifth fewer TOAST chunks (trips need no significance).
_MOTION_FIXES: LiteralString = ("substring(t.fixes FROM 1 FOR 24 * t.fix_count) "
                                "|| substring(t.fixes FROM 32 * t.fix_count + 1)")
_USABLE_MOTION: LiteralString = (f"SELECT t.t0, t.t1, t.fix_count, {_MOTION_FIXES}, NULL::bytea"
                                 + _USABLE_WHERE)
# A day without fix-less rows and with `kept`: the prefix of `kept` above the ladder step only.
_FAST: LiteralString = ("coalesce(t.kept IS NOT NULL AND t.no_fix_rows = 0 AND t.t0 >= %(start)s "
                        "AND t.t1 <= %(end)s AND array_length(t.kept_ladder, 1) >= %(step)s::int, false)")
_USABLE_KEPT: LiteralString = (
    f"SELECT t.t0, t.t1, t.fix_count, CASE WHEN NOT {_FAST} THEN t.fixes END, "
    f"CASE WHEN {_FAST} THEN substring(t.kept FROM 1 FOR %(row)s::int * t.kept_ladder[%(step)s::int]) END"
    + _USABLE_WHERE)


_MIDNIGHTS: LiteralString = """
    SELECT coalesce(array_agg(m ORDER BY m) FILTER (WHERE m > %(start)s AND m < %(end)s), '{}')
    FROM devices d CROSS JOIN LATERAL generate_series((%(start)s AT TIME ZONE d.time_zone)::date,
                                                      (%(end)s AT TIME ZONE d.time_zone)::date,
                                                      interval '1 day') AS g
    CROSS JOIN LATERAL (SELECT (g::date::timestamp AT TIME ZONE d.time_zone) AS m) x
    WHERE d.device_id = %(device)s"""


def usable_days(conn: Conn, device_id: str, start: datetime, end: datetime, *,
                tolerance_m: float | None = None, significance: bool = True) -> list[PackedDay]:
    """The exact packed days of `device_id` that overlap [start, end), in time order, those
    partly inside cut to it. With a `tolerance_m` of at least `KEPT_MIN_M`, a day wholly inside
    without fix-less rows comes as its kept rows above the ladder step at or below it
    (`complete` False), a superset of what the tolerance keeps. `significance=False` reads the
    rows without their significance (NaN), a fifth less to read."""
    # A local day lies within 14 h of its UTC date: the day bounds only help partition pruning.
    params: dict[str, object] = {
        "device": device_id, "start": start, "end": end, "format": FORMAT,
        "first_day": (start - timedelta(days=2)).date(), "last_day": (end + timedelta(days=2)).date()}
    query = _USABLE if significance else _USABLE_MOTION
    if tolerance_m is not None and tolerance_m >= KEPT_MIN_M:
        query = _USABLE_KEPT
        params.update(row=ROW_BYTES, step=ladder_step(tolerance_m))
    days: list[PackedDay | None] = []
    kept: list[tuple[int, datetime, datetime, int, bytes]] = []  # (index in days, t0, t1, count, prefix)
    for t0, t1, count, data, prefix in conn.execute(query, params, binary=True).fetchall():
        if data is None:
            data = bytes(prefix or b"")
            if len(data) % ROW_BYTES:  # checked day by day: joined, two bad ones could look whole
                raise StoreError(f"a kept prefix of {len(data)} bytes is not whole {ROW_BYTES}-byte rows")
            kept.append((len(days), t0, t1, count, data))
            days.append(None)
        elif t0 < start or t1 > end:
            days.append(_cut(t0, t1, unpack(bytes(data), count, significance=significance), start, end))
        else:
            days.append(PackedDay(t0, t1, unpack(bytes(data), count, significance=significance), count))
    if kept:
        # The kept prefixes of all days at once: one sort and one set of columns, each day a slice.
        columns = unpack_kept(b"".join(k[4] for k in kept))
        bounds = np.cumsum([0, *(len(k[4]) // ROW_BYTES for k in kept)]).tolist()
        for (at, t0, t1, count, _), lo, hi in zip(kept, bounds[:-1], bounds[1:], strict=True):
            days[at] = PackedDay(t0, t1, columns.rows(lo, hi), count, complete=False)
    return [day for day in days if day is not None]


def local_midnights(conn: Conn, device_id: str, start: datetime, end: datetime) -> list[datetime]:
    """The starts of the device's local days strictly inside (start, end), as the database
    computes them for `track_days.t0` (the same rule on days without a midnight)."""
    row = conn.execute(_MIDNIGHTS, {"device": device_id, "start": start, "end": end}).fetchone()
    return list(row[0]) if row is not None and row[0] is not None else []


# Each day's fixes, and its ignition samples with the last one before it (motion.SAMPLE rows; the
# literal 42, motion.IGNITION_SIGNAL_ID, lets the planner use the partial index of migration 0007).
_RAW_DAYS: LiteralString = f"""
    SELECT c.device_id, c.day, b.t0, b.t1, (
        SELECT {RAW_FIX_SQL} FROM positions p
        WHERE p.device_id = c.device_id AND p.time >= b.t0 AND p.time < b.t1), (
        SELECT string_agg(timestamptz_send(i.time) || float8send(i.value), ''::bytea ORDER BY i.time, i.value)
        FROM ((SELECT s.time, s.value FROM signal_samples s
               WHERE s.device_id = c.device_id AND s.signal_id = 42 AND s.time < b.t0
               ORDER BY s.time DESC, s.value DESC LIMIT 1)
              UNION ALL
              SELECT s.time, s.value FROM signal_samples s
              WHERE s.device_id = c.device_id AND s.signal_id = 42 AND s.time >= b.t0 AND s.time < b.t1) i)
    FROM unnest(%(device)s::text[], %(day)s::date[]) AS c(device_id, day)
    JOIN devices d ON d.device_id = c.device_id
    CROSS JOIN LATERAL (SELECT (c.day::timestamp AT TIME ZONE d.time_zone) AS t0,
                               ((c.day + 1)::timestamp AT TIME ZONE d.time_zone) AS t1) b"""

_UPSERT: LiteralString = """
    INSERT INTO track_days AS t (device_id, day, t0, t1, format, fix_count, fixes, kept, kept_ladder,
                                 no_fix_rows, runs)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (device_id, day) DO UPDATE SET
        t0 = EXCLUDED.t0, t1 = EXCLUDED.t1, format = EXCLUDED.format, fix_count = EXCLUDED.fix_count,
        fixes = EXCLUDED.fixes, kept = EXCLUDED.kept, kept_ladder = EXCLUDED.kept_ladder,
        no_fix_rows = EXCLUDED.no_fix_rows, runs = EXCLUDED.runs, packed_at = now()"""


def _day_runs(raw: DayColumns, ignition: bytes, t0_ns: int) -> bytes:
    """`motion.pack_runs` of a day's rows and its ignition samples (the first may lie before it)."""
    sample_ns, value = motion.decode_ignition(ignition)
    fixed = raw.fix_type != 0
    time_ns = raw.time_us[fixed] * 1000
    speed = raw.speed_kmh[fixed].astype(np.float64)
    track = motion.Track(time_ns, raw.lat_deg[fixed], raw.lon_deg[fixed], speed,
                         motion.carry_forward(sample_ns, value, time_ns))
    before = sample_ns[sample_ns < t0_ns]
    return motion.pack_runs(track, int(before[-1]) if len(before) else None)


@dataclass(frozen=True)
class RunsDay:
    """A packed day wholly inside a range, [t0, t1), with its runs."""

    t0: datetime
    t1: datetime
    runs: motion.DayRuns


_USABLE_RUNS: LiteralString = ("SELECT t.t0, t.t1, t.runs" + _USABLE_FILTER + " AND t.runs IS NOT NULL"
                               " AND t.t0 >= %(start)s AND t.t1 <= %(end)s ORDER BY t.t0")


def usable_runs(conn: Conn, device_id: str, start: datetime, end: datetime) -> list[RunsDay]:
    """The exact packed days of `device_id` wholly inside [start, end) that have runs, in time order."""
    params = {"device": device_id, "start": start, "end": end, "format": FORMAT,
              "first_day": (start - timedelta(days=2)).date(), "last_day": (end + timedelta(days=2)).date()}
    return [RunsDay(t0, t1, motion.unpack_runs(bytes(data)))
            for t0, t1, data in conn.execute(_USABLE_RUNS, params, binary=True).fetchall()]


def pack_days(conn: Conn, days: Sequence[tuple[str, date]]) -> int:
    """(Re)pack the given (device, local day) pairs from `positions`; returns rows written.
    Runs inside the caller's transaction (the one that claimed the days as dirty); plain
    storage needs the day's `track_days` partition to exist (the receiver makes it)."""
    written = 0
    for first in range(0, len(days), PACK_BATCH):
        chunk = days[first:first + PACK_BATCH]
        rows = conn.execute(_RAW_DAYS, {"device": [d for d, _ in chunk], "day": [day for _, day in chunk]},
                            binary=True).fetchall()
        values = []
        for device_id, day, t0, t1, data, ignition in rows:
            raw = decode_raw(None if data is None else bytes(data))
            has_fix = raw.fix_type != 0
            columns = DayColumns(raw.time_us, raw.lat_deg, raw.lon_deg,
                                 track_significance(raw.lat_deg, raw.lon_deg, has_fix),
                                 raw.speed_kmh, raw.fix_type)
            kept, ladder, no_fix_rows = kept_rows(columns)
            values.append((device_id, day, t0, t1, FORMAT, len(columns), pack(columns), kept, ladder,
                           no_fix_rows, _day_runs(raw, bytes(ignition or b""), epoch_us(t0) * 1000)))
        if values:
            with conn.cursor() as cursor:
                cursor.executemany(_UPSERT, values)
        written += len(values)
    return written
