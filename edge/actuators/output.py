"""Digital outputs that drive a relay coil or a buzzer: a sysfs GPIO value file, or a libgpiod line.

`DigitalOutput.set(True)` energises the output ("active"); `active_low` inverts what is written.
Every write is read back: a line that does not hold the asked level raises `OutputError`, so the
caller never believes a relay moved when it did not. Tests and the HIL bench use `SysfsOutput` on
a plain file (a fake sysfs, as the power sources do): the same code as on a gateway.

Spec strings (config `actuators.*.output`): `sysfs:/sys/class/gpio/gpio17/value`,
`gpiod:/dev/gpiochip0:17` (needs the `gpiod` package, libgpiod 2.x bindings), or "" for none.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from lienwatch.errors import ConfigError, LienwatchError


class OutputError(LienwatchError):
    """A digital output could not be written, or does not hold the level written to it."""


class DigitalOutput(ABC):
    """One digital output line."""

    def __init__(self, name: str, active_low: bool = False) -> None:
        self.name = name
        self.active_low = active_low

    def set(self, active: bool) -> None:
        """Drive the line active (True) or inactive, then check it holds that level."""
        self._write(active != self.active_low)
        held = self._read() != self.active_low
        if held != active:
            raise OutputError(f"{self.name}: wrote {'active' if active else 'inactive'} but the line "
                              f"reads {'active' if held else 'inactive'}")

    def get(self) -> bool:
        """Whether the line is active now (read back from the hardware)."""
        return self._read() != self.active_low

    @abstractmethod
    def _write(self, level: bool) -> None: ...

    @abstractmethod
    def _read(self) -> bool: ...

    def close(self) -> None:
        return None


class SysfsOutput(DigitalOutput):
    """A GPIO exported in sysfs (`/sys/class/gpio/gpioN/value`, direction already `out`), or a file."""

    def __init__(self, path: Path, name: str = "", active_low: bool = False) -> None:
        super().__init__(name or str(path), active_low)
        self.path = path

    def _write(self, level: bool) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, b"1\n" if level else b"0\n")
            finally:
                os.close(fd)
        except OSError as error:
            raise OutputError(f"{self.name}: cannot write {self.path}: {error}") from None

    def _read(self) -> bool:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise OutputError(f"{self.name}: cannot read {self.path}: {error}") from None
        if text not in ("0", "1"):
            raise OutputError(f"{self.name}: {self.path} holds {text[:20]!r}, not 0 or 1")
        return text == "1"


class GpiodOutput(DigitalOutput):  # pragma: no cover - needs a /dev/gpiochip (none in CI)
    """A line of a GPIO character device through libgpiod 2.x (`pip install gpiod`)."""

    def __init__(self, chip: Path, line: int, name: str = "", active_low: bool = False) -> None:
        super().__init__(name or f"{chip}:{line}", active_low)
        try:
            import gpiod  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError(f"{self.name}: gpiod outputs need the gpiod package (pip install gpiod)"
                              ) from None
        self.line = line
        self._gpiod: Any = gpiod
        settings = gpiod.LineSettings(direction=gpiod.line.Direction.OUTPUT,
                                      output_value=gpiod.line.Value.INACTIVE)
        try:
            self._request: Any = gpiod.request_lines(str(chip), consumer="lienwatch",
                                                     config={line: settings})
        except OSError as error:
            raise OutputError(f"{self.name}: cannot request the line: {error}") from None

    def _write(self, level: bool) -> None:
        value = self._gpiod.line.Value.ACTIVE if level else self._gpiod.line.Value.INACTIVE
        self._request.set_value(self.line, value)

    def _read(self) -> bool:
        return bool(self._request.get_value(self.line) == self._gpiod.line.Value.ACTIVE)

    def close(self) -> None:
        self._request.release()


def open_output(spec: str, name: str, active_low: bool = False) -> DigitalOutput | None:
    """The output a config spec names (`sysfs:PATH`, `gpiod:CHIP:LINE`); None for ""."""
    if not spec:
        return None
    kind, _, rest = spec.partition(":")
    if kind == "sysfs" and rest:
        path = Path(rest)
        if not path.exists():
            raise ConfigError(f"{name}: {path} does not exist (export the GPIO and set its direction to out)")
        return SysfsOutput(path, name, active_low)
    if kind == "gpiod":
        chip, _, line = rest.rpartition(":")
        if chip and line.isdigit():
            return GpiodOutput(Path(chip), int(line), name, active_low)
    raise ConfigError(f"{name}: {spec!r} is not sysfs:PATH or gpiod:CHIP:LINE")
