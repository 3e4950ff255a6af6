"""Board power profiles: what each part of the tracker draws in each of its states (TOML).

A profile describes hardware only (figures from datasheets, see profiles/tbox-reference.toml);
what the tracker should do with it is the planner's policy. `battery_ma(states)` turns one
state per part into the current drawn from the 12 V battery, through the regulator's efficiency
and quiescent current; `event_mah(mj)` does the same for the energy of one event (a GNSS fix, an
attach, a kB sent).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from lienwatch.errors import ConfigError
from lienwatch.tomlfile import parse_toml

BUILTIN_DIR = "profiles"
BUILTIN_DEFAULT = "tbox-reference"


class ProfileError(ConfigError):
    """A power profile file is missing, unreadable or has a bad figure."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part: supply rail, whether it bypasses the regulator, current (mA) per state."""

    name: str
    rail_v: float
    states_ma: Mapping[str, float]
    direct: bool = False

    def ma(self, state: str) -> float:
        try:
            return self.states_ma[state]
        except KeyError:
            known = ", ".join(sorted(self.states_ma))
            raise ProfileError(f"{self.name} has no state {state!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class Regulator:
    quiescent_ma: float
    efficiency_light: float
    efficiency_heavy: float
    light_load_mw: float


@dataclass(frozen=True, slots=True)
class Timings:
    """Times (s) and energies (mJ) of the parts' transitions and events."""

    soc_boot_s: float
    soc_resume_s: float
    soc_shutdown_s: float
    soc_busy_extra_ma: float
    mcu_wake_s: float
    modem_edrx_cycle_s: float
    modem_psm_wake_mj: float
    modem_psm_wake_s: float
    modem_attach_mj: float
    modem_attach_s: float
    modem_kb_mj: float
    gnss_ttff_hot_s: float
    gnss_ttff_cold_s: float
    gnss_rtk_convergence_s: float
    gnss_ephemeris_valid_h: float
    accel_wake_odr_hz: float


@dataclass(frozen=True, slots=True)
class BackupCell:
    capacity_mah: float
    nominal_v: float
    cutoff_v: float


# state names each part must define, and the other figures each table carries
_STATES = {
    "soc": ("active", "suspend", "off"),
    "mcu": ("run", "stop"),
    "modem": ("connected", "idle", "edrx", "psm", "off"),
    "gnss": ("acquisition", "tracking", "rtk", "backup", "off"),
    "can": ("normal", "standby", "sleep"),
    "accel": ("active", "wake_on_motion", "off"),
}
_TIMINGS = {
    "soc": ("boot_s", "resume_s", "shutdown_s", "busy_extra_ma"),
    "mcu": ("wake_s",),
    "modem": ("edrx_cycle_s", "psm_wake_mj", "psm_wake_s", "attach_mj", "attach_s", "kb_mj"),
    "gnss": ("ttff_hot_s", "ttff_cold_s", "rtk_convergence_s", "ephemeris_valid_h"),
    "can": (),
    "accel": ("wake_odr_hz",),
}
PARTS = tuple(_STATES)


@dataclass(frozen=True, slots=True)
class PowerProfile:
    name: str
    description: str
    supply_nominal_v: float
    regulator: Regulator
    parts: Mapping[str, Part]
    timings: Timings
    backup_cell: BackupCell

    def battery_ma(self, states: Mapping[str, str]) -> float:
        """Battery-side current (mA at `supply_nominal_v`) with each part in the given state."""
        rail_mw = 0.0
        direct_ma = 0.0
        for name, part in self.parts.items():
            ma = part.ma(states[name])
            if part.direct:
                direct_ma += ma
            else:
                rail_mw += ma * part.rail_v
        return direct_ma + self.regulator.quiescent_ma + self.rail_to_battery_ma(rail_mw)

    def rail_to_battery_ma(self, rail_mw: float) -> float:
        reg = self.regulator
        efficiency = reg.efficiency_light if rail_mw < reg.light_load_mw else reg.efficiency_heavy
        return rail_mw / efficiency / self.supply_nominal_v

    def event_mah(self, energy_mj: float) -> float:
        """Battery charge (mAh) of an event's energy at the rails (events happen awake: heavy load)."""
        return energy_mj / self.regulator.efficiency_heavy / self.supply_nominal_v / 3600.0

    def part_mj(self, part: str, state: str, seconds: float) -> float:
        """Energy (mJ, at the rail) of one part held in a state for `seconds`."""
        p = self.parts[part]
        return p.ma(state) * p.rail_v * seconds


def _number(where: str, value: Any, *, low: float = 0.0, high: float = math.inf,
            low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{where} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < low or number > high or (low_open and number == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ProfileError(f"{where} must be finite, {bound}" + (f" and <= {high:g}" if high < math.inf
                                                                  else "") + f", got {value!r}")
    return number


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: missing table [{key}]")
    return table


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(allowed))})")


