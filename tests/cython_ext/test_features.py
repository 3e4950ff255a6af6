"""FeatureSet semantics, numerical stability, GIL release, allocation and bad configuration."""

from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np
import pytest

from cython_ext import reference
from cython_ext import spec as sp
from cython_ext.errors import FeatureConfigError, SampleError
from cython_ext.features import FeatureSet
from cython_ext.status import PushStatus

S = 1_000_000_000  # ns per second
IMPLEMENTATIONS = [FeatureSet, reference.FeatureSet]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["cython", "reference"])
def impl(request: pytest.FixtureRequest) -> type[FeatureSet]:
    cls: type[FeatureSet] = request.param
    return cls


def test_variance_has_no_catastrophic_cancellation_on_1e9_plus_small() -> None:
    rng = np.random.default_rng(7)
    n, window = 100_000, 600
    ts = np.arange(n, dtype=np.int64) * (S // 10)
    vs = 1e9 + rng.random(n)
    fs = FeatureSet([sp.Mean(), sp.Variance()], window)
    rows = np.empty((n, 2))
    fs.push_many(ts, vs, rows)
    sums, squares = np.cumsum(vs), np.cumsum(vs * vs)
    worst = worst_naive = 0.0
    for i in range(window, n, 1_013):
        w = vs[i - window + 1:i + 1]
        mean = math.fsum(w) / window
        var = math.fsum((x - mean) ** 2 for x in w) / (window - 1)
        worst = max(worst, abs(rows[i, 1] - var) / var)
        assert abs(rows[i, 0] - mean) <= 2 * np.spacing(mean)
        s1, s2 = sums[i] - sums[i - window], squares[i] - squares[i - window]
        worst_naive = max(worst_naive, abs((s2 - s1 * s1 / window) / (window - 1) - var) / var)
    assert worst < 1e-9
    assert worst_naive > 1.0  # the textbook sum-of-squares formula is garbage here: the test can tell


def test_no_drift_after_a_million_samples() -> None:
    rng = np.random.default_rng(11)
    n, window = 1_000_000, 600
    ts = np.cumsum(rng.integers(1, 3 * S // 100, n)).astype(np.int64)
    vs = 12.5 + np.cumsum(rng.normal(0, 0.01, n)) + 1e3 * np.sin(np.arange(n) / 5e4)
    features = (sp.Mean(), sp.Variance(), sp.Slope(), sp.TimeWeightedMean(), sp.Integral(), sp.Min(),
                sp.Max(), sp.Median(), sp.MAD())
    fast = FeatureSet(features, window)
    fast.push_many(ts, vs)
    slow = reference.FeatureSet(features, window)
    slow.push_many(ts[-window:], vs[-window:])
    got, want = fast.values(), slow.values()
    assert got[5:].tolist() == want[5:].tolist()  # min, max, median, MAD: exact
    np.testing.assert_allclose(got[:5], want[:5], rtol=1e-10)


def test_count_window_keeps_the_last_n(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Mean(), sp.Min(), sp.Max(), sp.Count()], 3)
    for i, v in enumerate([5.0, 1.0, 9.0, 2.0, 4.0]):
        fs.push(i * S, v)
    assert fs.as_dict() == {"mean": 5.0, "min": 2.0, "max": 9.0, "count": 3.0}


def test_time_window_evicts_samples_at_or_before_newest_minus_duration(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Count(), sp.Mean()], 100, window_s=10.0)
    for t_s, v in [(0, 1.0), (5, 2.0), (10, 3.0), (15, 4.0)]:
        fs.push(t_s * S, v)
    assert fs.as_dict() == {"count": 2.0, "mean": 3.5}
    fs.push(100 * S, 7.0)  # a long gap empties everything but the newest sample
    assert fs.as_dict() == {"count": 1.0, "mean": 7.0}


def test_empty_and_short_windows_are_nan_not_zero(impl: type[FeatureSet]) -> None:
    features: list[sp.FeatureSpec] = [
                sp.Mean(), sp.Variance(), sp.Min(), sp.Slope(), sp.RateOfChange(), sp.TimeWeightedMean(),
                sp.Median(), sp.MAD(), sp.EWMA(alpha=0.5), sp.Integral(), sp.Crossings(0.0, 1.0)]
    fs = impl(features, 10)
    empty = fs.as_dict()
    assert all(math.isnan(empty[name]) for name in empty if name not in {"integral", "crossings"})
    assert empty["integral"] == 0.0 and empty["crossings"] == 0.0
    fs.push(S, 3.0)
    one = fs.as_dict()
    assert math.isnan(one["variance"]) and math.isnan(one["slope"]) and math.isnan(one["time_weighted_mean"])
    assert one["mean"] == one["min"] == one["median"] == one["ewma"] == 3.0 and one["mad"] == 0.0
    fs.push(S, 5.0)  # a duplicate timestamp: no time span yet
    assert math.isnan(fs["slope"]) and math.isnan(fs["rate_of_change"])
    assert fs["variance"] == 2.0


def test_nan_is_skipped_counted_and_never_poisons_the_window(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Mean(), sp.Max(), sp.EWMA(alpha=0.5), sp.Median()], 4)
    statuses = [fs.push(i * S, v) for i, v in enumerate([1.0, math.nan, 3.0, math.inf, -math.inf])]
    assert statuses == [PushStatus.ACCEPTED, PushStatus.NONFINITE, PushStatus.ACCEPTED,
                        PushStatus.NONFINITE, PushStatus.NONFINITE]
    assert fs.as_dict() == {"mean": 2.0, "max": 3.0, "ewma": 2.0, "median": 2.0}
    assert (fs.accepted, fs.nonfinite, fs.size) == (2, 3, 2)


