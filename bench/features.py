"""Benchmark the streaming feature extractors (cython_ext) against the usual alternatives.

Workload: a FeatureSet of {mean, variance, min, max, EWMA} over a 600-sample count window; after
every sample the five features are updated *and read* (a rolling series), the way a detector that
looks at every sample would use them. Rows, all measured in this run:
  cython batch        FeatureSet.push_many(ts, vs, out): one nogil loop; out row i = features after sample i
  cython per-sample   FeatureSet.push(t, v) + read_into(row) from a Python loop
  python reference    cython_ext.reference.FeatureSet (the exact test oracle: recomputes on read)
  numpy window        append to a numpy ring, recompute np.mean/var/min/max over the window each sample
  river               river.utils.Rolling(stats.Mean/Var) + stats.RollingMin/RollingMax + stats.EWMean
plus rolling median+MAD (600 window, batch path), River's RollingQuantile median for scale, and
the batch path's instructions per sample from `valgrind --tool=callgrind` (two invocations of
different length, so interpreter start-up cancels out; null without valgrind).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import print_json_line, print_table  # noqa: E402
from cython_ext import reference  # noqa: E402
from cython_ext import spec as sp  # noqa: E402
from cython_ext.features import FeatureSet  # noqa: E402

WINDOW = 600
ALPHA = 0.1
FEATURES: tuple[sp.FeatureSpec, ...] = (sp.Mean(), sp.Variance(), sp.Min(), sp.Max(), sp.EWMA(alpha=ALPHA))


def _stream(n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(2026)
    ts = (1_767_225_600 * 10**9 + np.arange(n, dtype=np.int64) * 10_000_000).astype(np.int64)
    vs = 13.8 + np.cumsum(rng.normal(0.0, 0.01, n)) + rng.normal(0.0, 0.05, n)  # a 12 V supply, 100 Hz
    return ts, vs


def _best_rate(samples: int, run: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return samples / best


def cython_batch(n: int, read_rows: bool) -> float:
    ts, vs = _stream(n)
    out = np.ones((n, len(FEATURES)))  # touched up front: page faults are not the kernel's cost

    def run() -> None:
        fs = FeatureSet(FEATURES, WINDOW)
        if read_rows:
            fs.push_many(ts, vs, out)
        else:
            fs.push_many(ts, vs)

    return _best_rate(n, run, 3)


def cython_per_sample(n: int) -> float:
    ts, vs = _stream(n)
    pairs = list(zip(ts.tolist(), vs.tolist(), strict=True))

    def run() -> None:
        fs = FeatureSet(FEATURES, WINDOW)
        push, read_into = fs.push, fs.read_into
        row = np.empty(len(FEATURES))
        for t, v in pairs:
            push(t, v)
            read_into(row)

    return _best_rate(n, run, 3)


def python_reference(n: int, repeats: int = 3) -> float:
    ts, vs = _stream(WINDOW + n)
    pairs = list(zip(ts[WINDOW:].tolist(), vs[WINDOW:].tolist(), strict=True))
    best = float("inf")
    for _ in range(repeats):
        fs = reference.FeatureSet(FEATURES, WINDOW)
        fs.push_many(ts[:WINDOW], vs[:WINDOW])  # a full window, as in steady state (not timed)
        start = time.perf_counter()
        for t, v in pairs:
            fs.push(t, v)
            fs.values()
        best = min(best, time.perf_counter() - start)
    return n / best


def numpy_window(n: int) -> float:
    _, vs = _stream(WINDOW + n)
    values = vs.tolist()

    def run() -> None:
        ring = np.empty(2 * WINDOW)  # mirrored, so the window is always one slice
        head = size = 0
        ewma = float("nan")
        row = np.empty(len(FEATURES))
        for v in values:
            ring[head] = ring[head + WINDOW] = v
            head = (head + 1) % WINDOW
            size = min(size + 1, WINDOW)
            start = head - size + (WINDOW if head < size else 0)
            window = ring[start:start + size]
            ewma = v if ewma != ewma else ewma + ALPHA * (v - ewma)
            var = window.var(ddof=1) if size > 1 else np.nan
            row[:] = (window.mean(), var, window.min(), window.max(), ewma)

    return _best_rate(len(values), run, 3)


def river_rolling(n: int) -> float | None:
    try:
        from river import stats, utils
    except ImportError:
        return None
    _, vs = _stream(n)
    values = vs.tolist()

    def run() -> None:
        mean = utils.Rolling(stats.Mean, window_size=WINDOW)
        var = utils.Rolling(stats.Var, window_size=WINDOW)
        low, high = stats.RollingMin(WINDOW), stats.RollingMax(WINDOW)
        ewma = stats.EWMean(fading_factor=ALPHA)
        for v in values:
            mean.update(v)
            var.update(v)
            low.update(v)
            high.update(v)
            ewma.update(v)
            (mean.get(), var.get(), low.get(), high.get(), ewma.get())  # type: ignore[operator]

    return _best_rate(n, run, 3)


def median_mad(n: int) -> float:
    ts, vs = _stream(n)
    out = np.ones((n, 2))

    def run() -> None:
        FeatureSet((sp.Median(), sp.MAD()), WINDOW).push_many(ts, vs, out)

    return _best_rate(n, run, 3)


def river_median(n: int) -> float | None:
    try:
        from river import stats
    except ImportError:
        return None
    _, vs = _stream(n)
    values = vs.tolist()

    def run() -> None:
        q = stats.RollingQuantile(0.5, WINDOW)
        for v in values:
            q.update(v)
            q.get()

    return _best_rate(n, run, 3)


_CALLGRIND_SCRIPT = """
import sys
import numpy as np
from bench.features import FEATURES, WINDOW, _stream
from cython_ext.features import FeatureSet
n, rows = int(sys.argv[1]), sys.argv[2] == "rows"
ts, vs = _stream(n)
out = np.ones((n, len(FEATURES)))
FeatureSet(FEATURES, WINDOW).push_many(ts, vs, out if rows else None)
"""


def instructions_per_sample(rows: bool, small: int = 20_000, large: int = 220_000) -> float | None:
    """Ir counted inside FeatureSet.push_many by callgrind, per sample (difference of two runs)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    totals: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            out_file = os.path.join(tmp, f"callgrind.{n}.out")
            result = subprocess.run(
                [valgrind, "--tool=callgrind", f"--callgrind-out-file={out_file}", "--collect-atstart=no",
                 "--toggle-collect=__pyx_pw_*FeatureSet*push_many", sys.executable, "-c", _CALLGRIND_SCRIPT,
                 str(n), "rows" if rows else "update"],
                cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
            )
            if result.returncode != 0 or not os.path.exists(out_file):
                print(f"callgrind failed: {result.stderr[-500:]}", file=sys.stderr)
                return None
            match = re.search(r"^totals:\s+(\d+)", Path(out_file).read_text(), re.MULTILINE)
            if match is None or int(match.group(1)) == 0:
                return None
            totals.append(int(match.group(1)))
    return (totals[1] - totals[0]) / (large - small)


