"""Config option schemas shared by the registries of sources and detectors (Telegraf-style).

Each source or detector declares its options (`Option`) beside its code; `validate_options`
checks one TOML table against them and fills in defaults, `sample_toml` renders the documented
example. Unknown keys, wrong types and missing required options raise `ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
