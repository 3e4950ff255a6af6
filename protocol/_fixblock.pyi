"""Type stubs of the compiled fix-block decoder (protocol/_fixblock.pyx)."""

from typing import Any

import numpy as np
import numpy.typing as npt

MALFORMED: int
TOO_WIDE: int
ROW_ERROR: int

def decode_fixes(
    packed: bytes, n: int, mask: int, base: list[int], t0: int, order2: int, heading_row: int,
    heading_wrap: int, divisor: npt.NDArray[np.float64], lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64],
    max_time_ms: int, wide_limit: int,
) -> tuple[tuple[Any, ...], ...] | int: ...
