"""The sample block of a telemetry batch: time, signal id and value columns, delta-coded per signal.

One spill-coded block of 3 × n values, in the batch's sample order: all times, all signal ids,
all values. Within each signal (the samples with the same id, in batch order) times (ms since the
batch's t0) travel as second-order differences (periodic sampling gives zeros), values as
first-order differences of `round(value / resolution)` with the catalog resolution of that
signal. The encoder and decoder sort by id once and work on segments of equal id.
"""

from __future__ import annotations

import numpy as np

from protocol import spill
from protocol.catalog import Catalog
from protocol.errors import InvalidFieldError, UnknownSignalError
from protocol.limits import MAX_SPAN_MS, MAX_TIME_MS
from protocol.messages import SampleColumns
from protocol.numeric import F64, I64, Bools, int_column, number_column

_VALUE_LIMIT = 2**40  # |scaled sample value|
_VALUE_DIFF_LIMIT = 2**41
_TIME_DIFF_LIMIT = 2**31  # |int64-plane time difference| (keeps second-order sums in int64)
_accumulate = np.add.accumulate
_max_accumulate = np.maximum.accumulate


class _SignalTables:
    """Per-catalog lookup arrays indexed by `slots(ids)`: one slot per id up to the catalog's
    largest, and one last slot (unknown, unscaled) for every larger id — a few hundred bytes for
    the shipped catalog instead of tables over all 65,536 ids (RSS on the gateway)."""

    def __init__(self, catalog: Catalog) -> None:
        self.unknown_slot = max((signal.id for signal in catalog.signals), default=0) + 1
        size = self.unknown_slot + 1
        self.known = np.zeros(size, dtype=bool)
        self.is_bool = np.zeros(size, dtype=bool)
        self.divisor: F64 = np.ones(size, dtype=np.float64)
        self.multiplier: F64 = np.ones(size, dtype=np.float64)
        for signal in catalog.signals:
            self.known[signal.id] = True
            self.is_bool[signal.id] = signal.type == "bool"
            inverse = 1 / signal.resolution
            if abs(inverse - round(inverse)) < 1e-9 * inverse:
                self.divisor[signal.id] = round(inverse)  # v / 10**k is exactly the decimal value
            else:
                self.multiplier[signal.id] = signal.resolution

    def slots(self, ids: I64) -> I64:
        """The table index of each id (ids in 1..65535, checked by the caller)."""
        return np.minimum(ids, self.unknown_slot)


_TABLES: dict[int, tuple[Catalog, _SignalTables]] = {}


def _tables(catalog: Catalog) -> _SignalTables:
    entry = _TABLES.get(id(catalog))
    if entry is None or entry[0] is not catalog:
        entry = (catalog, _SignalTables(catalog))
        _TABLES[id(catalog)] = entry
    return entry[1]


def _group_starts(ids_sorted: I64) -> tuple[Bools, Bools]:
    """Masks of each signal's first sample, and of its first two samples, in id-sorted order."""
    first = np.empty(ids_sorted.size, dtype=bool)
    first[0] = True
    np.not_equal(ids_sorted[1:], ids_sorted[:-1], out=first[1:])
    first2 = first.copy()
    first2[1:] |= first[:-1]
    return first, first2


def _segment_diff(values: I64, starts: Bools) -> I64:
    diffs = np.diff(values, prepend=0)
    diffs[starts] = values[starts]
    return diffs


def _segment_heads(starts: Bools) -> I64:
    """For every position, the position where its segment starts (`starts[0]` must be set)."""
    return _max_accumulate(np.where(starts, np.arange(starts.size), 0))


def _segment_cumsum(diffs: I64, heads: I64) -> I64:
    """Running sums of `diffs` that restart at every segment (`heads` from `_segment_heads`)."""
    sums = _accumulate(diffs)
    before = sums - diffs
    return sums - before[heads]


