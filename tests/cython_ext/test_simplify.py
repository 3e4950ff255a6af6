"""The compiled Douglas-Peucker significance on its own: its boundary (typed errors, dtypes) and
the cut parameter (equality with the numpy oracle is tested in tests/cloud/test_simplify.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cython_ext import simplify
from cython_ext.errors import SampleError


def test_lists_and_ints_are_read_as_float64_and_the_output_is_a_new_array() -> None:
    value = simplify.significance([48, 48.001, 48.0, 48.001], [11, 11.001, 11.002, 11.003])
    assert value.dtype == np.float64 and value.shape == (4,)
    assert math.isinf(value[0]) and math.isinf(value[3]) and value[1] > 0 and value[2] > 0
    lat, lon, forced = simplify.checked([1, 2], [3, 4])
    assert lat.dtype == lon.dtype == np.float64 and forced.dtype == np.bool_ and not forced.any()


@pytest.mark.parametrize("cut_every", [1, 2, 5, 1000])
def test_cut_every_marks_every_nth_point_infinite(cut_every: int) -> None:
    rng = np.random.default_rng(cut_every)
    lat, lon = 48 + rng.normal(0, 1e-4, 23), 11 + rng.normal(0, 1e-4, 23)
    value = simplify.significance(lat, lon, cut_every=cut_every, floor_m=math.inf)
    assert set(np.flatnonzero(np.isinf(value)).tolist()) == {*range(0, 23, cut_every), 22}
    assert not value[~np.isinf(value)].any()


@pytest.mark.parametrize(("args", "options", "match"), [
    (([1.0, 2.0], [1.0]), {}, "lon_deg has 1 entries but lat_deg has 2"),
    (([math.nan, 2.0, 3.0], [1.0, 2.0, 3.0]), {}, "finite"),
    (([1.0, 2.0, 3.0], [1.0, 2.0, 300.0]), {}, "out of range"),
    ((object(), [1.0]), {}, "lat_deg must be"),
    (([[1.0]], [[1.0]]), {}, "1-D"),
    (([1.0, 2.0], [1.0, 2.0]), {"forced": [1, 0]}, "boolean mask"),
    (([1.0, 2.0], [1.0, 2.0]), {"floor_m": -0.1}, "floor_m"),
    (([1.0, 2.0], [1.0, 2.0]), {"cut_every": 0}, "cut_every"),
    (([1.0, 2.0], [1.0, 2.0]), {"cut_every": 2.0}, "cut_every"),
])
def test_garbage_is_refused_with_a_sample_error(args: tuple[object, object], options: dict[str, object],
                                                match: str) -> None:
    with pytest.raises(SampleError, match=match):
        simplify.significance(*args, **options)  # type: ignore[arg-type]
