"""Sources by name, each with its config schema beside its code (Telegraf-style).

Every source module defines `SPEC = SourceSpec(...)`: its name, its options (name, type, default,
help) and a factory. The registry maps names to `"module:SPEC"` strings and imports a module only
when its source is asked for, so a gateway without cantools can still run GNSS and power.

The agent builds its sources from TOML like

    [[sources]]
    kind = "obd"
    name = "obd0"          # optional, defaults to kind
    channel = "can0"
    interface = "socketcan"

with `build_source(table, SourceContext(clock=...))`: unknown keys, wrong types and missing
required options raise `ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.options import Option, SpecRegistry, check_numbers, sample_toml, validate_options
from edge.sources.base import Source
from lienwatch.clock import Clock, SystemClock

__all__ = ["Option", "SourceContext", "SourceSpec", "build_source", "get_spec", "register_source",
           "source_kinds"]
from protocol.catalog import Catalog, default_catalog


@dataclass(frozen=True)
class SourceContext:
    """What the agent hands every source factory.

    `on_fix` receives every whole GNSS fix (an `edge.sources.gnss.fix.GnssFix`) for telemetry;
    `on_clock_discipline(offset_ns, quality)` is called when GNSS time moves the wall-clock
    offset. Both are called on the source's thread and must only enqueue.
    """

    clock: Clock = field(default_factory=SystemClock)
    catalog: Catalog = field(default_factory=default_catalog)
    on_fix: Callable[[Any], None] | None = None
    on_clock_discipline: Callable[[int, Any], None] | None = None


Factory = Callable[[str, Mapping[str, Any], SourceContext], Source]


@dataclass(frozen=True)
class SourceSpec:
    """A kind of source: its name, description, options and factory(name, options, context)."""

    kind: str
    description: str
    options: tuple[Option, ...]
    factory: Factory

    def validate(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """Options from a config table with defaults filled in; `ConfigError` on any bad key."""
        section = f"sources.{self.kind}"
        return check_numbers(section, validate_options(section, self.options, table))

    def sample_config(self) -> str:
        """A commented TOML example of this source with every option at its default."""
        return sample_toml("sources", self.kind, self.description, self.options)


REGISTRY = SpecRegistry("sources", SourceSpec, {
    "obd": "edge.sources.obd.source:SPEC",
    "uds": "edge.sources.uds.source:SPEC",
    "dbc": "edge.sources.dbc:SPEC",
    "gnss": "edge.sources.gnss.source:SPEC",
    "power": "edge.sources.power:POWER_SPEC",
    "motion": "edge.sources.power:MOTION_SPEC",
})
register_source = REGISTRY.register
source_kinds = REGISTRY.kinds
get_spec = REGISTRY.get


def build_source(table: Mapping[str, Any], context: SourceContext | None = None) -> Source:
    """A source from one `[[sources]]` table of the agent config."""
    spec, name, options = REGISTRY.resolve(table)
    return spec.factory(name, options, context or SourceContext())
