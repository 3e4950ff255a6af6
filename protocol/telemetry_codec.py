"""The telemetry batch body: columnar, delta-coded, scaled integers packed as varints.

This is the hot path of both ends (a gateway encodes a batch a minute, a receiver decodes
100k rows/s), so every column is handled as a numpy vector and the CBOR layer sees only a
handful of items per batch. Layout (docs/protocol.md, "Telemetry batch"):

- fixes: nine integer columns (time ms since `t0`, lat/lon in 1e-7 degree, alt 0.1 m, speed
  0.01 km/h, heading 0.1 degree, hdop 0.01, satellites, fix type; resolutions from the signal
  catalog). Each column is sent as its first value (`base`) and then its order-k differences:
  second order for time and position (steady 1 Hz driving gives zeros), first order for the
  rest (heading wraps at 360 degrees). All-zero difference columns are left out (`mask`).
- samples: three columns (time delta, signal id, value delta against the previous sample of
  the same signal in this batch), values scaled by the catalog resolution of their signal.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol import varint
from protocol.catalog import Catalog
from protocol.errors import InvalidFieldError, MalformedMessageError, PayloadTooLargeError, UnknownSignalError
from protocol.fields import integer
from protocol.limits import MAX_FIXES, MAX_SAMPLES, MAX_TIME_MS, MAX_UNPACKED_BYTES
from protocol.messages import FixColumns, SampleColumns, TelemetryBatch

# Body map keys.
K_CATALOG, K_T0, K_NFIX, K_BASE, K_MASK, K_FIXES, K_NSAMPLE, K_SAMPLES, K_FLAGS = range(1, 10)
FLAG_DEFLATE = 1

FIX_FIELDS = (
    "time_ns", "lat_deg", "lon_deg", "alt_m", "speed_kmh", "heading_deg", "hdop", "sats", "fix_type")
# Catalog signal whose resolution scales each fix column (None: time in ms / a plain integer).
FIX_SIGNALS = (None, 20, 21, 22, 26, 23, 28, 27, 25)
_ORDER2_ROWS = 3  # time, lat, lon use second-order differences; the rest first-order
_HEADING = 5
_FLOAT_ROWS = (1, 2, 3, 4, 5, 6)
_DIFF_LIMIT = 2**34  # per-element bound on difference columns (keeps cumulative sums in int64)
_SAMPLE_TIME_DIFF_LIMIT = 2**40
_VALUE_LIMIT = 2**47  # |scaled sample value|
_VALUE_DIFF_LIMIT = 2**48

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class _FixTables:
    """Per-catalog constants for the fix columns."""

    def __init__(self, catalog: Catalog) -> None:
        divisors = [1.0]
        for signal_id in FIX_SIGNALS[1:]:
            assert signal_id is not None
            resolution = catalog.by_id(signal_id).resolution
            divisors.append(round(1 / resolution))
            if abs(divisors[-1] * resolution - 1) > 1e-9:
                raise ValueError(f"fix column signal {signal_id}: resolution must be 1/integer")
        self.divisor: F64 = np.array(divisors, dtype=np.float64)
        self.div_col: F64 = self.divisor[:, None]
        lat, lon, alt, speed, heading, hdop = (int(d) for d in divisors[1:7])
        self.heading_wrap = 360 * heading
        lo = [0, -90 * lat, -180 * lon, -1000 * alt, 0, 0, 0, 0, 0]
        hi = [MAX_TIME_MS, 90 * lat, 180 * lon, 20000 * alt, 1000 * speed, self.heading_wrap - 1,
              100 * hdop - 1, 255, 6]
        self.lo: I64 = np.array(lo, dtype=np.int64)
        self.hi: I64 = np.array(hi, dtype=np.int64)
        self.lo_col: I64 = self.lo[:, None]
        self.hi_col: I64 = self.hi[:, None]


class _SignalTables:
    """Per-catalog lookup arrays indexed by signal id (0..65535)."""

    def __init__(self, catalog: Catalog) -> None:
        self.known = np.zeros(65536, dtype=bool)
        self.is_bool = np.zeros(65536, dtype=bool)
        self.divisor: F64 = np.ones(65536, dtype=np.float64)
        self.multiplier: F64 = np.ones(65536, dtype=np.float64)
        for signal in catalog.signals:
            self.known[signal.id] = True
            self.is_bool[signal.id] = signal.type == "bool"
            inverse = 1 / signal.resolution
            if abs(inverse - round(inverse)) < 1e-9 * inverse:
                self.divisor[signal.id] = round(inverse)  # v / 10**k is exactly the decimal value
            else:
                self.multiplier[signal.id] = signal.resolution


_TABLES: dict[int, tuple[Catalog, _FixTables, _SignalTables]] = {}


def _tables(catalog: Catalog) -> tuple[_FixTables, _SignalTables]:
    entry = _TABLES.get(id(catalog))
    if entry is None or entry[0] is not catalog:
        entry = (catalog, _FixTables(catalog), _SignalTables(catalog))
        _TABLES[id(catalog)] = entry
    return entry[1], entry[2]


# --- encode -----------------------------------------------------------------------------------


def _int_column(values: tuple[Any, ...], what: str) -> I64:
    column = np.asarray(values)
    if column.size and column.dtype.kind not in "iu":
        raise InvalidFieldError(f"{what} must hold integers (64-bit)")
    return column.astype(np.int64)


def _times_ms(values: tuple[int, ...], what: str) -> I64:
    ms = _int_column(values, what) // 1_000_000
    if ms.size and (int(ms.min()) < 0 or int(ms.max()) > MAX_TIME_MS):
        raise InvalidFieldError(f"{what} must be UTC ns in 0..{MAX_TIME_MS * 1_000_000}")
    return ms


def _scaled(values: tuple[Any, ...], divisor: float, lo: int, hi: int, what: str) -> I64:
    try:
        column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidFieldError(f"{what} must hold numbers") from None
    scaled = np.rint(column * divisor)
    if scaled.size and not (np.isfinite(scaled).all() and scaled.min() >= lo and scaled.max() <= hi):
        raise InvalidFieldError(f"{what} out of range {lo / divisor}..{hi / divisor} (or not finite)")
    return scaled.astype(np.int64)


def _pack(values: I64, deflate: bool) -> bytes:
    packed = varint.pack(varint.zigzag(values))
    return zlib.compress(packed, 9, -15) if deflate and packed else packed


def encode_body(batch: TelemetryBatch, catalog: Catalog, deflate: bool) -> dict[int, Any]:
    """The CBOR body map of a telemetry batch (validates every column)."""
    fix_tables, signal_tables = _tables(catalog)
    fixes, samples = batch.fixes, batch.samples
    n, ns = len(fixes.time_ns), len(samples.time_ns)
    if n > MAX_FIXES or ns > MAX_SAMPLES:
        raise InvalidFieldError(f"a batch holds at most {MAX_FIXES} fixes and {MAX_SAMPLES} samples")
    if any(len(getattr(fixes, name)) != n for name in FIX_FIELDS):
        raise InvalidFieldError("fix columns must all have the same length")
    if len(samples.signal_id) != ns or len(samples.value) != ns:
        raise InvalidFieldError("sample columns must all have the same length")
    body: dict[int, Any] = {K_CATALOG: integer(batch.catalog_version, "catalog_version", 1, 65535)}
    fix_ms = _times_ms(fixes.time_ns, "fixes.time_ns")
    sample_ms = _times_ms(samples.time_ns, "samples.time_ns")
    if n == 0 and ns == 0:
        return body
    t0 = min(int(fix_ms.min()) if n else MAX_TIME_MS, int(sample_ms.min()) if ns else MAX_TIME_MS)
    body[K_T0] = t0
    flags = FLAG_DEFLATE if deflate else 0
    if n:
        rows = np.empty((9, n), dtype=np.int64)
        rows[0] = fix_ms - t0
        lo, hi, div = fix_tables.lo, fix_tables.hi, fix_tables.divisor
        for row in _FLOAT_ROWS:
            name = FIX_FIELDS[row]
            top = int(hi[row]) + 1 if row == _HEADING else int(hi[row])  # 359.96 degrees rounds to 360.0
            rows[row] = _scaled(getattr(fixes, name), float(div[row]), int(lo[row]), top, f"fixes.{name}")
        rows[_HEADING] %= fix_tables.heading_wrap
        for row in (7, 8):
            name = FIX_FIELDS[row]
            column = _int_column(getattr(fixes, name), f"fixes.{name}")
            if int(column.min()) < lo[row] or int(column.max()) > hi[row]:
                raise InvalidFieldError(f"fixes.{name} out of range {lo[row]}..{hi[row]}")
            rows[row] = column
        base = rows[:, 0].copy()
        diffs = np.diff(rows, axis=1)
        diffs[:_ORDER2_ROWS, 1:] = np.diff(diffs[:_ORDER2_ROWS], axis=1)
        wrap = fix_tables.heading_wrap
        diffs[_HEADING] = (diffs[_HEADING] + wrap // 2) % wrap - wrap // 2
        present = diffs.any(axis=1)
        mask = int(np.dot(present, 1 << np.arange(9)))
        body.update({K_NFIX: n, K_BASE: base.tolist(), K_MASK: mask,
                     K_FIXES: _pack(diffs[present].ravel(), deflate)})
    if ns:
        ids = _int_column(samples.signal_id, "samples.signal_id")
        if int(ids.min()) < 1 or int(ids.max()) > 65535:
            raise InvalidFieldError("samples.signal_id must be in 1..65535")
        unknown = ~signal_tables.known[ids]
        if unknown.any():
            raise UnknownSignalError(
                f"signal id {int(ids[unknown][0])} is not in catalog v{catalog.version}")
        try:
            values = np.asarray(samples.value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidFieldError("samples.value must hold numbers") from None
        scaled = np.rint(values * signal_tables.divisor[ids] / signal_tables.multiplier[ids])
        if not (np.isfinite(scaled).all() and np.abs(scaled).max() <= _VALUE_LIMIT):
            raise InvalidFieldError("samples.value out of range for its signal's resolution (or not finite)")
        quantized = scaled.astype(np.int64)
        bad_bool = signal_tables.is_bool[ids] & (values != 0) & (values != 1)
        if bad_bool.any():
            raise InvalidFieldError("a bool signal's value must be 0 or 1")
        times = sample_ms - t0
        time_diffs = np.diff(times, prepend=0)
        order = np.argsort(ids, kind="stable")
        ids_sorted, values_sorted = ids[order], quantized[order]
        value_diffs_sorted = np.diff(values_sorted, prepend=0)
        first = np.ones(ns, dtype=bool)
        first[1:] = ids_sorted[1:] != ids_sorted[:-1]
        value_diffs_sorted[first] = values_sorted[first]
        value_diffs = np.empty_like(value_diffs_sorted)
        value_diffs[order] = value_diffs_sorted
        packed = (varint.pack(varint.zigzag(time_diffs)) + varint.pack(ids.astype(np.uint64))
                  + varint.pack(varint.zigzag(value_diffs)))
        body[K_NSAMPLE] = ns
        body[K_SAMPLES] = zlib.compress(packed, 9, -15) if deflate else packed
    if flags:
        body[K_FLAGS] = flags
    return body


# --- decode -----------------------------------------------------------------------------------


def _inflate(blob: bytes, what: str) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        data = inflater.decompress(blob, MAX_UNPACKED_BYTES)
    except zlib.error as error:
        raise MalformedMessageError(f"{what}: bad deflate stream ({error})") from None
    if inflater.unconsumed_tail:
        raise PayloadTooLargeError(f"{what}: inflates to more than {MAX_UNPACKED_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise MalformedMessageError(f"{what}: truncated deflate stream or bytes after it")
    return data


def _blob(body: Mapping[Any, Any], key: int, what: str, deflated: bool) -> bytes:
    blob = body.get(key)
    if type(blob) is not bytes:
        raise MalformedMessageError(f"telemetry body: {what} must be a byte string")
    return _inflate(blob, what) if deflated else blob


def decode_body(
    body: Mapping[Any, Any], catalog: Catalog
) -> tuple[FixColumns, SampleColumns, int, frozenset[int]]:
    """Validate a telemetry body map; return fix columns, sample columns, catalog version, raw ids."""
    fix_tables, signal_tables = _tables(catalog)
    catalog_version = integer(body.get(K_CATALOG), "catalog_version", 1, 65535)
    flags = integer(body.get(K_FLAGS, 0), "flags", 0, 0xFFFF)
    if flags & ~FLAG_DEFLATE:
        raise InvalidFieldError(f"telemetry flags {flags:#x} has bits this version does not know")
    deflated = bool(flags & FLAG_DEFLATE)
    n = integer(body.get(K_NFIX, 0), "fix count", 0, MAX_FIXES)
    ns = integer(body.get(K_NSAMPLE, 0), "sample count", 0, MAX_SAMPLES)
    fixes, samples, raw_ids = FixColumns(), SampleColumns(), frozenset[int]()
    if n == 0 and ns == 0:
        return fixes, samples, catalog_version, raw_ids
    t0 = integer(body.get(K_T0), "t0_ms", 0, MAX_TIME_MS)
    if n:
        fixes = _decode_fixes(body, n, t0, deflated, fix_tables)
    if ns:
        samples, raw_ids = _decode_samples(body, ns, t0, deflated, catalog, catalog_version, signal_tables)
    return fixes, samples, catalog_version, raw_ids


def _decode_fixes(body: Mapping[Any, Any], n: int, t0: int, deflated: bool, tables: _FixTables) -> FixColumns:
    base_list = body.get(K_BASE)
    if type(base_list) is not list or len(base_list) != 9 or any(type(v) is not int for v in base_list):
        raise MalformedMessageError("telemetry body: fix base must be an array of 9 integers")
    base = np.array([v if -_DIFF_LIMIT <= v <= _DIFF_LIMIT else _DIFF_LIMIT for v in base_list],
                    dtype=np.int64)
    mask = integer(body.get(K_MASK), "fix column mask", 0, 511)
    packed = _blob(body, K_FIXES, "fix columns", deflated)
    present = [row for row in range(9) if mask >> row & 1]
    if n == 1 and mask:
        raise MalformedMessageError("telemetry body: a single fix has no difference columns")
    values = varint.unzigzag(varint.unpack(packed, len(present) * (n - 1)))
    rows = np.zeros((9, n), dtype=np.int64)
    if present:
        diffs = values.reshape(len(present), n - 1)
        if int(np.abs(diffs).max()) > _DIFF_LIMIT:
            raise InvalidFieldError("telemetry body: a fix difference is out of range")
        rows[present, 1:] = diffs
        rows[:_ORDER2_ROWS] = np.cumsum(rows[:_ORDER2_ROWS], axis=1)
        rows = np.cumsum(rows, axis=1)
    rows += base[:, None]
    rows[0] += t0
    rows[_HEADING] %= tables.heading_wrap
    if (rows < tables.lo_col).any() or (rows > tables.hi_col).any():
        bad = int(np.flatnonzero(((rows < tables.lo_col) | (rows > tables.hi_col)).any(axis=1))[0])
        raise InvalidFieldError(f"telemetry body: fixes.{FIX_FIELDS[bad]} out of range")
    scaled = (rows[1:7] / tables.div_col[1:7]).tolist()
    return FixColumns(
        tuple((rows[0] * 1_000_000).tolist()), tuple(scaled[0]), tuple(scaled[1]), tuple(scaled[2]),
        tuple(scaled[3]), tuple(scaled[4]), tuple(scaled[5]), tuple(rows[7].tolist()),
        tuple(rows[8].tolist()),
    )


def _decode_samples(
    body: Mapping[Any, Any], ns: int, t0: int, deflated: bool, catalog: Catalog, catalog_version: int,
    tables: _SignalTables,
) -> tuple[SampleColumns, frozenset[int]]:
    packed = _blob(body, K_SAMPLES, "sample columns", deflated)
    raw = varint.unpack(packed, 3 * ns)
    ids = raw[ns:2 * ns].astype(np.int64)
    if int(raw[ns:2 * ns].max()) > 65535 or int(ids.min()) < 1:
        raise InvalidFieldError("telemetry body: samples.signal_id must be in 1..65535")
    time_diffs = varint.unzigzag(raw[:ns])
    value_diffs = varint.unzigzag(raw[2 * ns:])
    if int(np.abs(time_diffs).max()) > _SAMPLE_TIME_DIFF_LIMIT:
        raise InvalidFieldError("telemetry body: a sample time difference is out of range")
    if int(np.abs(value_diffs).max()) > _VALUE_DIFF_LIMIT:
        raise InvalidFieldError("telemetry body: a sample value difference is out of range")
    times = np.cumsum(time_diffs) + t0
    if int(times.min()) < 0 or int(times.max()) > MAX_TIME_MS:
        raise InvalidFieldError("telemetry body: samples.time_ns out of range")
    order = np.argsort(ids, kind="stable")
    ids_sorted, diffs_sorted = ids[order], value_diffs[order]
    starts = np.flatnonzero(np.diff(ids_sorted, prepend=-1))
    sums = np.cumsum(diffs_sorted)
    offsets = sums[starts] - diffs_sorted[starts]
    values_sorted = sums - np.repeat(offsets, np.diff(starts, append=ns))
    values = np.empty_like(values_sorted)
    values[order] = values_sorted
    if int(np.abs(values).max()) > _VALUE_LIMIT:
        raise InvalidFieldError("telemetry body: a sample value is out of range")
    known = tables.known[ids]
    raw_ids = frozenset[int]()
    if not known.all():
        unknown_ids = sorted(set(ids[~known].tolist()))
        if catalog_version <= catalog.version:
            raise UnknownSignalError(
                f"signal id {unknown_ids[0]} is not in catalog v{catalog_version} (receiver has "
                f"v{catalog.version})")
        raw_ids = frozenset(unknown_ids)
    if (tables.is_bool[ids] & (values != 0) & (values != 1)).any():
        raise InvalidFieldError("telemetry body: a bool signal's value must be 0 or 1")
    physical = values * tables.multiplier[ids] / tables.divisor[ids]
    columns = SampleColumns(
        tuple((times * 1_000_000).tolist()), tuple(ids.tolist()), tuple(physical.tolist()))
    return columns, raw_ids
