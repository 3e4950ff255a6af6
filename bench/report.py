"""Shared output for benchmarks: a readable table, then one JSON line of the figures (last)."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned text table with a title line."""
    cells = [[_fmt(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}  ({platform.machine()}, Python {platform.python_version()})")
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) if i else cell.ljust(width)
                        for i, (cell, width) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def print_json_line(figures: Mapping[str, Any]) -> None:
    """The benchmark's last line: its figures as one JSON object."""
    sys.stdout.flush()
    print(json.dumps(figures, separators=(", ", ": ")), flush=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return "n/a" if value is None else str(value)
