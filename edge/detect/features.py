"""Feature requests and the bank of `cython_ext` extractors that serves them.

A detector declares what it reads (`FeatureRequest(signal, statistic, window)` or a
`PositionRequest` for haversine distance / dwell) and reads each value through the tick's
`Observation.feature(request)`. The agent builds one `FeatureBank` from every detector's
requests: one compiled `FeatureSet` per (signal, window) — a second set only when two requests
need two variants of one statistic (e.g. two `Crossings` thresholds) — and one `Dwell` or
`HaversineDistance` per position request, all fed once per sample. No detector keeps a rolling
statistic of its own, and two detectors asking for the same feature share one extractor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cython_ext import spec as sp
from edge.sources.base import Sample
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog, default_catalog

if TYPE_CHECKING:
    from cython_ext.features import FeatureSet
    from cython_ext.geo import Dwell, HaversineDistance


@dataclass(frozen=True, slots=True)
class FeatureRequest:
    """One statistic of one signal over a window: the last `window` samples, and with `window_s`
    only those of the last `window_s` seconds (monotonic sample times)."""

    signal: str  # catalog path, e.g. "Vehicle.LowVoltageBattery.CurrentVoltage"
    statistic: sp.FeatureSpec  # cython_ext.spec.Mean(), Min(), Crossings(low, high), ...
    window: int = 600
    window_s: float | None = None

    @property
    def name(self) -> str:
        """A short evidence name: "<last path part>.<statistic>" (e.g. "CurrentVoltage.min")."""
        return f"{self.signal.rsplit('.', 1)[-1]}.{self.statistic.name}"


@dataclass(frozen=True, slots=True)
class PositionRequest:
    """A position feature over the GNSS fixes: `dwell` (seconds within `radius_m` of an anchor
    fix, `cython_ext.geo.Dwell`) or `distance` (metres travelled, `HaversineDistance` with
    `min_step_m`)."""

    feature: Literal["dwell", "distance"]
    radius_m: float = 50.0  # dwell only
    min_step_m: float = 0.0  # distance only

    @property
    def name(self) -> str:
        return "dwell_s" if self.feature == "dwell" else "distance_m"


AnyRequest = FeatureRequest | PositionRequest


class FeatureBank:
    """Every requested feature, updated by `push_samples` / `push_position` once per tick."""

    def __init__(self, requests: Iterable[AnyRequest], catalog: Catalog | None = None) -> None:
        from cython_ext.errors import FeatureConfigError
        from cython_ext.features import FeatureSet

        catalog = catalog or default_catalog()
        self._sets: dict[int, list[FeatureSet]] = {}  # signal id -> its sets, fed together
        self._where: dict[FeatureRequest, tuple[FeatureSet, str]] = {}
        self._positions: dict[PositionRequest, Dwell | HaversineDistance] = {}
        variants: dict[tuple[int, int, float | None], list[list[sp.FeatureSpec]]] = {}
        placed: list[tuple[FeatureRequest, tuple[int, int, float | None], int]] = []
        for request in dict.fromkeys(requests):  # the same request twice is one feature
            if isinstance(request, PositionRequest):
                try:
                    self._positions[request] = _position_extractor(request)
                except FeatureConfigError as error:
                    raise ConfigError(f"position feature {request.name}: {error}") from None
                continue
            if request.signal not in catalog:
                raise ConfigError(f"feature {request.name}: {request.signal!r} is not in the signal catalog")
            key = (catalog.id_of(request.signal), request.window, request.window_s)
            placed.append((request, key, _place(variants.setdefault(key, []), request.statistic)))
        built: dict[tuple[int, int, float | None], list[FeatureSet]] = {}
        for key, sets in variants.items():
            try:
                built[key] = [FeatureSet(specs, key[1], key[2]) for specs in sets]
            except FeatureConfigError as error:
                raise ConfigError(f"features of signal {key[0]}: {error}") from None
            self._sets.setdefault(key[0], []).extend(built[key])
        for request, key, index in placed:
            self._where[request] = (built[key][index], request.statistic.name)

    @property
    def signal_ids(self) -> frozenset[int]:
        return frozenset(self._sets)

    @property
    def wants_positions(self) -> bool:
        return bool(self._positions)

    def push_samples(self, samples: Sequence[Sample]) -> None:
        sets = self._sets
        if not sets:
            return
        for sample in samples:
            targets = sets.get(sample.signal_id)
            if targets is not None:
                for feature_set in targets:
                    feature_set.push(sample.mono_ns, sample.value)

    def push_position(self, mono_ns: int, lat_deg: float, lon_deg: float) -> None:
        for extractor in self._positions.values():
            extractor.push(mono_ns, lat_deg, lon_deg)

    def value(self, request: AnyRequest) -> float:
        """The feature's current value (NaN while its window is empty); KeyError if never requested."""
        if isinstance(request, PositionRequest):
            extractor = self._positions[request]
            return float(extractor.dwell_s if request.feature == "dwell" else extractor.total_m)  # type: ignore[union-attr]
        feature_set, name = self._where[request]
        return float(feature_set[name])

    def reset(self, request: AnyRequest) -> None:
        """Start a feature afresh (e.g. a parking point's dwell when the ignition turns off).
        Requests sharing its extractor restart with it."""
        if isinstance(request, PositionRequest):
            self._positions[request] = _position_extractor(request)
        else:
            self._where[request][0].clear()

    def __len__(self) -> int:
        return sum(len(s) for s in self._sets.values()) + len(self._positions)


def _place(sets: list[list[sp.FeatureSpec]], statistic: sp.FeatureSpec) -> int:
    """Index of the set that computes `statistic`: the first one with it, or the first without
    another variant of the same name (then it is added), or a new set."""
    for index, specs in enumerate(sets):
        if statistic in specs:
            return index
        if all(s.name != statistic.name for s in specs):
            specs.append(statistic)
            return index
    sets.append([statistic])
    return len(sets) - 1


def _position_extractor(request: PositionRequest) -> Dwell | HaversineDistance:
    from cython_ext.geo import Dwell, HaversineDistance

    if request.feature == "dwell":
        return Dwell(request.radius_m)
    return HaversineDistance(request.min_step_m)


def finite_or_none(value: float) -> float | None:
    """`value`, or None when it is NaN/inf (evidence keeps only finite numbers)."""
    return value if math.isfinite(value) else None
