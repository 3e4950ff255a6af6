"""bench/features.py and bench/simplify.py keep working (tiny sizes, no timing assertions: speed
lives in bench/)."""

from __future__ import annotations

from bench import features as bench


def test_every_benchmark_path_runs_on_a_tiny_stream() -> None:
    rates = [
        bench.cython_batch(5_000, read_rows=True),
        bench.cython_batch(5_000, read_rows=False),
        bench.cython_per_sample(2_000),
        bench.python_reference(20, repeats=1),
        bench.numpy_window(200),
        bench.median_mad(5_000),
    ]
    assert all(rate > 0 for rate in rates)
    river = bench.river_rolling(700)
    assert river is not None and river > 0


def test_the_simplify_benchmark_runs_on_one_day() -> None:
    from bench import simplify as bench_simplify

    result = bench_simplify.measure(1, 10.0, repeats=1)  # also checks the versions agree
    assert result["cython"] > 0 and result["numpy"] > 0 and result["kept_10m"] > 2