def encode(samples: SampleColumns, times: I64, catalog: Catalog) -> bytes:
    """The sample block of a batch; `times` are ms since the batch's t0 (validates every column)."""
    tables = _tables(catalog)
    ids = int_column(samples.signal_id, "samples.signal_id")
    if int(ids.min()) < 1 or int(ids.max()) > 65535:
        raise InvalidFieldError("samples.signal_id must be in 1..65535")
    slots = tables.slots(ids)
    unknown = ~tables.known[slots]
    if unknown.any():
        raise UnknownSignalError(f"signal id {int(ids[unknown][0])} is not in catalog v{catalog.version}")
    values = number_column(samples.value, "samples.value")
    if (tables.is_bool[slots] & (values != 0) & (values != 1)).any():
        raise InvalidFieldError("a bool signal's value must be 0 or 1")
    scaled = np.rint(values * tables.divisor[slots] / tables.multiplier[slots])
    if not (np.isfinite(scaled).all() and np.abs(scaled).max() <= _VALUE_LIMIT):
        raise InvalidFieldError("samples.value out of range for its signal's resolution (or not finite)")
    order = np.argsort(ids, kind="stable")
    first, first2 = _group_starts(ids[order])
    time_diffs = _segment_diff(_segment_diff(times[order], first), first2)
    value_diffs = _segment_diff(scaled.astype(np.int64)[order], first)
    stream = np.empty(3 * ids.size, dtype=np.int64)
    stream[ids.size:2 * ids.size] = ids
    stream[:ids.size][order] = time_diffs
    stream[2 * ids.size:][order] = value_diffs
    return spill.pack(stream)


def decode(
    packed: bytes, ns: int, t0: int, catalog: Catalog, catalog_version: int
) -> tuple[SampleColumns, frozenset[int]]:
    """The sample columns of a block, and the ids kept raw because `catalog` is older than the batch's."""
    tables = _tables(catalog)
    stream, wide = spill.unpack(packed, 3 * ns)
    time_diffs, ids, value_diffs = stream[:ns], stream[ns:2 * ns], stream[2 * ns:]
    if int(ids.min()) < 1 or int(ids.max()) > 65535:
        raise InvalidFieldError("telemetry body: samples.signal_id must be in 1..65535")
    if wide and (int(np.abs(time_diffs).max()) > _TIME_DIFF_LIMIT
                 or int(np.abs(value_diffs).max()) > _VALUE_DIFF_LIMIT):
        raise InvalidFieldError("telemetry body: a sample difference is out of range")
    order = np.argsort(ids, kind="stable")
    first, first2 = _group_starts(ids[order])
    heads, heads2 = _segment_heads(first), _segment_heads(first2)
    times = np.empty(ns, dtype=np.int64)
    times[order] = _segment_cumsum(_segment_cumsum(time_diffs[order], heads2), heads)
    values = np.empty(ns, dtype=np.int64)
    values[order] = _segment_cumsum(value_diffs[order], heads)
    if int(times.min()) < 0 or int(times.max()) > min(MAX_SPAN_MS, MAX_TIME_MS - t0):
        raise InvalidFieldError("telemetry body: samples.time_ns out of range")
    if int(np.abs(values).max()) > _VALUE_LIMIT:
        raise InvalidFieldError("telemetry body: a sample value is out of range")
    slots = tables.slots(ids)
    known = tables.known[slots]
    raw_ids = frozenset[int]()
    if not known.all():
        unknown_ids = sorted(set(ids[~known].tolist()))
        if catalog_version <= catalog.version:
            raise UnknownSignalError(
                f"signal id {unknown_ids[0]} is not in catalog v{catalog_version} (receiver has "
                f"v{catalog.version})")
        raw_ids = frozenset(unknown_ids)
    if (tables.is_bool[slots] & (values != 0) & (values != 1)).any():
        raise InvalidFieldError("telemetry body: a bool signal's value must be 0 or 1")
    physical = values * tables.multiplier[slots] / tables.divisor[slots]
    columns = SampleColumns(
        tuple(((times + t0) * 1_000_000).tolist()), tuple(ids.tolist()), tuple(physical.tolist()))
    return columns, raw_ids