def test_late_sample_is_rejected_and_leaves_every_feature_unchanged(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Mean(), sp.EWMA(alpha=0.5), sp.Integral(cumulative=True)], 8)
    fs.push(10 * S, 1.0)
    fs.push(20 * S, 3.0)
    before = fs.as_dict()
    assert fs.push(15 * S, 100.0) == PushStatus.LATE
    assert fs.as_dict() == before and fs.late == 1


def test_hysteresis_counts_each_real_crossing_once(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Crossings(low=-0.5, high=0.5)], 100)
    # Unknown -> high (not a crossing), chatter inside the band, then high->low, low->high.
    for i, v in enumerate([0.0, 0.6, 0.4, 0.55, 0.45, -0.6, -0.4, 0.49, -0.7, 0.6]):
        fs.push(i * S, v)
    assert fs["crossings"] == 2.0


def test_crossings_leave_the_window_with_their_sample(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Crossings(low=0.0, high=1.0)], 3)
    for i, v in enumerate([0.0, 1.0, 0.0, 0.5, 0.5, 0.5]):
        fs.push(i * S, v)
        assert fs["crossings"] == [0.0, 1.0, 2.0, 2.0, 1.0, 0.0][i]


def test_integral_of_speed_is_distance(impl: type[FeatureSet]) -> None:
    kmh = 36.0
    fs = impl([sp.Integral(scale=1 / 3600, cumulative=True), sp.Integral(scale=1 / 3600)], 61)
    for i in range(601):
        fs.push(i * S, kmh)
    assert fs["integral_total"] == pytest.approx(6.0, rel=1e-12)   # 10 min at 36 km/h = 6 km
    assert fs["integral"] == pytest.approx(0.6, rel=1e-12)         # the last 60 s


def test_time_weighted_mean_weights_by_duration(impl: type[FeatureSet]) -> None:
    fs = impl([sp.TimeWeightedMean(), sp.Mean()], 10)
    for t_s, v in [(0, 0.0), (9, 0.0), (10, 10.0)]:
        fs.push(t_s * S, v)
    # Trapezoids: 9 s at 0, then 1 s ramping 0 -> 10 (area 5) over 10 s.
    assert fs["time_weighted_mean"] == pytest.approx(0.5, rel=1e-12)
    assert fs["mean"] == pytest.approx(10 / 3)


