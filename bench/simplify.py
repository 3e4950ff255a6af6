"""Benchmark the Douglas-Peucker significance of a track: compiled (cython_ext/simplify.pyx, what
`cloud.analytics.simplify.significance` runs) against the numpy level-by-level version
(`significance_numpy`, the test oracle).

Workload: the fleet of bench/api.py, one device at one fix a minute (`day_template`: a commute
out and back, parked GNSS jitter of 3 m in between): one day (1,440 fixes) and 30 days (43,200).
Rows: floor 0 (the full split tree, what packing a day stores, cloud/store/track_days.py) and
floor 10 m (what a live `simplify(tolerance_m=10)` grows for an unpacked stretch). Best of
`--repeats` runs; both versions give identical values here (checked before timing).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api import M_PER_DEG, day_template  # noqa: E402
from bench.report import print_json_line, print_table  # noqa: E402
from cloud.analytics.simplify import significance, significance_numpy  # noqa: E402

Floats = npt.NDArray[np.float64]


def track(days: int, seed: int = 2026) -> tuple[Floats, Floats]:
    """`days` of one device as bench/api.py seeds them (lat, lon in degrees)."""
    rng = np.random.default_rng(seed)
    parts = [day_template(rng) for _ in range(days)]
    north = np.concatenate([p[0] for p in parts])
    east = np.concatenate([p[1] for p in parts])
    parked = np.concatenate([p[2] for p in parts]) == 0
    north[parked] += rng.normal(0, 3, parked.sum())
    east[parked] += rng.normal(0, 3, parked.sum())
    home_lat, home_lon = 47.5, 8.0
    return home_lat + north / M_PER_DEG, home_lon + east / (M_PER_DEG * math.cos(math.radians(home_lat)))


def best_ms(run: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def measure(days: int, floor_m: float, repeats: int) -> dict[str, float]:
    lat, lon = track(days)
    fast = significance(lat, lon, floor_m=floor_m)
    slow = significance_numpy(lat, lon, floor_m=floor_m)
    if not np.array_equal(fast, slow):
        raise SystemExit(f"the versions disagree on {days} day(s) at floor {floor_m} m")
    return {"cython": best_ms(lambda: significance(lat, lon, floor_m=floor_m), repeats),
            "numpy": best_ms(lambda: significance_numpy(lat, lon, floor_m=floor_m), repeats),
            "kept_10m": int(np.count_nonzero(fast > 10.0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    rows = []
    for name, days in (("day", 1), ("month", 30)):
        for floor_m in (0.0, 10.0):
            key = f"{name}_ms" if floor_m == 0 else f"{name}_floor10_ms"
            result = measure(days, floor_m, max(3, args.repeats // (days if days > 1 else 1)))
            figures[key] = {"cython": round(result["cython"], 4), "numpy": round(result["numpy"], 4)}
            rows.append((name, days * 1440, f"{floor_m:g}", result["kept_10m"], result["cython"],
                         result["numpy"], result["numpy"] / result["cython"]))
    print_table("Douglas-Peucker significance, ms (best of repeats)",
                ("track", "fixes", "floor m", "kept at 10 m", "cython ms", "numpy ms", "speed-up"), rows)
    print_json_line(figures)


if __name__ == "__main__":
    main()
