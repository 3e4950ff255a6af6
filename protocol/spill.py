"""Spill coding: integer columns as int8, with rare large values spilled to wider planes.

A block of N signed integers is N bytes of int8 (plane 0); a value outside -127..127 is written
as the marker -128 and stored in plane 1 (int16, little-endian), in order; there -32768 marks a
spill to plane 2 (int32), where -2**31 marks a spill to plane 3 (int64). The planes follow each
other in one byte string, so its length says exactly how many spills there are:
`len = N + 2*k1 + 4*k2 + 8*k3`. Encoders use the narrowest plane that holds a value.

Delta-coded telemetry is mostly small numbers, so this costs one byte per value in the common
case, and decoding is a few vectorised numpy operations instead of a per-byte varint walk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from protocol.errors import MalformedMessageError

I64 = npt.NDArray[np.int64]

_minimum = np.minimum.reduce
_PLANES = ((np.dtype("<i2"), -(2**15)), (np.dtype("<i4"), -(2**31)), (np.dtype("<i8"), None))


def pack(values: I64) -> bytes:
    """The spill-coded bytes of a 1-D int64 array."""
    small = (values >= -127) & (values <= 127)
    plane0 = np.where(small, values, -128).astype(np.int8).tobytes()
    if small.all():
        return plane0
    parts = [plane0]
    rest = values[~small]
    for dtype, marker in _PLANES:
        if marker is None:
            parts.append(rest.astype(dtype).tobytes())
            break
        fits = (rest > marker) & (rest <= -marker - 1)
        parts.append(np.where(fits, rest, marker).astype(dtype).tobytes())
        if fits.all():
            break
        rest = rest[~fits]
    return b"".join(parts)


def unpack(data: bytes, count: int) -> tuple[I64, bool]:
    """Exactly `count` values from all of `data`, and whether the int64 plane was used.

    Raises MalformedMessageError if `data` is not exactly one spill-coded block of `count` values.
    """
    size = len(data)
    if size < count:
        raise MalformedMessageError(f"packed column: {size} bytes cannot hold {count} values")
    plane0 = np.frombuffer(data, dtype=np.int8, count=count)
    values = plane0.astype(np.int64)
    if size == count:
        if count and int(_minimum(plane0)) == -128:
            raise MalformedMessageError("packed column: a spilled value is missing")
        return values, False
    where = (plane0 == -128).nonzero()[0]
    offset = count
    for dtype, marker in _PLANES:
        if where.size == 0:
            break
        end = offset + where.size * dtype.itemsize
        if end > size:
            raise MalformedMessageError("packed column: a spilled value is missing")
        plane = np.frombuffer(data, dtype=dtype, count=where.size, offset=offset)
        values[where] = plane
        offset = end
        if marker is None or int(_minimum(plane)) > marker:
            break
        where = where[(plane == marker).nonzero()[0]]
    if offset != size:
        raise MalformedMessageError(f"packed column: {size - offset} bytes left after {count} values")
    return values, marker is None
