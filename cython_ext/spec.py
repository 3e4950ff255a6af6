"""What a `FeatureSet` computes: one small frozen spec per feature, validated on construction.

The same specs drive the compiled `cython_ext.features.FeatureSet` and the pure-Python
`cython_ext.reference.FeatureSet`, so both are configured identically. Each spec's `name` is the
key of its value in `FeatureSet.names` / `as_dict()`. Units: values keep the signal's unit;
rates are per second; integrals are value·seconds times `scale`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from cython_ext.errors import FeatureConfigError

#: Largest window (and ring) capacity in samples: 16 Mi samples, 512 MiB of mirrored storage.
MAX_CAPACITY = 1 << 24


@dataclass(frozen=True)
class Mean:
    """Arithmetic mean of the values in the window (NaN when empty)."""

    name: ClassVar[str] = "mean"


@dataclass(frozen=True)
class Variance:
    """Variance of the values in the window with `ddof` (1 = sample variance; NaN when n <= ddof)."""

    ddof: int = 1
    name: ClassVar[str] = "variance"

    def __post_init__(self) -> None:
        _check_ddof(self.ddof, self.name)


@dataclass(frozen=True)
class Std:
    """Standard deviation: the square root of `Variance(ddof)`."""

    ddof: int = 1
    name: ClassVar[str] = "std"

    def __post_init__(self) -> None:
        _check_ddof(self.ddof, self.name)


@dataclass(frozen=True)
class Min:
    """Smallest value in the window (NaN when empty)."""

    name: ClassVar[str] = "min"


@dataclass(frozen=True)
class Max:
    """Largest value in the window (NaN when empty)."""

    name: ClassVar[str] = "max"


@dataclass(frozen=True)
class EWMA:
    """Exponentially weighted mean over every accepted sample (not windowed; NaN before the first).

    Give exactly one of `alpha` (weight of each new sample, 0 < alpha <= 1) or `halflife_s`
    (irregular sampling: a sample's weight halves every `halflife_s` seconds of stream time).
    """

    alpha: float | None = None
    halflife_s: float | None = None
    name: ClassVar[str] = "ewma"

    def __post_init__(self) -> None:
        if (self.alpha is None) == (self.halflife_s is None):
            raise FeatureConfigError("EWMA needs exactly one of alpha or halflife_s")
        if self.alpha is not None and not (_is_real(self.alpha) and 0.0 < self.alpha <= 1.0):
            raise FeatureConfigError(f"EWMA alpha must be in (0, 1], got {self.alpha!r}")
        if self.halflife_s is not None and not (
            _is_real(self.halflife_s) and math.isfinite(self.halflife_s) and self.halflife_s > 0.0
        ):
            raise FeatureConfigError(f"EWMA halflife_s must be a finite number > 0, got {self.halflife_s!r}")


@dataclass(frozen=True)
class Slope:
    """Least-squares slope of value against time over the window, per second (NaN if time span is 0)."""

    name: ClassVar[str] = "slope"


@dataclass(frozen=True)
class RateOfChange:
    """(newest - oldest value) / (newest - oldest time) over the window, per second (NaN if span is 0)."""

    name: ClassVar[str] = "rate_of_change"


@dataclass(frozen=True)
class TimeWeightedMean:
    """Trapezoidal time-weighted mean over the window: integral / time span (NaN if span is 0)."""

    name: ClassVar[str] = "time_weighted_mean"


@dataclass(frozen=True)
class Integral:
    """Trapezoidal integral of value over time in seconds, times `scale`.

    Over the window, or with `cumulative=True` over every accepted sample since creation (e.g.
    distance in km from speed in km/h with `scale=1/3600`).
    """

    scale: float = 1.0
    cumulative: bool = False

    def __post_init__(self) -> None:
        if not (_is_real(self.scale) and math.isfinite(self.scale)):
            raise FeatureConfigError(f"Integral scale must be a finite number, got {self.scale!r}")
        if not isinstance(self.cumulative, bool):
            raise FeatureConfigError(f"Integral cumulative must be a bool, got {self.cumulative!r}")

    @property
    def name(self) -> str:
        return "integral_total" if self.cumulative else "integral"


@dataclass(frozen=True)
class Crossings:
    """Threshold crossings with hysteresis whose crossing sample is still in the window.

    The state turns high at a value >= `high` and low at a value <= `low`; each change between
    known states is one crossing. The first value beyond either threshold only sets the state.
    """

    low: float
    high: float
    name: ClassVar[str] = "crossings"

    def __post_init__(self) -> None:
        if not (_is_real(self.low) and _is_real(self.high) and math.isfinite(self.low)
                and math.isfinite(self.high) and self.low < self.high):
            raise FeatureConfigError(
                f"Crossings needs finite thresholds with low < high, got low={self.low!r} high={self.high!r}"
            )


@dataclass(frozen=True)
class Median:
    """Median of the values in the window (mean of the two middle values when n is even)."""

    name: ClassVar[str] = "median"


@dataclass(frozen=True)
class MAD:
    """Median absolute deviation from the median (unscaled; ×1.4826 estimates σ for normal data)."""

    name: ClassVar[str] = "mad"


@dataclass(frozen=True)
class Count:
    """Number of samples in the window."""

    name: ClassVar[str] = "count"


FeatureSpec = (
    Mean | Variance | Std | Min | Max | EWMA | Slope | RateOfChange | TimeWeightedMean | Integral
    | Crossings | Median | MAD | Count
)
SPEC_TYPES = (
    Mean, Variance, Std, Min, Max, EWMA, Slope, RateOfChange, TimeWeightedMean, Integral, Crossings,
    Median, MAD, Count,
)


@dataclass(frozen=True)
class WindowConfig:
    """A validated window: the last `capacity` samples, and if `duration_ns` > 0 only those newer
    than (newest timestamp - duration_ns)."""

    capacity: int
    duration_ns: int


def check_capacity(capacity: object, what: str = "capacity") -> int:
    """Return `capacity` as an int in [1, MAX_CAPACITY] or raise FeatureConfigError."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise FeatureConfigError(f"{what} must be an int number of samples, got {capacity!r}")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise FeatureConfigError(f"{what} must be in [1, {MAX_CAPACITY}], got {capacity}")
    return capacity


def check_window(window: object, window_s: object) -> WindowConfig:
    """Validate a count window (`window` samples) and an optional time window (`window_s` seconds)."""
    capacity = check_capacity(window, "window")
    if window_s is None:
        return WindowConfig(capacity, 0)
    if not isinstance(window_s, (int, float)) or isinstance(window_s, bool) or not math.isfinite(window_s) \
            or window_s <= 0:
        raise FeatureConfigError(f"window_s must be a finite number of seconds > 0 or None, got {window_s!r}")
    duration_ns = round(float(window_s) * 1e9)
    if not 1 <= duration_ns < 2**62:
        raise FeatureConfigError(f"window_s must be between 1 ns and ~146 years, got {window_s!r}")
    return WindowConfig(capacity, duration_ns)


def check_features(features: object) -> tuple[FeatureSpec, ...]:
    """Validate a non-empty sequence of feature specs with distinct names."""
    if isinstance(features, (str, bytes)) or not isinstance(features, Iterable):
        raise FeatureConfigError(f"features must be a sequence of feature specs, got {features!r}")
    specs: list[FeatureSpec] = []
    seen: set[str] = set()
    for spec in features:
        if not isinstance(spec, SPEC_TYPES):
            raise FeatureConfigError(
                f"{spec!r} is not a feature spec (use cython_ext.spec.Mean(), Variance(), ...)"
            )
        if spec.name in seen:
            raise FeatureConfigError(f"feature {spec.name!r} appears twice; use one FeatureSet per variant")
        seen.add(spec.name)
        specs.append(spec)
    if not specs:
        raise FeatureConfigError("features must name at least one feature")
    return tuple(specs)


def _check_ddof(ddof: object, name: str) -> None:
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise FeatureConfigError(f"{name} ddof must be an int >= 0, got {ddof!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
