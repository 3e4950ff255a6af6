"""PostgreSQL binary COPY streams built from numpy columns (no Python object per row).

psycopg's `write_row` costs a few microseconds per row in Python; ingest needs well over
100k rows/s on two cores, so telemetry rows are laid out as one numpy structured array per
message (every field fixed-width; the device id is the same for every row of a message) and
written as raw bytes. The format is PostgreSQL's documented binary COPY format: a signature
header, then per row an int16 field count and per field an int32 length and big-endian bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds

FieldKind = Literal["text", "timestamptz", "int2", "int4", "int8", "float4", "float8"]
_FORMAT: dict[str, tuple[str, int]] = {
    "timestamptz": (">i8", 8), "int2": (">i2", 2), "int4": (">i4", 4), "int8": (">i8", 8),
    "float4": (">f4", 4), "float8": (">f8", 8),
}


@dataclass(frozen=True, slots=True)
class RowLayout:
    """The columns of a COPY target, in order, with their PostgreSQL binary kinds."""

    columns: tuple[tuple[str, FieldKind], ...]

    @property
    def column_list(self) -> str:
        return ", ".join(name for name, _ in self.columns)

    def encode(self, count: int, values: Sequence[object]) -> bytes:
        """`count` rows as binary COPY row data (no header). `values[i]` is the i-th column: a
        numpy array of length `count`, or a scalar (bytes for text, number otherwise) repeated on
        every row. Timestamps are Unix nanoseconds (int64)."""
        if count == 0:
            return b""
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for index, (_, kind) in enumerate(self.columns):
            fields.append((f"l{index}", ">i4"))
            if kind == "text":
                value = values[index]
                assert isinstance(value, bytes)
                fields.append((f"v{index}", f"S{len(value)}" if value else "V0"))
            else:
                fields.append((f"v{index}", _FORMAT[kind][0]))
        rows = np.empty(count, dtype=np.dtype(fields))
        rows["n"] = len(self.columns)
        for index, (_, kind) in enumerate(self.columns):
            value = values[index]
            if kind == "text":
                assert isinstance(value, bytes)
                rows[f"l{index}"] = len(value)
                if value:
                    rows[f"v{index}"] = value
                continue
            rows[f"l{index}"] = _FORMAT[kind][1]
            if kind == "timestamptz":
                rows[f"v{index}"] = _pg_time(value)
            else:
                rows[f"v{index}"] = value  # type: ignore[assignment]
        return rows.tobytes()


def _pg_time(value: object) -> npt.NDArray[np.int64] | int:
    if isinstance(value, np.ndarray):
        return value.astype(np.int64) // 1000 - PG_EPOCH_US
    assert isinstance(value, int)
    return value // 1000 - PG_EPOCH_US
