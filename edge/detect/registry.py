"""Detectors by name, each with its option schema beside its code (like edge.sources.registry).

    [[detectors]]
    kind = "tow"
    name = "tow"            # optional, defaults to kind
    displacement_m = 500.0  # the kind's own options ...
    cooldown_s = 600.0      # ... and the lifecycle options every kind has (edge.detect.policy)

A detector module ends with its `SPEC = DetectorSpec(...)` and is listed in `BUILTIN` below
(name → "module:SPEC", imported lazily), or calls `register_detector`. An unknown kind, an
unknown option or a wrong type is a ConfigError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.detect.base import Detector
from edge.detect.policy import Policy, policy_options
from edge.detect.vehicle import VehicleProfile
from edge.options import Option, SpecRegistry, validate_options
from lienwatch.clock import Clock, SystemClock
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog, default_catalog


@dataclass(frozen=True)
class DetectorContext:
    """What the agent hands every detector factory."""

    clock: Clock = field(default_factory=SystemClock)
    catalog: Catalog = field(default_factory=default_catalog)
    vehicle: VehicleProfile = field(default_factory=VehicleProfile)
    state_dir: Path | None = None
    device_id: str = ""  # the agent's `[device] id` ("" in tests and benches without one)


Factory = Callable[[str, Mapping[str, Any], DetectorContext], Detector]


@dataclass(frozen=True)
class DetectorSpec:
    """A kind of detector: name, description, its options, factory(name, options, context), and
    its lifecycle defaults (`policy`: debounce, clear, cooldown, cap), each overridable by a key
    of the same name in its table. `check(options)` may refuse values (ConfigError)."""

    kind: str
    description: str
    options: tuple[Option, ...]
    factory: Factory
    policy: Policy = field(default_factory=Policy)
    check: Callable[[Mapping[str, Any]], None] | None = None

    @property
    def all_options(self) -> tuple[Option, ...]:
        return self.options + policy_options(self.policy)

    def validate(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """Options from a config table with defaults filled in; `ConfigError` on any bad key."""
        section = f"detectors.{self.kind}"
        options = validate_options(section, self.all_options, table)
        Policy.from_options(options, section)
        if self.check is not None:
            self.check(options)
        return options


# name -> "module:SPEC"; each detector module ends with its SPEC.
BUILTIN: dict[str, str] = {
    "tow": "edge.detect.tow:SPEC",
    "unplug": "edge.detect.unplug:SPEC",
    "gnss_jamming": "edge.detect.jamming:SPEC",
    "tamper": "edge.detect.tamper:SPEC",
    "odometer": "edge.detect.odometer:SPEC",
    "risky_places": "edge.detect.places:SPEC",
    "geofence": "edge.detect.geofence:SPEC",
    "night_cabin": "edge.detect.night_cabin:SPEC",
    "battery": "edge.detect.battery:SPEC",
    "driving": "edge.detect.driving:SPEC",
    "usage": "edge.detect.usage:SPEC",
}
REGISTRY = SpecRegistry("detectors", DetectorSpec, BUILTIN, none_known="none")
register_detector = REGISTRY.register
detector_kinds = REGISTRY.kinds
get_spec = REGISTRY.get


def build_detector(table: Mapping[str, Any], context: DetectorContext | None = None) -> Detector:
    """A detector from one `[[detectors]]` table of the agent config."""
    spec, name, options = REGISTRY.resolve(table)
    detector = spec.factory(name, options, context or DetectorContext())
    detector.policy = Policy.from_options(options, f"detectors.{name}")
    return detector


def check_range(kind: str, options: Mapping[str, Any], name: str, low: float, high: float) -> None:
    """ConfigError unless `options[name]` is a finite number in low..high (for `check` functions)."""
    value = options[name]
    if not (low <= value <= high):  # NaN fails too
        raise ConfigError(f"detectors.{kind}.{name} must be in {low:g}..{high:g}, got {value!r}")
