"""Vectorised LEB128 varints (numpy): how integer columns travel inside a CBOR byte string.

Each value is 1..8 bytes, 7 bits per byte, least significant group first, high bit set on every
byte but the last. Signed columns are zigzag-mapped first (0, -1, 1, -2, ... → 0, 1, 2, 3, ...),
so small magnitudes of either sign take one byte. The encoding is canonical: a multi-byte value
never ends with a zero group (no overlong forms), so one value has exactly one encoding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from protocol.errors import MalformedMessageError

MAX_VARINT_BYTES = 8  # 56 bits: zigzag values up to ±2**55
MAX_MAGNITUDE = 2**55 - 1
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

_SHIFTS = [np.uint64(7 * k) for k in range(MAX_VARINT_BYTES)]
_LIMITS = [np.uint64(1 << (7 * k)) for k in range(1, MAX_VARINT_BYTES)]


def zigzag(values: I64) -> U64:
    """Signed to unsigned: 0, -1, 1, -2 → 0, 1, 2, 3 (values must fit in ±2**55)."""
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


def unzigzag(values: U64) -> I64:
    """Inverse of `zigzag`."""
    signed = values.view(np.int64)
    return (signed >> 1) ^ -(signed & 1)


def pack(values: U64) -> bytes:
    """Unsigned values (< 2**56) as concatenated varints."""
    if values.size == 0:
        return b""
    extra = np.zeros(values.shape, dtype=np.int64)
    for limit in _LIMITS:
        extra += values >= limit
    if int(extra.max()) == 0:
        return values.astype(np.uint8).tobytes()
    lengths = extra + 1
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.zeros(int(ends[-1]), dtype=np.uint8)
    for k in range(int(extra.max()) + 1):
        mask = lengths > k
        group = (values[mask] >> _SHIFTS[k]) & np.uint64(0x7F)
        more = (lengths[mask] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[mask] + k] = (group | more).astype(np.uint8)
    return out.tobytes()


def unpack(data: bytes, count: int) -> U64:
    """Exactly `count` varints from `data` (all of it); MalformedMessageError otherwise."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == count:  # every value is one byte: the common case for delta-coded columns
        if count and int(raw.max()) >= 0x80:
            raise MalformedMessageError("packed column: varint count does not match")
        return raw.astype(np.uint64)
    more = raw >= 0x80
    ends = np.flatnonzero(~more)
    if ends.size != count or (raw.size and more[-1]):
        raise MalformedMessageError(f"packed column: expected {count} varints in {raw.size} bytes")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > MAX_VARINT_BYTES:
        raise MalformedMessageError(f"packed column: a varint is longer than {MAX_VARINT_BYTES} bytes")
    if not raw[ends[lengths > 1]].all():
        raise MalformedMessageError("packed column: overlong (non-canonical) varint")
    index = np.arange(raw.size)
    shifts = (7 * (index - np.repeat(starts, lengths))).astype(np.uint64)
    groups = (raw & np.uint8(0x7F)).astype(np.uint64) << shifts
    return np.add.reduceat(groups, starts)