def test_slope_and_rate_of_change_of_an_irregular_ramp(impl: type[FeatureSet]) -> None:
    rng = np.random.default_rng(3)
    ts = 1_767_225_600 * S + np.cumsum(rng.integers(S // 10, 2 * S, 200)).astype(np.int64)
    vs = 5.0 - 2.5 * (ts - ts[0]) / S
    fs = impl([sp.Slope(), sp.RateOfChange()], 50)
    fs.push_many(ts, vs)
    assert fs["slope"] == pytest.approx(-2.5, rel=1e-9)
    assert fs["rate_of_change"] == pytest.approx(-2.5, rel=1e-9)


def test_median_and_mad_known_values(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Median(), sp.MAD()], 5)
    # int64 ns: numpy's default integer is 32-bit on armhf, where arange(5) * S wraps at 2**31 ns.
    fs.push_many(np.arange(5, dtype=np.int64) * S, [4.0, 1.0, 100.0, 3.0, 2.0])
    assert fs.as_dict() == {"median": 3.0, "mad": 1.0}
    fs.clear()
    fs.push_many(np.arange(10, 14, dtype=np.int64) * S, [1.0, 2.0, 3.0, 4.0])
    assert fs.as_dict() == {"median": 2.5, "mad": 1.0}


def test_time_based_ewma_uses_elapsed_time(impl: type[FeatureSet]) -> None:
    fs = impl([sp.EWMA(halflife_s=10.0)], 4)
    fs.push(0, 0.0)
    fs.push(10 * S, 1.0)  # one half-life later: halfway
    assert fs["ewma"] == pytest.approx(0.5, rel=1e-12)


def test_batch_output_rows_equal_per_sample_reads() -> None:
    rng = np.random.default_rng(5)
    ts = np.cumsum(rng.integers(-S, 3 * S, 500)).astype(np.int64)
    vs = rng.normal(size=500)
    vs[::17] = np.nan
    features: list[sp.FeatureSpec] = [
        sp.Mean(), sp.Std(), sp.Min(), sp.Max(), sp.EWMA(alpha=0.1), sp.Median()]
    batch, single = FeatureSet(features, 40, 30.0), FeatureSet(features, 40, 30.0)
    rows = np.empty((500, len(features)))
    accepted = batch.push_many(ts, vs, rows)
    for i in range(500):
        single.push(int(ts[i]), float(vs[i]))
        assert rows[i].tolist() == single.values().tolist() or np.array_equal(rows[i], single.values(),
                                                                              equal_nan=True)
    assert accepted == single.accepted == batch.accepted


def test_push_many_releases_the_gil() -> None:
    n = 3_000_000
    fs = FeatureSet([sp.Median(), sp.MAD(), sp.Mean()], 600)
    ts = np.arange(n, dtype=np.int64)
    vs = np.random.default_rng(0).normal(size=n)
    done = threading.Event()
    call_s: list[float] = []

    def work() -> None:
        start = time.perf_counter()
        fs.push_many(ts, vs)
        call_s.append(time.perf_counter() - start)
        done.set()

    worker = threading.Thread(target=work)
    ticks: list[float] = []
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    gaps = np.diff(ticks)
    assert call_s[0] > 0.1, "the batch was too short to tell"
    # Holding the GIL for the whole call would stall this loop for about call_s.
    assert len(ticks) > 20 and gaps.max() < call_s[0] / 2


def test_push_allocates_no_python_objects() -> None:
    fs = FeatureSet([sp.Mean(), sp.Variance(), sp.Min(), sp.Max(), sp.EWMA(alpha=0.1), sp.Median()], 64, 5.0)
    ts = list(range(0, 20_000 * 100_000_000, 100_000_000))
    vs = [float(i % 13) for i in range(20_000)]
    push = fs.push
    for t, v in zip(ts[:200], vs[:200], strict=True):
        push(t, v)
    blocks = sys.getallocatedblocks()
    for t, v in zip(ts[200:], vs[200:], strict=True):
        push(t, v)
    assert sys.getallocatedblocks() - blocks < 50


@pytest.mark.parametrize("make", [
    lambda cls: cls([], 10),
    lambda cls: cls([sp.Mean(), sp.Mean()], 10),
    lambda cls: cls(["mean"], 10),
    lambda cls: cls("mean", 10),
    lambda cls: cls([sp.Mean()], 0),
    lambda cls: cls([sp.Mean()], 10.0),
    lambda cls: cls([sp.Mean()], 10, window_s=-1.0),
    lambda cls: cls([sp.Mean()], 10, window_s=math.nan),
    lambda cls: cls([sp.Mean()], 10, window_s="10"),
    lambda cls: cls([sp.EWMA()], 10),
    lambda cls: cls([sp.EWMA(alpha=0.5, halflife_s=1.0)], 10),
    lambda cls: cls([sp.EWMA(alpha=0.0)], 10),
    lambda cls: cls([sp.EWMA(alpha=1.5)], 10),
    lambda cls: cls([sp.EWMA(halflife_s=math.inf)], 10),
    lambda cls: cls([sp.Crossings(low=1.0, high=0.0)], 10),
    lambda cls: cls([sp.Crossings(low=math.nan, high=1.0)], 10),
    lambda cls: cls([sp.Variance(ddof=-1)], 10),
    lambda cls: cls([sp.Integral(scale=math.inf)], 10),
], ids=lambda _: "")
def test_bad_configuration_is_a_config_error(impl: type[FeatureSet], make: object) -> None:
    with pytest.raises(FeatureConfigError):
        make(impl)  # type: ignore[operator]


def test_garbage_samples_and_outputs_are_sample_errors(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Mean(), sp.Max()], 4)
    for sample in [(1.5, 1.0), ("x", 1.0), (1, "x"), (2**64, 1.0)]:
        with pytest.raises(SampleError):
            fs.push(*sample)  # type: ignore[arg-type]
    for out in [np.empty((3, 3)), np.empty((3, 2), dtype=np.float32), np.empty((2, 3)).T, [[0.0] * 2] * 3]:
        with pytest.raises(SampleError):
            fs.push_many([1, 2, 3], [1.0, 2.0, 3.0], out)  # type: ignore[arg-type]
    with pytest.raises(SampleError):
        fs.push_many([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(SampleError):
        fs.read_into(np.empty(3))
    with pytest.raises(KeyError):
        fs["median"]
    assert fs.size == 0 and fs.accepted == 0


def test_read_into_fills_a_preallocated_vector(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Mean(), sp.Max()], 4)
    fs.push_many([1, 2], [1.0, 5.0])
    out = np.zeros(2)
    fs.read_into(out)
    assert out.tolist() == [3.0, 5.0] == fs.values().tolist()
    assert fs.names == ("mean", "max")


def test_the_window_view_refuses_pushes(impl: type[FeatureSet]) -> None:
    fs = impl([sp.Mean()], 4)
    fs.push(1, 2.0)
    for call in (lambda: fs.window.push(2, 3.0), lambda: fs.window.push_many([2], [3.0]),
                 lambda: fs.window.clear()):
        with pytest.raises(SampleError):
            call()
    assert fs.window.values().tolist() == [2.0] and fs["mean"] == 2.0