def parse_profile(data: Mapping[str, Any], source: str = "profile") -> PowerProfile:
    """A validated profile from parsed TOML; any bad or missing figure raises ProfileError."""
    top = {"name", "description", "supply_nominal_v", "regulator", "backup_cell", *PARTS}
    _check_keys(data, top, source)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{source}: name must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{source}: description must be a string")
    nominal = _number(f"{source}: supply_nominal_v", data.get("supply_nominal_v"), low=6.0, high=60.0)
    reg = _table(data, "regulator", source)
    _check_keys(reg, {f.name for f in fields(Regulator)}, f"{source} [regulator]")
    regulator = Regulator(
        quiescent_ma=_number(f"{source} regulator.quiescent_ma", reg.get("quiescent_ma")),
        efficiency_light=_number(f"{source} regulator.efficiency_light", reg.get("efficiency_light"),
                                 low=0.0, high=1.0, low_open=True),
        efficiency_heavy=_number(f"{source} regulator.efficiency_heavy", reg.get("efficiency_heavy"),
                                 low=0.0, high=1.0, low_open=True),
        light_load_mw=_number(f"{source} regulator.light_load_mw", reg.get("light_load_mw")),
    )
    parts: dict[str, Part] = {}
    timing_values: dict[str, float] = {}
    for part_name, states in _STATES.items():
        table = _table(data, part_name, source)
        state_keys = {f"{s}_ma" for s in states}
        timing_keys = set(_TIMINGS[part_name])
        _check_keys(table, {"rail_v", "direct", *state_keys, *timing_keys}, f"{source} [{part_name}]")
        where = f"{source} {part_name}"
        rail_v = _number(f"{where}.rail_v", table.get("rail_v"), low=0.0, high=60.0, low_open=True)
        direct = table.get("direct", False)
        if not isinstance(direct, bool):
            raise ProfileError(f"{where}.direct must be true or false")
        currents = {s: _number(f"{where}.{s}_ma", table.get(f"{s}_ma"), high=10_000.0) for s in states}
        parts[part_name] = Part(part_name, rail_v, currents, direct)
        for key in _TIMINGS[part_name]:
            positive = key in ("ephemeris_valid_h", "wake_odr_hz", "edrx_cycle_s")
            timing_values[f"{part_name}_{key}"] = _number(f"{where}.{key}", table.get(key), low_open=positive)
    cell = _table(data, "backup_cell", source)
    _check_keys(cell, {f.name for f in fields(BackupCell)}, f"{source} [backup_cell]")
    backup = BackupCell(
        capacity_mah=_number(f"{source} backup_cell.capacity_mah", cell.get("capacity_mah"), low_open=True),
        nominal_v=_number(f"{source} backup_cell.nominal_v", cell.get("nominal_v"), low_open=True, high=60),
        cutoff_v=_number(f"{source} backup_cell.cutoff_v", cell.get("cutoff_v"), low_open=True, high=60),
    )
    if backup.cutoff_v >= backup.nominal_v:
        raise ProfileError(f"{source} backup_cell.cutoff_v must be below nominal_v")
    return PowerProfile(name, description, nominal, regulator, parts, Timings(**timing_values), backup)


def load_profile(name_or_path: str) -> PowerProfile:
    """A profile by built-in name (`tbox-reference`) or TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and "/" not in name_or_path:
        text = _builtin_text(name_or_path)
        source = f"profile {name_or_path}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ProfileError(f"cannot read power profile {path}: {error}") from None
        source = str(path)
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{source} is not valid TOML: {error}") from None
    return parse_profile(data, source)


def builtin_profiles() -> list[str]:
    folder = resources.files("edge.power").joinpath(BUILTIN_DIR)
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def _builtin_text(name: str) -> str:
    if name not in builtin_profiles():
        raise ProfileError(f"unknown power profile {name!r} (built-in: {', '.join(builtin_profiles())}; "
                           "or give a path to a .toml file)")
    return resources.files("edge.power").joinpath(BUILTIN_DIR, f"{name}.toml").read_text(encoding="utf-8")
