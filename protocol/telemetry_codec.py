"""The telemetry batch body: columnar, delta-coded, scaled integers in spill-coded blocks.

This is the hot path of both ends (a gateway encodes a batch a minute, a receiver decodes
100k rows/s), so every column is handled as a numpy vector and the CBOR layer sees only a
handful of items per batch. Layout (docs/protocol.md, "Telemetry batch"):

- fixes: nine integer columns (time in ms since `t0`, lat/lon in 1e-7 degree, speed 0.01 km/h,
  heading 0.1 degree, alt 0.1 m, hdop 0.01, satellites, fix type; resolutions from the signal
  catalog). Each column travels as its first value (in `base`) and its differences: second
  order for time, position, speed and heading, starting from an initial rate also in `base`
  (steady 1 Hz driving gives near-zero values), first order for the rest (heading differences
  wrap at 360 degrees).
  Columns whose differences are all zero are left out (`mask`).
- samples: three columns in the batch's sample order (protocol/sample_block.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from protocol import sample_block, spill

try:  # the compiled fix-block decoder (protocol/_fixblock.pyx), built by `pip install`
    from protocol import _fixblock
except ImportError:  # pragma: no cover - a source checkout that was not built: numpy does it all
    _fixblock = None  # type: ignore[assignment]
from protocol.catalog import Catalog
from protocol.errors import InvalidFieldError, MalformedMessageError, PayloadTooLargeError
from protocol.fields import integer
from protocol.limits import MAX_FIXES, MAX_SAMPLES, MAX_SPAN_MS, MAX_TIME_MS, MAX_UNPACKED_BYTES
from protocol.messages import FixColumns, SampleColumns, TelemetryBatch
from protocol.numeric import F64, I64, int_column, number_column, times_ms

# Body map keys.
K_CATALOG, K_T0, K_NFIX, K_BASE, K_MASK, K_FIXES, K_NSAMPLE, K_SAMPLES, K_FLAGS = range(1, 10)
FLAG_DEFLATE = 1

# Fix columns in wire order: the second-order ones first.
FIX_FIELDS = (
    "time_ns", "lat_deg", "lon_deg", "speed_kmh", "heading_deg", "alt_m", "hdop", "sats", "fix_type")
# Catalog signal whose resolution scales each fix column (None: time in ms / a plain integer).
FIX_SIGNALS = (None, 20, 21, 26, 23, 22, 28, 27, 25)
_ORDER2 = 5  # rows 0..4 (time, lat, lon, speed, heading) use second-order differences
_HEADING = 4
_FLOAT_ROWS = (1, 2, 3, 4, 5, 6)
_BASE_LIMIT = 2**36  # |base value|, |int64-plane difference| (keeps cumulative sums in int64)

_PRESENT = [tuple(row for row in range(9) if mask >> row & 1) for mask in range(512)]
# Rows of each mask as a slice when contiguous (faster assignment), else as an index list.
_ROWS_INDEX: list[slice | list[int]] = [
    slice(rows[0], rows[-1] + 1) if rows and rows == tuple(range(rows[0], rows[-1] + 1)) else list(rows)
    for rows in _PRESENT
]
_accumulate = np.add.accumulate
_minimum = np.minimum.reduce
_maximum = np.maximum.reduce

COMPILED = _fixblock is not None
ACCELERATED = True  # tests switch this off to run the numpy oracle
_NO_FIXES, _NO_SAMPLES, _NO_IDS = FixColumns(), SampleColumns(), frozenset[int]()



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
        self.div_col: F64 = self.divisor[1:7, None]
        lat, lon, speed, heading, alt, hdop = (int(d) for d in divisors[1:7])
        self.heading_wrap = 360 * heading
        lo = [0, -90 * lat, -180 * lon, 0, 0, -1000 * alt, 0, 0, 0]
        hi = [MAX_SPAN_MS, 90 * lat, 180 * lon, 1000 * speed, self.heading_wrap - 1, 20000 * alt,
              100 * hdop - 1, 255, 6]
        self.lo: I64 = np.array(lo, dtype=np.int64)
        self.hi: I64 = np.array(hi, dtype=np.int64)
        self.lo_list, self.hi_list = lo, hi


_TABLES: dict[int, tuple[Catalog, _FixTables]] = {}


def _tables(catalog: Catalog) -> _FixTables:
    entry = _TABLES.get(id(catalog))
    if entry is None or entry[0] is not catalog:
        entry = (catalog, _FixTables(catalog))
        _TABLES[id(catalog)] = entry
    return entry[1]


# --- encode -----------------------------------------------------------------------------------


def _scaled(values: tuple[Any, ...], divisor: float, lo: int, hi: int, what: str) -> I64:
    column = number_column(values, what)
    scaled = np.rint(column * divisor)
    if scaled.size and not (np.isfinite(scaled).all() and scaled.min() >= lo and scaled.max() <= hi):
        raise InvalidFieldError(f"{what} out of range {lo / divisor}..{hi / divisor} (or not finite)")
    return scaled.astype(np.int64)


def encode_body(batch: TelemetryBatch, catalog: Catalog, deflate: bool) -> dict[int, Any]:
    """The CBOR body map of a telemetry batch (validates every column)."""
    fixes, samples = batch.fixes, batch.samples
    n, ns = len(fixes.time_ns), len(samples.time_ns)
    if n > MAX_FIXES or ns > MAX_SAMPLES:
        raise InvalidFieldError(f"a batch holds at most {MAX_FIXES} fixes and {MAX_SAMPLES} samples")
    if any(len(getattr(fixes, name)) != n for name in FIX_FIELDS):
        raise InvalidFieldError("fix columns must all have the same length")
    if len(samples.signal_id) != ns or len(samples.value) != ns:
        raise InvalidFieldError("sample columns must all have the same length")
    body: dict[int, Any] = {K_CATALOG: integer(batch.catalog_version, "catalog_version", 1, 65535)}
    fix_ms = times_ms(fixes.time_ns, "fixes.time_ns")
    sample_ms = times_ms(samples.time_ns, "samples.time_ns")
    if n == 0 and ns == 0:
        return body
    all_ms = np.concatenate([fix_ms, sample_ms])
    t0, t_last = int(all_ms.min()), int(all_ms.max())
    if t_last - t0 > MAX_SPAN_MS:
        raise InvalidFieldError(f"a batch spans at most {MAX_SPAN_MS} ms; split it")
    body[K_T0] = t0
    if n:
        body.update(_encode_fixes(fixes, fix_ms - t0, _tables(catalog)))
    if ns:
        body[K_NSAMPLE] = ns
        body[K_SAMPLES] = sample_block.encode(samples, sample_ms - t0, catalog)
    if deflate:  # only when it pays: a tiny batch does not shrink
        blobs = [key for key in (K_FIXES, K_SAMPLES) if key in body]
        packed = {key: zlib.compress(body[key], 9, -15) for key in blobs}
        if sum(map(len, packed.values())) + 2 < sum(len(body[key]) for key in blobs):
            body.update(packed)
            body[K_FLAGS] = FLAG_DEFLATE
    return body


def _encode_fixes(fixes: FixColumns, times: I64, tables: _FixTables) -> dict[int, Any]:
    n = times.size
    rows = np.empty((9, n), dtype=np.int64)
    rows[0] = times
    lo, hi, div = tables.lo, tables.hi, tables.divisor
    for row in _FLOAT_ROWS:
        name = FIX_FIELDS[row]
        top = int(hi[row]) + 1 if row == _HEADING else int(hi[row])  # 359.96 degrees rounds to 360.0
        rows[row] = _scaled(getattr(fixes, name), float(div[row]), int(lo[row]), top, f"fixes.{name}")
    rows[_HEADING] %= tables.heading_wrap
    for row in (7, 8):
        name = FIX_FIELDS[row]
        column = int_column(getattr(fixes, name), f"fixes.{name}")
        if int(column.min()) < lo[row] or int(column.max()) > hi[row]:
            raise InvalidFieldError(f"fixes.{name} out of range {lo[row]}..{hi[row]}")
        rows[row] = column
    diffs = np.diff(rows, axis=1)
    wrap = tables.heading_wrap
    diffs[_HEADING] = (diffs[_HEADING] + wrap // 2) % wrap - wrap // 2
    rates = diffs[:_ORDER2, 0].copy() if n > 1 else np.zeros(_ORDER2, dtype=np.int64)
    diffs[:_ORDER2] = np.diff(diffs[:_ORDER2], axis=1, prepend=rates[:, None])
    present = diffs.any(axis=1)
    return {
        K_NFIX: n,
        K_BASE: rows[:, 0].tolist() + rates.tolist(),
        K_MASK: int(np.dot(present, 1 << np.arange(9))),
        K_FIXES: spill.pack(diffs[present].ravel()),
    }


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
    catalog_version = integer(body.get(K_CATALOG), "catalog_version", 1, 65535)
    flags = integer(body.get(K_FLAGS, 0), "flags", 0, 0xFFFF)
    if flags & ~FLAG_DEFLATE:
        raise InvalidFieldError(f"telemetry flags {flags:#x} has bits this version does not know")
    deflated = bool(flags & FLAG_DEFLATE)
    n = integer(body.get(K_NFIX, 0), "fix count", 0, MAX_FIXES)
    ns = integer(body.get(K_NSAMPLE, 0), "sample count", 0, MAX_SAMPLES)
    fixes, samples, raw_ids = _NO_FIXES, _NO_SAMPLES, _NO_IDS
    if n == 0 and ns == 0:
        return fixes, samples, catalog_version, raw_ids
    t0 = integer(body.get(K_T0), "t0_ms", 0, MAX_TIME_MS)
    if n:
        fixes = _decode_fixes(body, n, t0, deflated, _tables(catalog))
    if ns:
        packed = _blob(body, K_SAMPLES, "sample columns", deflated)
        samples, raw_ids = sample_block.decode(packed, ns, t0, catalog, catalog_version)
    return fixes, samples, catalog_version, raw_ids


def _decode_fixes(body: Mapping[Any, Any], n: int, t0: int, deflated: bool, tables: _FixTables) -> FixColumns:
    base = body.get(K_BASE)
    if type(base) is not list or len(base) != 9 + _ORDER2:
        raise MalformedMessageError(f"telemetry body: fix base must be an array of {9 + _ORDER2} integers")
    for value in base:
        if type(value) is not int or not -_BASE_LIMIT <= value <= _BASE_LIMIT:
            raise InvalidFieldError("telemetry body: fix base values must be integers within ±2**36")
    mask = integer(body.get(K_MASK), "fix column mask", 0, 511)
    packed = _blob(body, K_FIXES, "fix columns", deflated)
    if _fixblock is None or not ACCELERATED:
        return _decode_fixes_numpy(packed, n, mask, base, t0, tables)
    result = _fixblock.decode_fixes(
        packed, n, mask, base, t0, _ORDER2, _HEADING, tables.heading_wrap, tables.divisor, tables.lo,
        tables.hi, MAX_TIME_MS, _BASE_LIMIT)
    if isinstance(result, int):
        if result == _fixblock.MALFORMED:
            raise MalformedMessageError("packed column: the block does not hold exactly the announced values")
        if result == _fixblock.TOO_WIDE:
            raise InvalidFieldError("telemetry body: a fix difference is out of range")
        column = FIX_FIELDS[result - _fixblock.ROW_ERROR]
        raise InvalidFieldError(f"telemetry body: fixes.{column} out of range")
    time_ns, lat, lon, speed, heading, alt, hdop, sats, fix_type = result
    return FixColumns(time_ns=time_ns, lat_deg=lat, lon_deg=lon, speed_kmh=speed, heading_deg=heading,
                      alt_m=alt, hdop=hdop, sats=sats, fix_type=fix_type)


def _decode_fixes_numpy(
    packed: bytes, n: int, mask: int, base: list[int], t0: int, tables: _FixTables
) -> FixColumns:
    """The fix block decoder in numpy: the specification and test oracle of protocol._fixblock."""
    present = _PRESENT[mask]
    values, wide = spill.unpack(packed, len(present) * (n - 1))
    if wide and int(np.abs(values).max()) > _BASE_LIMIT:
        raise InvalidFieldError("telemetry body: a fix difference is out of range")
    rows = np.zeros((9, n), dtype=np.int64)
    if present:
        rows[_ROWS_INDEX[mask], 1:] = values.reshape(len(present), n - 1)
    if n > 1:  # second order: accumulate from the initial rate to rates, then from x0 to values
        rows[:_ORDER2, 0] = base[9:]
        _accumulate(rows[:_ORDER2], axis=1, out=rows[:_ORDER2])
    start = base[:9]
    start[0] += t0
    rows[:, 0] = start
    _accumulate(rows, axis=1, out=rows)
    lows, highs = _minimum(rows, axis=1).tolist(), _maximum(rows, axis=1).tolist()
    if lows[_HEADING] < 0 or highs[_HEADING] >= tables.heading_wrap:
        np.remainder(rows[_HEADING], tables.heading_wrap, out=rows[_HEADING])
        lows[_HEADING], highs[_HEADING] = 0, 0
    lows[0] -= t0
    highs[0] -= t0
    if t0 + highs[0] > MAX_TIME_MS:
        raise InvalidFieldError("telemetry body: fixes.time_ns out of range")
    for row, (low, high, lo, hi) in enumerate(zip(lows, highs, tables.lo_list, tables.hi_list, strict=True)):
        if low < lo or high > hi:
            raise InvalidFieldError(f"telemetry body: fixes.{FIX_FIELDS[row]} out of range")
    scaled = np.true_divide(rows[1:7], tables.div_col).tolist()
    counts = rows[7:9].tolist()
    return FixColumns(
        time_ns=tuple((rows[0] * 1_000_000).tolist()), lat_deg=tuple(scaled[0]), lon_deg=tuple(scaled[1]),
        speed_kmh=tuple(scaled[2]), heading_deg=tuple(scaled[3]), alt_m=tuple(scaled[4]),
        hdop=tuple(scaled[5]), sats=tuple(counts[0]), fix_type=tuple(counts[1]),
    )
