"""Per-model tables of manufacturer data identifiers (UDS ReadDataByIdentifier, 0x22) in TOML.

J1979 has almost nothing of an EV's battery; its manufacturer does, behind data identifiers
(DIDs) read with UDS service 0x22 on the battery ECU's physical ids. A table says, for one model,
where each value is. Format (docs/sources.md; example: `tables/example-bev.toml`):

    model = "Example BEV"          # free text, shown in health and `edge probe`
    request_id = 0x7E4             # the ECU's physical request id (11- or 29-bit)
    response_id = 0x7EC            # its response id
    extended_29bit = false         # optional; true for 29-bit ids
    period_s = 10.0                # optional default period of every DID

    [[signal]]
    did = 0x0101                   # the data identifier, 0..0xFFFF
    vss = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"   # a catalog signal
    start = 0                      # first byte of the value in the DID's data (after 62 DID DID)
    size = 2                       # bytes, big-endian (1..8)
    signed = false                 # optional: two's complement
    scale = 0.1                    # optional: value = raw * scale + offset, in the signal's unit
    offset = 0.0                   # optional
    period_s = 60.0                # optional: how often this DID is read (the shortest per DID wins)

Every signal of one DID is decoded from one reply. Any mistake is a `ConfigError` naming the file
and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge.sources.obd.pids import Field
from lienwatch.errors import ConfigError
from lienwatch.tomlfile import parse_toml
from protocol.catalog import Catalog, default_catalog

SHIPPED = ("example-bev",)
_TOP = {"model", "request_id", "response_id", "extended_29bit", "period_s", "signal"}
_SIGNAL = {"did", "vss", "start", "size", "signed", "scale", "offset", "period_s", "name"}


@dataclass(frozen=True, slots=True)
class DidSignal:
    """One value inside a DID's data: its byte field (shared with the J1979 table) and period."""

    did: int
    field: Field
    period_s: float


@dataclass(frozen=True)
class DidTable:
    """One model's identifiers: the ECU's ids and the signals per DID."""

    model: str
    request_id: int
    response_id: int
    extended_29bit: bool
    signals: tuple[DidSignal, ...]

    @property
    def dids(self) -> dict[int, tuple[DidSignal, ...]]:
        out: dict[int, list[DidSignal]] = {}
        for s in self.signals:
            out.setdefault(s.did, []).append(s)
        return {did: tuple(v) for did, v in out.items()}

    def period_of(self, did: int) -> float:
        return min(s.period_s for s in self.signals if s.did == did)

    def data_length(self, did: int) -> int:
        """The shortest data a reply to `did` must carry for every signal of it."""
        return max(s.field.start + s.field.size for s in self.signals if s.did == did)

    def encode(self, did: int, values: Mapping[str, float]) -> bytes:
        """The data of `did` for physical values by VSS path (the HIL emulator answers with it)."""
        data = bytearray(self.data_length(did))
        for s in self.dids[did]:
            s.field.put(values.get(s.field.vss, s.field.offset), data)
        return bytes(data)


def _number(where: str, value: Any, *, integer: bool = False) -> float:
    wrong_type = not isinstance(value, int | float) or (integer and not isinstance(value, int))
    if isinstance(value, bool) or wrong_type:
        raise ConfigError(f"{where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    return float(value)


def _can_id(where: str, value: Any, extended: bool) -> int:
    top = 0x1FFFFFFF if extended else 0x7FF
    number = int(_number(where, value, integer=True))
    if not 0 <= number <= top:
        bits = "29" if extended else "11"
        raise ConfigError(f"{where} must be a {bits}-bit CAN id (0..0x{top:X}), got {value!r}")
    return number


def parse_table(text: str, where: str = "DID table", catalog: Catalog | None = None) -> DidTable:
    """Parse and check one table; `ConfigError` naming `where` and the key on any mistake."""
    catalog = catalog or default_catalog()
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}") from None
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    extended = data.get("extended_29bit", False)
    if not isinstance(extended, bool):
        raise ConfigError(f"{where}: extended_29bit must be true or false")
    for key in ("model", "request_id", "response_id"):
        if key not in data:
            raise ConfigError(f"{where}: {key} is required")
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}: model must be a non-empty string")
    request_id = _can_id(f"{where}: request_id", data["request_id"], extended)
    response_id = _can_id(f"{where}: response_id", data["response_id"], extended)
    if request_id == response_id:
        raise ConfigError(f"{where}: request_id and response_id must differ")
    default_period = _number(f"{where}: period_s", data.get("period_s", 10.0))
    rows = data.get("signal", [])
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: needs at least one [[signal]]")
    signals: list[DidSignal] = []
    seen: set[tuple[int, str]] = set()
    for i, row in enumerate(rows):
        at = f"{where}: signal[{i}]"
        if not isinstance(row, dict):
            raise ConfigError(f"{at} must be a table")
        unknown = set(row) - _SIGNAL
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {sorted(unknown)}")
        for key in ("did", "vss", "start", "size"):
            if key not in row:
                raise ConfigError(f"{at}: {key} is required")
        did = int(_number(f"{at}.did", row["did"], integer=True))
        if not 0 <= did <= 0xFFFF:
            raise ConfigError(f"{at}.did must be 0..0xFFFF, got {row['did']!r}")
        vss = row["vss"]
        if not isinstance(vss, str) or vss not in catalog:
            raise ConfigError(f"{at}.vss {vss!r} is not a signal of catalog v{catalog.version} "
                              "(protocol/signals.toml)")
        start = int(_number(f"{at}.start", row["start"], integer=True))
        size = int(_number(f"{at}.size", row["size"], integer=True))
        if not 0 <= start <= 4000 or not 1 <= size <= 8:
            raise ConfigError(f"{at}: start must be 0..4000 and size 1..8 bytes")
        signed = row.get("signed", False)
        if not isinstance(signed, bool):
            raise ConfigError(f"{at}.signed must be true or false")
        scale = _number(f"{at}.scale", row.get("scale", 1.0))
        if scale == 0:
            raise ConfigError(f"{at}.scale must not be 0")
        offset = _number(f"{at}.offset", row.get("offset", 0.0))
        period = _number(f"{at}.period_s", row.get("period_s", default_period))
        if not period > 0:
            raise ConfigError(f"{at}.period_s must be > 0")
        if (did, vss) in seen:
            raise ConfigError(f"{at}: DID 0x{did:04X} maps {vss} twice")
        seen.add((did, vss))
        signal = catalog.by_path(vss)
        name = str(row.get("name", vss.rsplit(".", 1)[-1]))
        kind = signal.type if signal.type != "string" else "float"
        signals.append(DidSignal(did, Field(name, vss, signal.unit, start=start, size=size, scale=scale,
                                            offset=offset, signed=signed, kind=kind), period))
    return DidTable(model, request_id, response_id, extended, tuple(signals))


def load_table(name_or_path: str, catalog: Catalog | None = None) -> DidTable:
    """A shipped table by name (`example-bev`) or a TOML file by path."""
    if name_or_path in SHIPPED:
        shipped = resources.files("edge.sources.uds").joinpath("tables", f"{name_or_path}.toml")
        text = shipped.read_text("utf-8")
        return parse_table(text, f"DID table {name_or_path}", catalog)
    path = Path(name_or_path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read DID table {path}: {error}") from None
    return parse_table(text, f"DID table {path}", catalog)
