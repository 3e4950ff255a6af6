"""Detectors by name, each with its option schema beside its code (like edge.sources.registry).

    [[detectors]]
    kind = "tow"
    name = "tow"            # optional, defaults to kind
    radius_m = 150.0

No detector is registered yet: they arrive with the detection issue and add themselves to
`REGISTRY`'s built-ins (name → "module:SPEC") or call `register_detector`. Until then a `[[detectors]]`
table is a ConfigError that says so, rather than something that silently detects nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.detect.base import Detector
from edge.options import Option, SpecRegistry, validate_options
from lienwatch.clock import Clock, SystemClock
from protocol.catalog import Catalog, default_catalog


@dataclass(frozen=True)
class DetectorContext:
    """What the agent hands every detector factory."""

    clock: Clock = field(default_factory=SystemClock)
    catalog: Catalog = field(default_factory=default_catalog)


Factory = Callable[[str, Mapping[str, Any], DetectorContext], Detector]


@dataclass(frozen=True)
class DetectorSpec:
    """A kind of detector: name, description, options, factory(name, options, context)."""

    kind: str
    description: str
    options: tuple[Option, ...]
    factory: Factory

    def validate(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """Options from a config table with defaults filled in; `ConfigError` on any bad key."""
        return validate_options(f"detectors.{self.kind}", self.options, table)


# Detectors arrive with the detection issue: each adds "kind": "module:SPEC" here.
REGISTRY = SpecRegistry("detectors", DetectorSpec, {},
                        none_known="none yet: detectors arrive with the detection issue")
register_detector = REGISTRY.register
detector_kinds = REGISTRY.kinds
get_spec = REGISTRY.get


def build_detector(table: Mapping[str, Any], context: DetectorContext | None = None) -> Detector:
    """A detector from one `[[detectors]]` table of the agent config."""
    spec, name, options = REGISTRY.resolve(table)
    return spec.factory(name, options, context or DetectorContext())
