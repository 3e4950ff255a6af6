"""Readers of Linux sysfs attributes (IIO ADC, hwmon, power_supply, GPIO, IIO accelerometer),
and `FakeSysfs`, a directory tree with the same files that tests and the HIL bench write to.

Each reader is configured with a path, so a board's device tree (which ADC channel, which
divider, which GPIO) is configuration, not code. Units follow the kernel ABI:
IIO voltage raw × scale = mV; hwmon inN_input = mV; power_supply voltage_now = µV,
capacity = %; IIO accel (raw + offset) × scale = m/s².
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lienwatch.errors import ConfigError


class SysfsReadError(OSError):
    """A sysfs attribute is missing or does not hold a number."""


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("ascii", errors="replace").strip()
    except OSError as error:
        raise SysfsReadError(f"cannot read {path}: {error.strerror or error}") from None


def read_number(path: Path) -> float:
    text = read_text(path)
    try:
        value = float(text)
    except ValueError:
        raise SysfsReadError(f"{path} does not hold a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise SysfsReadError(f"{path} does not hold a number: {text[:40]!r}")
    return value


@dataclass(frozen=True, slots=True)
class VoltageReader:
    """A voltage in volts from `kind` = `iio` (path = channel prefix, e.g.
    `/sys/bus/iio/devices/iio:device0/in_voltage3`, reads `_raw`, `_scale`, optional `_offset`),
    `hwmon` (path = an `inN_input` file) or `power_supply` (path = the supply's directory).
    `divider` is the board's resistor divider ratio (input volts per ADC volt)."""

    kind: str
    path: Path
    divider: float = 1.0

    @classmethod
    def from_config(cls, where: str, table: Mapping[str, Any]) -> VoltageReader:
        kind = table.get("kind")
        path = table.get("path")
        if kind not in ("iio", "hwmon", "power_supply") or not isinstance(path, str):
            raise ConfigError(f'{where} must be {{ kind = "iio"|"hwmon"|"power_supply", path = "..." }}')
        divider = table.get("divider", 1.0)
        if not isinstance(divider, int | float) or isinstance(divider, bool) or not divider > 0:
            raise ConfigError(f"{where}.divider must be a number > 0")
        unknown = set(table) - {"kind", "path", "divider"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        return cls(kind, Path(path), float(divider))

    def read_v(self) -> float:
        if self.kind == "iio":
            raw = read_number(Path(f"{self.path}_raw"))
            offset_path = Path(f"{self.path}_offset")
            offset = read_number(offset_path) if offset_path.exists() else 0.0
            scale = read_number(Path(f"{self.path}_scale"))
            return (raw + offset) * scale / 1000.0 * self.divider
        if self.kind == "hwmon":
            return read_number(self.path) / 1000.0 * self.divider
        return read_number(self.path / "voltage_now") / 1e6 * self.divider


@dataclass(frozen=True, slots=True)
class GpioReader:
    """A digital input from a sysfs GPIO `value` file (or any file holding 0/1)."""

    path: Path
    active_low: bool = False

    def read(self) -> bool:
        value = read_number(self.path) != 0
        return value != self.active_low


@dataclass(frozen=True, slots=True)
class AccelReader:
    """A 3-axis IIO accelerometer (`in_accel_{x,y,z}_raw`, shared or per-axis scale/offset)."""

    device: Path

    def _axis(self, axis: str) -> float:
        raw = read_number(self.device / f"in_accel_{axis}_raw")
        scale_path = self.device / f"in_accel_{axis}_scale"
        scale = read_number(scale_path if scale_path.exists() else self.device / "in_accel_scale")
        offset_path = self.device / f"in_accel_{axis}_offset"
        offset = read_number(offset_path) if offset_path.exists() else 0.0
        return (raw + offset) * scale

    def read_ms2(self) -> dict[str, float]:
        return {axis: self._axis(axis) for axis in ("x", "y", "z")}


class FakeSysfs:
    """A fake sysfs under `root`: the same attribute files the readers read, set by tests/HIL."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _write(self, path: Path, value: object) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{value}\n", "ascii")
        tmp.replace(path)  # atomic, as a reader of real sysfs never sees half a value
        return path

    def iio_voltage(
        self,
        volts: float,
        *,
        device: str = "iio:device0",
        channel: int = 0,
        scale_mv: float = 0.805664062,
        divider: float = 1.0,
    ) -> str:
        """Set an ADC channel so that it reads `volts` at the input of a `divider`; returns the prefix."""
        prefix = self.root / "bus/iio/devices" / device / f"in_voltage{channel}"
        self._write(Path(f"{prefix}_scale"), scale_mv)
        self._write(Path(f"{prefix}_raw"), round(volts / divider * 1000.0 / scale_mv))
        return str(prefix)

    def hwmon_voltage(self, volts: float, *, hwmon: str = "hwmon0", channel: int = 1) -> str:
        return str(self._write(self.root / "class/hwmon" / hwmon / f"in{channel}_input", round(volts * 1000)))

    def power_supply(self, name: str, **attributes: object) -> str:
        """E.g. `power_supply("battery", voltage_now=3_900_000, capacity=80, status="Discharging")`."""
        directory = self.root / "class/power_supply" / name
        for attribute, value in attributes.items():
            self._write(directory / attribute, value)
        return str(directory)

    def gpio(self, number: int, value: bool) -> str:
        return str(self._write(self.root / f"class/gpio/gpio{number}/value", int(value)))

    def accel(
        self,
        x_ms2: float,
        y_ms2: float,
        z_ms2: float,
        *,
        device: str = "iio:device1",
        scale: float = 0.000598,
    ) -> str:
        directory = self.root / "bus/iio/devices" / device
        self._write(directory / "in_accel_scale", scale)
        for axis, value in (("x", x_ms2), ("y", y_ms2), ("z", z_ms2)):
            self._write(directory / f"in_accel_{axis}_raw", round(value / scale))
        return str(directory)
