"""Numeric column checks for the encoders: typed numpy arrays out of untyped tuples."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.errors import InvalidFieldError
from protocol.limits import MAX_TIME_MS

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def int_column(values: tuple[Any, ...], what: str) -> I64:
    column = np.asarray(values)
    if column.size and column.dtype.kind not in "iu":
        raise InvalidFieldError(f"{what} must hold integers (64-bit)")
    return column.astype(np.int64)


def times_ms(values: tuple[int, ...], what: str) -> I64:
    ms = int_column(values, what) // 1_000_000
    if ms.size and (int(ms.min()) < 0 or int(ms.max()) > MAX_TIME_MS):
        raise InvalidFieldError(f"{what} must be UTC ns in 0..{MAX_TIME_MS * 1_000_000}")
    return ms


def number_column(values: tuple[Any, ...], what: str) -> F64:
    column = np.asarray(values)
    if column.size and column.dtype.kind not in "iuf":
        raise InvalidFieldError(f"{what} must hold numbers")
    return column.astype(np.float64)
