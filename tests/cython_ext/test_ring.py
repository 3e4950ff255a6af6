"""The ring buffer: ordering and NaN rule, wrap-around, zero-copy views, windows, bad input."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cython_ext import reference
from cython_ext.errors import FeatureConfigError, SampleError
from cython_ext.ring import RingBuffer
from cython_ext.status import PushStatus

from .streams import Stream, streams


def test_extension_is_compiled() -> None:
    import cython_ext.features
    import cython_ext.geo
    import cython_ext.ring

    for module in (cython_ext.ring, cython_ext.features, cython_ext.geo):
        assert module.__file__ is not None and module.__file__.endswith((".so", ".pyd")), module.__file__


def test_wrap_around_keeps_time_order_in_one_contiguous_view() -> None:
    ring = RingBuffer(4)
    for i in range(10):
        assert ring.push(i * 10, float(i)) == PushStatus.ACCEPTED
    assert ring.times_ns().tolist() == [60, 70, 80, 90]
    assert ring.values().tolist() == [6.0, 7.0, 8.0, 9.0]
    assert ring.values().flags.c_contiguous


def test_views_are_zero_copy_and_read_only() -> None:
    ring = RingBuffer(8)
    ring.push_many(np.arange(13), np.arange(13.0))
    ts, vs = ring.last(8)
    ts2, vs2 = ring.last(3)
    assert np.shares_memory(vs, vs2) and np.shares_memory(ts, ts2)
    assert not vs.flags.writeable and not ts.flags.writeable
    with pytest.raises(ValueError):
        vs[0] = 1.0
    assert vs2.tolist() == [10.0, 11.0, 12.0]
    # Views alias the ring's storage (no copy): a later view shares memory with an earlier one.
    ring.push(100, 42.0)
    assert np.shares_memory(ring.values(), vs)


def test_older_timestamp_is_rejected_and_counted_equal_is_kept() -> None:
    ring = RingBuffer(5)
    assert ring.push(100, 1.0) == PushStatus.ACCEPTED
    assert ring.push(99, 2.0) == PushStatus.LATE
    assert ring.push(100, 3.0) == PushStatus.ACCEPTED
    assert ring.times_ns().tolist() == [100, 100]
    assert ring.values().tolist() == [1.0, 3.0]
    assert (ring.accepted, ring.late, ring.nonfinite) == (2, 1, 0)


def test_nan_and_inf_are_skipped_and_counted_before_the_ordering_rule() -> None:
    ring = RingBuffer(5)
    ring.push(100, 1.0)
    assert ring.push(200, math.nan) == PushStatus.NONFINITE
    assert ring.push(50, math.inf) == PushStatus.NONFINITE
    assert ring.push(150, -math.inf) == PushStatus.NONFINITE
    assert ring.push(150, 2.0) == PushStatus.ACCEPTED  # the NaN at 200 did not move the clock
    assert ring.values().tolist() == [1.0, 2.0]
    assert (ring.accepted, ring.late, ring.nonfinite) == (2, 0, 3)


def test_count_and_time_windows() -> None:
    ring = RingBuffer(6)
    ring.push_many([0, 1_000, 2_000, 2_000, 5_000, 9_000], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert ring.last(2)[1].tolist() == [4.0, 5.0]
    assert ring.last(100)[1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert ring.last(0)[1].tolist() == []
    assert ring.since(2_000)[1].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert ring.since(10_000)[1].tolist() == []
    # Newer than (9000 - 7000) = 2000, strictly: the samples at 2000 are out.
    assert ring.within_ns(7_000)[1].tolist() == [4.0, 5.0]
    assert ring.within_ns(7_001)[1].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert ring.within_ns(0)[1].tolist() == []


def test_clear_keeps_counters_and_ordering() -> None:
    ring = RingBuffer(3)
    ring.push_many([5, 6, 7, 8], [1.0, 2.0, 3.0, 4.0])
    ring.clear()
    assert len(ring) == 0 and ring.values().tolist() == []
    assert ring.push(7, 0.0) == PushStatus.LATE
    assert ring.last_t_ns == 8 and ring.accepted == 4
    ring.push_many([9, 10], [5.0, 6.0])
    assert ring.values().tolist() == [5.0, 6.0]


def test_push_allocates_no_python_objects() -> None:
    ring = RingBuffer(64)
    ts = list(range(1_000, 21_000))
    vs = [float(i % 17) for i in range(20_000)]
    push = ring.push
    for t, v in zip(ts[:100], vs[:100], strict=True):
        push(t, v)
    blocks = sys.getallocatedblocks()
    for t, v in zip(ts[100:], vs[100:], strict=True):
        push(t, v)
    assert sys.getallocatedblocks() - blocks < 50


@pytest.mark.parametrize("capacity", [0, -1, 1.5, "8", None, True, 2**40])
def test_bad_capacity_is_a_config_error(capacity: object) -> None:
    with pytest.raises(FeatureConfigError):
        RingBuffer(capacity)  # type: ignore[arg-type]
    with pytest.raises(FeatureConfigError):
        reference.RingBuffer(capacity)  # type: ignore[arg-type]


@pytest.mark.parametrize("sample", [(1.5, 1.0), ("1", 1.0), (None, 1.0), (2**63, 1.0), (1, "x"), (1, None),
                                    (1, [1.0])])
def test_garbage_sample_is_a_sample_error(sample: tuple[object, object]) -> None:
    for ring in (RingBuffer(4), reference.RingBuffer(4)):
        with pytest.raises(SampleError):
            ring.push(*sample)  # type: ignore[arg-type]
        assert len(ring) == 0


@pytest.mark.parametrize("batch", [
    ([1.0, 2.0], [1.0, 2.0]),              # float timestamps
    ([1, 2, 3], [1.0, 2.0]),               # length mismatch
    ([[1, 2]], [[1.0, 2.0]]),              # 2-D
    ([1, 2], ["a", "b"]),                  # text values
    (np.array([2**63], dtype=np.uint64), [1.0]),
    ("12", [1.0]),
    (object(), [1.0]),
])
def test_garbage_batch_is_a_sample_error(batch: tuple[object, object]) -> None:
    for ring in (RingBuffer(4), reference.RingBuffer(4)):
        with pytest.raises(SampleError):
            ring.push_many(*batch)  # type: ignore[arg-type]
        assert len(ring) == 0


def test_window_arguments_are_checked() -> None:
    ring = RingBuffer(4)
    for call in (lambda: ring.last(-1), lambda: ring.last(1.0),  # type: ignore[arg-type]
                 lambda: ring.since(1.5), lambda: ring.within_ns(-5),  # type: ignore[arg-type]
                 lambda: ring.within_ns("5")):  # type: ignore[arg-type]
        with pytest.raises(SampleError):
            call()


@settings(max_examples=150, deadline=None)
@given(stream=streams(), capacity=st.integers(min_value=1, max_value=40), data=st.data())
def test_ring_matches_reference(stream: Stream, capacity: int, data: st.DataObject) -> None:
    fast, slow = RingBuffer(capacity), reference.RingBuffer(capacity)
    split = data.draw(st.integers(min_value=0, max_value=len(stream.ts_ns)))
    for t, v in zip(stream.ts_ns[:split].tolist(), stream.values[:split].tolist(), strict=True):
        assert fast.push(t, v) == slow.push(t, v)
    assert fast.push_many(stream.ts_ns[split:], stream.values[split:]) == \
        slow.push_many(stream.ts_ns[split:], stream.values[split:])
    assert (fast.accepted, fast.late, fast.nonfinite, fast.last_t_ns) == \
        (slow.accepted, slow.late, slow.nonfinite, slow.last_t_ns)
    assert fast.times_ns().tolist() == slow.times_ns().tolist()
    assert fast.values().tolist() == slow.values().tolist()
    assert np.all(np.diff(fast.times_ns()) >= 0)
    n = data.draw(st.integers(min_value=0, max_value=capacity + 2))
    assert fast.last(n)[1].tolist() == slow.last(n)[1].tolist()
    if len(slow):
        t0 = int(data.draw(st.sampled_from(slow.times_ns().tolist())))
        assert fast.since(t0)[0].tolist() == slow.since(t0)[0].tolist()
        d = data.draw(st.integers(min_value=0, max_value=5 * 10**9))
        assert fast.within_ns(d)[0].tolist() == slow.within_ns(d)[0].tolist()
