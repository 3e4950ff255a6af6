"""Turn caller arrays into the contiguous int64 / float64 columns the compiled batch paths read."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cython_ext.errors import SampleError

_INT64_MAX = np.iinfo(np.int64).max


def as_timestamps_ns(ts_ns: object) -> npt.NDArray[np.int64]:
    """A 1-D C-contiguous int64 array of ns timestamps, or SampleError saying what is wrong."""
    try:
        array = np.asarray(ts_ns)
    except (TypeError, ValueError) as error:
        raise SampleError(f"timestamps must be a 1-D integer array of ns: {error}") from error
    if array.ndim != 1:
        raise SampleError(f"timestamps must be 1-D, got shape {array.shape}")
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind == "u":
        if int(array.max()) > _INT64_MAX:
            raise SampleError("timestamps exceed int64 ns")
    elif array.dtype.kind != "i":
        raise SampleError(f"timestamps must be integers (ns), got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def as_values(values: object, length: int, what: str = "values") -> npt.NDArray[np.float64]:
    """A 1-D C-contiguous float64 array of `length` numbers, or SampleError saying what is wrong."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise SampleError(f"{what} must be a 1-D numeric array: {error}") from error
    if array.ndim != 1:
        raise SampleError(f"{what} must be 1-D, got shape {array.shape}")
    if array.shape[0] != length:
        raise SampleError(f"{what} has {array.shape[0]} entries but there are {length} timestamps")
    if array.size and array.dtype.kind not in "fiu":
        raise SampleError(f"{what} must be real numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def as_output(out: object, rows: int, columns: int) -> npt.NDArray[np.float64]:
    """Check a caller's output array: C-contiguous, writable float64 of shape (rows, columns)."""
    if not isinstance(out, np.ndarray):
        raise SampleError(f"out must be a numpy float64 array of shape ({rows}, {columns}), got {type(out)}")
    if out.dtype != np.float64 or out.shape != (rows, columns):
        raise SampleError(f"out must be float64 of shape ({rows}, {columns}), got {out.dtype} {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise SampleError("out must be C-contiguous and writable")
    return out
