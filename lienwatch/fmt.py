"""Numbers as people read them: `1,099,511,627,776`, `123,456,789 m`, `0.005` (never `1.1e+12`)."""

from __future__ import annotations

import math
from decimal import Decimal


def number(value: float, significant: int = 6) -> str:
    """A number in positional notation with thousands separators: integers exactly, floats to
    `significant` digits but never fewer than their integer part has.

    Python's `:g` switches to exponent notation above six digits; a range in an error message
    or an odometer reading must not read `1.09951e+12`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    digits = max(significant, len(str(int(abs(value)))))
    exact = Decimal(f"{value:.{digits}g}").normalize()
    if exact == exact.to_integral_value():
        return f"{int(exact):,}"
    return f"{exact:,f}"