def main() -> None:
    print(f"feature set {[s.name for s in FEATURES]}, window {WINDOW}; measuring ...", file=sys.stderr)
    rates: dict[str, float | None] = {}
    rates["cython_batch"] = cython_batch(2_000_000, read_rows=True)
    batch_update_only = cython_batch(2_000_000, read_rows=False)
    rates["cython_per_sample"] = cython_per_sample(300_000)
    print("  cython done; pure Python and numpy ...", file=sys.stderr)
    rates["python_reference"] = python_reference(1_500)
    rates["numpy_window"] = numpy_window(15_000)
    print("  river ...", file=sys.stderr)
    rates["river"] = river_rolling(40_000)
    mm = median_mad(1_000_000)
    river_q = river_median(30_000)
    print("  callgrind (four short runs) ...", file=sys.stderr)
    ir = instructions_per_sample(rows=True)
    ir_update = instructions_per_sample(rows=False)

    river = rates["river"]

    def vs_river(rate: float | None, baseline: float | None = river) -> float | None:
        return None if rate is None or not baseline else rate / baseline

    rows: list[list[object]] = [
        ["cython batch (push_many, rows out)", rates["cython_batch"], vs_river(rates["cython_batch"]),
         "≥100× river, ≥30 M/s"],
        ["cython batch (update only, read at end)", batch_update_only, vs_river(batch_update_only), ""],
        ["cython per-sample (push + read_into)", rates["cython_per_sample"],
         vs_river(rates["cython_per_sample"]), "≥10× river"],
        ["python reference (exact oracle)", rates["python_reference"],
         vs_river(rates["python_reference"]), ""],
        ["numpy recompute-the-window", rates["numpy_window"], vs_river(rates["numpy_window"]), ""],
        ["river Rolling/RollingMin/Max/EWMean", river, 1.0 if river else None, "baseline"],
        ["cython median+MAD (batch, rows out)", mm, vs_river(mm, river_q), "≥1 M/s (× = vs river median)"],
        ["river RollingQuantile(0.5), median only", river_q, 1.0 if river_q else None, ""],
    ]
    print_table(f"Streaming features, window {WINDOW}: samples/s",
                ["path", "samples/s", "× river", "goal"], rows)
    batch, per_sample = rates["cython_batch"] or 0.0, rates["cython_per_sample"] or 0.0
    goals = [
        ("batch ≥ 100× river", river is not None and batch >= 100 * river),
        ("batch ≥ 30 M samples/s", batch >= 30e6),
        ("per-sample ≥ 10× river", river is not None and per_sample >= 10 * river),
        ("median/MAD ≥ 1 M samples/s", mm >= 1e6),
    ]
    print_table("Goals", ["goal", "met"], [[name, "yes" if ok else "NO"] for name, ok in goals])
    print_table("Energy proxy", ["path", "instructions/sample"],
                [["cython batch, rows out (callgrind Ir inside push_many)", ir],
                 ["cython batch, update only", ir_update]])
    print_json_line({
        "samples_per_s": {k: (None if v is None else round(v)) for k, v in rates.items()},
        "median_mad_samples_per_s": round(mm),
        "instructions_per_sample": None if ir is None else round(ir, 1),
    })


if __name__ == "__main__":
    main()
