"""The `power` and `motion` sources: supply and backup battery, ignition, accelerometer (sysfs).

`power` emits the vehicle's 12 V supply (`Vehicle.LowVoltageBattery.CurrentVoltage`), the
tracker's backup battery voltage and state of charge, whether external power is connected, and
the ignition as `Vehicle.LowVoltageSystemState` (ON = 4 / OFF = 2). Ignition comes from a GPIO
line, or is inferred: supply above the charging level (alternator running) or engine speed > 0
(fed by the agent from OBD samples through `observe_rpm`).

`motion` emits longitudinal/lateral/vertical acceleration from an IIO accelerometer, with the
board's mounting given as an axis map (`longitudinal = "x"`, `lateral = "-y"`, ...).

A reading that fails is counted and skipped; the source stays open and reports degraded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.sources.base import HealthState, SampleSink, Source, SourceError
from edge.sources.registry import Option, SourceContext, SourceSpec
from edge.sources.sysfs import AccelReader, GpioReader, SysfsReadError, VoltageReader, read_number, read_text
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog, default_catalog

STATE_OFF = 2.0
STATE_ON = 4.0


def infer_ignition(supply_v: float | None, rpm: float | None, *, charging_v: float = 13.2) -> bool | None:
    """Ignition on if the engine turns or the alternator charges; None if nothing is known."""
    if rpm is not None and rpm > 0:
        return True
    if supply_v is None:
        return None if rpm is None else False
    return supply_v >= charging_v


class PowerSource(Source):
    """Reads supply, backup battery, external power and ignition every `period_s`."""

    kind = "power"

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        supply: VoltageReader | None = None,
        backup_battery: Path | None = None,
        external_power: Path | None = None,
        external_min_v: float = 6.0,
        ignition_gpio: GpioReader | None = None,
        charging_v: float = 13.2,
        rpm_max_age_s: float = 5.0,
        period_s: float = 1.0,
        catalog: Catalog | None = None,
    ) -> None:
        super().__init__(name, clock)
        self.supply = supply
        self.backup_battery = backup_battery
        self.external_power = external_power
        self.external_min_v = external_min_v
        self.ignition_gpio = ignition_gpio
        self.charging_v = charging_v
        self.rpm_max_age_ns = round(rpm_max_age_s * 1e9)
        self.period_s = period_s
        catalog = catalog or default_catalog()
        self._ids = {
            key: catalog.id_of(path)
            for key, path in (
                ("supply", "Vehicle.LowVoltageBattery.CurrentVoltage"),
                ("backup_v", "Vehicle.Telematics.BackupBattery.CurrentVoltage"),
                ("backup_soc", "Vehicle.Telematics.BackupBattery.StateOfCharge"),
                ("external", "Vehicle.Telematics.IsExternalPowerConnected"),
                ("state", "Vehicle.LowVoltageSystemState"),
            )
        }
        self._rpm: tuple[float, int] | None = None
        self.supply_v: float | None = None
        self.ignition: bool | None = None
        self._failed_reads = 0

    def observe_rpm(self, rpm: float, mono_ns: int) -> None:
        """Tell the inference the latest engine speed (thread-safe: one tuple assignment)."""
        self._rpm = (rpm, mono_ns)

    def open(self) -> None:
        configured = [
            p
            for p in (
                self.supply and self.supply.path,
                self.backup_battery,
                self.external_power,
                self.ignition_gpio and self.ignition_gpio.path,
            )
            if p
        ]
        if not configured:
            raise SourceError("power source: nothing configured (supply, backup_battery, ...)")
        missing = [str(p) for p in configured if not (p.exists() or Path(f"{p}_raw").exists())]
        if missing:
            raise SourceError(f"power source: missing sysfs paths {', '.join(missing)}")

    def close(self) -> None:
        return None

    def _read(self, what: str, fn: Any) -> Any:
        self.health.frames += 1
        try:
            return fn()
        except SysfsReadError as error:
            self.health.error(f"{what}: {error}")
            self._failed_reads += 1
            return None

    def poll(self, sink: SampleSink) -> float:
        self._failed_reads = 0
        now = self.clock.monotonic_ns()
        ids = self._ids
        self.supply_v = self._read("supply", self.supply.read_v) if self.supply else None
        if self.supply_v is not None:
            self.emit(sink, ids["supply"], self.supply_v, now)
        if self.backup_battery is not None:
            battery = self.backup_battery
            volts = self._read("backup_battery", lambda: read_number(battery / "voltage_now") / 1e6)
            if volts is not None:
                self.emit(sink, ids["backup_v"], volts, now)
            if (battery / "capacity").exists():
                soc = self._read("backup_battery", lambda: read_number(battery / "capacity"))
                if soc is not None:
                    self.emit(sink, ids["backup_soc"], soc, now)
        external: bool | None = None
        if self.external_power is not None:
            supply_dir = self.external_power
            online = self._read("external_power", lambda: read_text(supply_dir / "online"))
            external = None if online is None else online.strip() == "1"
        elif self.supply_v is not None:
            external = self.supply_v >= self.external_min_v
        if external is not None:
            self.emit(sink, ids["external"], 1.0 if external else 0.0, now)
        if self.ignition_gpio is not None:
            self.ignition = self._read("ignition", self.ignition_gpio.read)
        else:
            rpm = self._rpm
            fresh_rpm = rpm[0] if rpm is not None and now - rpm[1] <= self.rpm_max_age_ns else None
            self.ignition = infer_ignition(self.supply_v, fresh_rpm, charging_v=self.charging_v)
        if self.ignition is not None:
            self.emit(sink, ids["state"], STATE_ON if self.ignition else STATE_OFF, now)
        if self._failed_reads:
            self.health.set(HealthState.DEGRADED, self.health.last_error)
        else:
            self.health.set(HealthState.OK, "")
        return self.period_s


_AXES = ("longitudinal", "lateral", "vertical")


class MotionSource(Source):
    """Reads an IIO accelerometer every `period_s` and emits vehicle-frame acceleration."""

    kind = "motion"

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        reader: AccelReader,
        axes: Mapping[str, str],
        period_s: float = 0.1,
        catalog: Catalog | None = None,
    ) -> None:
        super().__init__(name, clock)
        self.reader = reader
        self.period_s = period_s
        self.axes: dict[str, tuple[str, float]] = {}
        for target in _AXES:
            spec = axes.get(target, {"longitudinal": "x", "lateral": "y", "vertical": "z"}[target])
            sign = -1.0 if spec.startswith("-") else 1.0
            axis = spec.lstrip("+-")
            if axis not in ("x", "y", "z"):
                raise ConfigError(f"sources.{name}.axes.{target} must be x, y or z (optionally with -)")
            self.axes[target] = (axis, sign)
        catalog = catalog or default_catalog()
        self._ids = {t: catalog.id_of(f"Vehicle.Acceleration.{t.capitalize()}") for t in _AXES}

    def open(self) -> None:
        if not (self.reader.device / "in_accel_x_raw").exists():
            raise SourceError(f"motion source: no IIO accelerometer at {self.reader.device}")

    def close(self) -> None:
        return None

    def poll(self, sink: SampleSink) -> float:
        self.health.frames += 1
        try:
            values = self.reader.read_ms2()
        except SysfsReadError as error:
            self.health.error(str(error))
            self.health.set(HealthState.DEGRADED, str(error))
            return self.period_s
        now = self.clock.monotonic_ns()
        for target, (axis, sign) in self.axes.items():
            self.emit(sink, self._ids[target], sign * values[axis], now)
        self.health.set(HealthState.OK, "")
        return self.period_s


def _power_factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    supply = (
        VoltageReader.from_config(f"sources.{name}.supply", options["supply"]) if options["supply"] else None
    )
    gpio = None
    if options["ignition_gpio"]:
        gpio = GpioReader(Path(options["ignition_gpio"]), options["ignition_active_low"])
    return PowerSource(
        name,
        context.clock,
        supply=supply,
        backup_battery=Path(options["backup_battery"]) if options["backup_battery"] else None,
        external_power=Path(options["external_power"]) if options["external_power"] else None,
        external_min_v=options["external_min_v"],
        ignition_gpio=gpio,
        charging_v=options["charging_v"],
        period_s=options["period_s"],
        catalog=context.catalog,
    )


def _motion_factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    axes = options["axes"]
    if not all(isinstance(v, str) for v in axes.values()) or set(axes) - set(_AXES):
        raise ConfigError(f'sources.{name}.axes must map longitudinal/lateral/vertical to "x", "-y", ...')
    return MotionSource(
        name,
        context.clock,
        reader=AccelReader(Path(options["device"])),
        axes=axes,
        period_s=options["period_s"],
        catalog=context.catalog,
    )


POWER_SPEC = SourceSpec(
    kind="power",
    description="12 V supply, backup battery, external power and ignition from sysfs",
    options=(
        Option("supply", dict, {}, '{ kind = "iio"|"hwmon"|"power_supply", path = "...", divider = 11.0 }'),
        Option("backup_battery", str, "", "power_supply directory of the backup battery"),
        Option("external_power", str, "", "power_supply directory whose `online` says external power"),
        Option("external_min_v", float, 6.0, "without external_power: supply above this = connected"),
        Option("ignition_gpio", str, "", "GPIO value file of the ignition line (empty: infer)"),
        Option("ignition_active_low", bool, False, "the ignition line reads 0 when on"),
        Option("charging_v", float, 13.2, "inferred ignition: supply at or above this = engine running"),
        Option("period_s", float, 1.0, "read interval"),
    ),
    factory=_power_factory,
)

MOTION_SPEC = SourceSpec(
    kind="motion",
    description="acceleration from an IIO accelerometer, mapped to the vehicle frame",
    options=(
        Option("device", str, "/sys/bus/iio/devices/iio:device1", "IIO device directory"),
        Option(
            "axes",
            dict,
            {"longitudinal": "x", "lateral": "y", "vertical": "z"},
            'mounting: vehicle axis = sensor axis, optionally negated ("-y")',
        ),
        Option("period_s", float, 0.1, "read interval"),
    ),
    factory=_motion_factory,
)
