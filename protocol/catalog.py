"""The signal catalog: COVESA VSS paths ↔ the small integer ids used on the wire.

The catalog ships as `protocol/signals.toml`; ids are stable forever (see its header).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from lienwatch.tomlfile import parse_toml
from protocol.errors import ProtocolError, UnknownSignalError

SignalType = Literal["float", "int", "bool", "string"]
_TYPES: frozenset[str] = frozenset({"float", "int", "bool", "string"})


@dataclass(frozen=True, slots=True)
class Signal:
    """One catalog entry: wire id, VSS path, unit and wire resolution of its values."""

    id: int
    path: str
    unit: str
    type: SignalType
    resolution: float
    overlay: bool = False


@dataclass(frozen=True)
class Catalog:
    """A versioned, immutable map between signal ids and VSS paths."""

    version: int
    signals: tuple[Signal, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.signals})
        object.__setattr__(self, "_by_path", {s.path: s for s in self.signals})

    def by_id(self, signal_id: int) -> Signal:
        try:
            return self._by_id[signal_id]  # type: ignore[attr-defined, no-any-return]
        except KeyError:
            raise UnknownSignalError(f"signal id {signal_id} is not in catalog v{self.version}") from None

    def by_path(self, path: str) -> Signal:
        try:
            return self._by_path[path]  # type: ignore[attr-defined, no-any-return]
        except KeyError:
            raise UnknownSignalError(f"VSS path {path!r} is not in catalog v{self.version}") from None

    def id_of(self, path: str) -> int:
        return self.by_path(path).id

    def __contains__(self, key: object) -> bool:
        return key in self._by_id or key in self._by_path  # type: ignore[attr-defined]


def parse_catalog(text: str) -> Catalog:
    """Parse and check a catalog TOML document (unique ids and paths, known types)."""
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        raise ProtocolError(f"signal catalog is not valid TOML: {error}") from None
    version = data.get("catalog_version")
    if not isinstance(version, int) or version < 1:
        raise ProtocolError("signal catalog: catalog_version must be an integer >= 1")
    signals: list[Signal] = []
    seen_ids: set[int] = set()
    seen_paths: set[str] = set()
    for index, entry in enumerate(data.get("signal", [])):
        where = f"signal catalog entry {index}"
        signal_id, path = entry.get("id"), entry.get("path")
        if not isinstance(signal_id, int) or not 1 <= signal_id <= 0xFFFF:
            raise ProtocolError(f"{where}: id must be an integer in 1..65535")
        if not isinstance(path, str) or not path.startswith("Vehicle."):
            raise ProtocolError(f"{where}: path must be a VSS path starting with 'Vehicle.'")
        if signal_id in seen_ids or path in seen_paths:
            raise ProtocolError(f"{where}: duplicate id {signal_id} or path {path}")
        kind = entry.get("type")
        if kind not in _TYPES:
            raise ProtocolError(f"{where}: type must be one of {sorted(_TYPES)}")
        resolution = float(entry.get("resolution", 1.0))
        if not resolution > 0:
            raise ProtocolError(f"{where}: resolution must be > 0")
        seen_ids.add(signal_id)
        seen_paths.add(path)
        signals.append(
            Signal(
                id=signal_id,
                path=path,
                unit=str(entry.get("unit", "")),
                type=kind,
                resolution=resolution,
                overlay=bool(entry.get("overlay", False)),
            )
        )
    return Catalog(version=version, signals=tuple(signals))


@cache
def default_catalog() -> Catalog:
    """The catalog shipped with this version of lienwatch."""
    return parse_catalog(resources.files("protocol").joinpath("signals.toml").read_text("utf-8"))
