"""argparse `type=` helpers for numeric options: finite, in range, or argparse's usage error (exit 2).

`float("nan")`, `float("inf")` and `float("-1")` all parse, so a bare `type=float` lets a
`--timeout nan` reach code that sleeps or compares with it. Every numeric command-line option
uses one of these instead.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(low: float = 0.0, high: float = math.inf, *, low_open: bool = True) -> Callable[[str], float]:
    """A finite float in `low..high` (`low` excluded when `low_open`): `--timeout 0.2`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            upper = "" if math.isinf(high) else f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number {bound}{upper}")
        return value

    return parse


def integer(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An integer in `low..high`: `--bitrate 500000`, `--port 43113`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text!r} must be an integer {span}")
        return value

    return parse


positive_float = number()
udp_port = integer(1, 65535)
