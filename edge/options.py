"""Config option schemas shared by the registries of sources and detectors (Telegraf-style).

Each source or detector declares its options (`Option`) beside its code; `validate_options`
checks one TOML table against them and fills in defaults, `sample_toml` renders the documented
example. Unknown keys, wrong types and missing required options raise `ConfigError` naming the key.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from lienwatch.errors import ConfigError

_REQUIRED = object()
# Keys every [[sources]] / [[detectors]] table may carry besides its kind's options.
COMMON_KEYS = ("kind", "name")


@dataclass(frozen=True, slots=True)
class Option:
    """One config key: its type (`str`, `int`, `float`, `bool`, `list`, `dict`), default and help."""

    name: str
    type: type
    default: Any = _REQUIRED
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def validate_options(section: str, options: Sequence[Option], table: Mapping[str, Any]) -> dict[str, Any]:
    """Options from a config table with defaults filled in; `section` prefixes error messages."""
    known = {o.name: o for o in options}
    for key in table:
        if key not in known and key not in COMMON_KEYS:
            raise ConfigError(f"{section}: unknown option {key!r} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for option in options:
        if option.name in table:
            value = table[option.name]
            if option.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            ok = isinstance(value, option.type) and not (
                option.type in (int, float) and isinstance(value, bool)
            )
            if not ok:
                raise ConfigError(
                    f"{section}.{option.name} must be {option.type.__name__}, got {type(value).__name__}"
                )
            values[option.name] = value
        elif option.required:
            raise ConfigError(f"{section}.{option.name} is required")
        else:
            values[option.name] = option.default
    return values


def check_numbers(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` if its numbers are sane for any kind: finite (TOML has nan and inf), durations
    (`*_s`, `*_ms`) not negative, periods (`*period_s`) positive; ConfigError naming the key.
    A kind checks its own ranges beyond these (sources use this; detectors check their own)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        key = f"{section}.{name}"
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        if name.endswith("period_s") and value <= 0:
            raise ConfigError(f"{key} must be > 0 (a period), got {value}")
        if name.endswith(("_s", "_ms")) and value < 0:
            raise ConfigError(f"{key} must be >= 0 (a duration), got {value}")
    return dict(values)


def sample_toml(array: str, kind: str, description: str, options: Sequence[Option]) -> str:
    """A commented TOML example of one `[[array]]` table with every option at its default."""
    lines = [f"# {description}", f"[[{array}]]", f'kind = "{kind}"']
    for option in options:
        help_text = f"  # {option.help}" if option.help else ""
        if option.required:
            lines.append(f"# {option.name} = ...  (required){help_text}")
        else:
            lines.append(f"{option.name} = {toml_value(option.default)}{help_text}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


class KindSpec(Protocol):
    """What a registry holds: a kind name and a validator of that kind's config tables."""

    @property
    def kind(self) -> str: ...

    def validate(self, table: Mapping[str, Any]) -> dict[str, Any]: ...


SpecT = TypeVar("SpecT", bound=KindSpec)


class SpecRegistry(Generic[SpecT]):
    """Kinds by name (Telegraf-style): built-ins named as lazily imported `"module:ATTRIBUTE"`
    strings, so a gateway without an optional library can still run the other kinds, plus specs
    registered at run time (e.g. a board-specific source)."""

    def __init__(self, array: str, spec_type: type[SpecT], builtin: Mapping[str, str],
                 *, none_known: str = "") -> None:
        self.array = array  # "sources" or "detectors": the [[array]] tables of the agent config
        self._spec_type = spec_type
        self._builtin = dict(builtin)
        self._registered: dict[str, SpecT] = {}
        self._none_known = none_known

    def register(self, spec: SpecT) -> None:
        """Add (or replace) a kind."""
        self._registered[spec.kind] = spec

    def kinds(self) -> list[str]:
        return sorted({*self._builtin, *self._registered})

    def get(self, kind: str) -> SpecT:
        if kind in self._registered:
            return self._registered[kind]
        target = self._builtin.get(kind)
        if target is None:
            known = ", ".join(self.kinds()) or self._none_known
            raise ConfigError(f"unknown {self.array[:-1]} kind {kind!r} (known: {known})")
        module_name, _, attribute = target.partition(":")
        spec = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(spec, self._spec_type):  # pragma: no cover - a packaging mistake
            raise ConfigError(f"{target} is not a {self._spec_type.__name__}")
        self._registered[kind] = spec
        return spec

    def resolve(self, table: Mapping[str, Any]) -> tuple[SpecT, str, dict[str, Any]]:
        """The spec, instance name and validated options of one `[[array]]` table."""
        kind = table.get("kind")
        if not isinstance(kind, str):
            known = " | ".join(f'"{k}"' for k in self.kinds()) or '"..."'
            raise ConfigError(f"{self.array}: every [[{self.array}]] table needs kind = {known}")
        spec = self.get(kind)
        name = table.get("name", kind)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.array}.{kind}.name must be a non-empty string")
        return spec, name, spec.validate(table)
