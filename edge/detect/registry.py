"""Detectors by name, each with its option schema beside its code (like edge.sources.registry).

    [[detectors]]
    kind = "tow"
    name = "tow"            # optional, defaults to kind
    radius_m = 150.0

No detector is registered yet: they arrive with the detection issue and add themselves to
`_BUILTIN` (name → "module:SPEC") or call `register_detector`. Until then a `[[detectors]]`
table is a ConfigError that says so, rather than something that silently detects nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.detect.base import Detector
from edge.options import Option, validate_options
from lienwatch.clock import Clock, SystemClock
from lienwatch.errors import ConfigError
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


_BUILTIN: dict[str, str] = {}
_REGISTERED: dict[str, DetectorSpec] = {}


def register_detector(spec: DetectorSpec) -> None:
    """Add (or replace) a kind of detector."""
    _REGISTERED[spec.kind] = spec


def detector_kinds() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED})


def get_spec(kind: str) -> DetectorSpec:
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    target = _BUILTIN.get(kind)
    if target is None:
        known = ", ".join(detector_kinds()) or "none yet: detectors arrive with the detection issue"
        raise ConfigError(f"unknown detector kind {kind!r} (known: {known})")
    module_name, _, attribute = target.partition(":")
    spec = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(spec, DetectorSpec):  # pragma: no cover - a packaging mistake
        raise ConfigError(f"{target} is not a DetectorSpec")
    _REGISTERED[kind] = spec
    return spec


def build_detector(table: Mapping[str, Any], context: DetectorContext | None = None) -> Detector:
    """A detector from one `[[detectors]]` table of the agent config."""
    kind = table.get("kind")
    if not isinstance(kind, str):
        raise ConfigError('detectors: every [[detectors]] table needs kind = "..."')
    spec = get_spec(kind)
    name = table.get("name", kind)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"detectors.{kind}.name must be a non-empty string")
    return spec.factory(name, spec.validate(table), context or DetectorContext())
