"""SAE J1979 mode 01 PIDs as a table: per PID its data length and fields, each a formula and a VSS path.

A field is a pure description: bytes `start .. start+size` of the data after the PID (A, B, C, ...),
big-endian, optionally two's complement (`signed`) or cut to the bits of `mask`, then
`raw * scale + offset` in the unit of the catalog signal it maps to (the odometer, reported in
0.1 km, becomes metres for `Vehicle.TraveledDistance`). `encode` is the inverse over the same
description; the HIL ECU emulator answers with it. Bit-encoded status PIDs (0x01, 0x41, 0x1E) are
one field per bit; enumerations (fuel system status, fuel type, ...) are integers with `meanings`.
A field maps to a standard VSS path where VSS has one, else to a `Vehicle.OBD.*` overlay name (the
VSS v4/v5 OBD branch, removed in v6), listed in docs/sources.md. Also: mode 03/07 DTCs and mode 09
(VIN, calibration ids, CVNs, ECU name, in-use performance counters).

Not in the table: 0x02 (the freeze-frame DTC: a mode 02 value) and the multi-sensor PIDs from 0x65 on
with their own support bytes (diesel and turbo control), except 0x8D, 0x8E, 0xA2 and 0xA6.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from protocol.errors import ProtocolError


class ObdDecodeError(ProtocolError):
    """An OBD-II response that is too short, of an unknown service or PID, or otherwise malformed."""


def _u16(d: bytes) -> int:
    return (d[0] << 8) | d[1]


def _u32(d: bytes) -> int:
    return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def _be(value: int, n: int) -> bytes:
    return value.to_bytes(n, "big")


Kind = Literal["float", "int", "bool"]


@dataclass(frozen=True, slots=True)
class Field:
    """One value in a PID's data bytes: `raw * scale + offset`, raw from `start`, `size`, `mask`."""

    name: str
    vss: str
    unit: str
    start: int = 0
    size: int = 1
    scale: float = 1.0
    offset: float = 0.0
    signed: bool = False
    mask: int = 0  # 0: the whole bytes; else only these bits (shifted down to bit 0)
    kind: Kind = "float"
    meanings: Mapping[int, str] = field(default_factory=dict)

    @property
    def _shift(self) -> int:
        return (self.mask & -self.mask).bit_length() - 1 if self.mask else 0

    def raw(self, data: bytes) -> int:
        raw = int.from_bytes(data[self.start : self.start + self.size], "big", signed=self.signed)
        return (raw & self.mask) >> self._shift if self.mask else raw

    def value(self, data: bytes) -> float:
        return self.raw(data) * self.scale + self.offset

    def put(self, value: float, data: bytearray) -> None:
        """Write `value` (clamped to what the bytes can carry) into `data`."""
        if self.mask:
            top = self.mask >> self._shift
            raw = max(0, min(top, round((value - self.offset) / self.scale)))
            word = int.from_bytes(data[self.start : self.start + self.size], "big")
            word = (word & ~self.mask) | (raw << self._shift)
            data[self.start : self.start + self.size] = _be(word, self.size)
            return
        bits = 8 * self.size
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)
        raw = max(low, min(high, round((value - self.offset) / self.scale)))
        data[self.start : self.start + self.size] = raw.to_bytes(self.size, "big", signed=self.signed)


@dataclass(frozen=True, slots=True)
class PidValue:
    """One decoded field of a PID, in the unit of its catalog signal; `text` names an enum value."""

    pid: int
    name: str
    vss: str
    value: float
    unit: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Pid:
    """One mode 01 PID: J1979 data length in bytes and its fields."""

    pid: int
    name: str
    length: int
    fields: tuple[Field, ...]

    @property
    def vss(self) -> str:
        """The VSS path of the first (main) field."""
        return self.fields[0].vss

    @property
    def unit(self) -> str:
        return self.fields[0].unit

    def decode(self, data: bytes) -> list[PidValue]:
        out = []
        for f in self.fields:
            value = f.value(data)
            text = f.meanings.get(int(value), "unknown") if f.meanings else None
            out.append(PidValue(self.pid, f.name, f.vss, value, f.unit, text))
        return out

    def encode(self, values: float | Mapping[str, float]) -> bytes:
        """The data bytes for `values`: a number sets the first field, a mapping fields by name."""
        named = {self.fields[0].name: float(values)} if isinstance(values, int | float) else values
        unknown = set(named) - {f.name for f in self.fields}
        if unknown:
            raise ObdDecodeError(f"PID 0x{self.pid:02X} has no field(s) {sorted(unknown)}")
        data = bytearray(self.length)
        for f in self.fields:
            # An absent field encodes as raw 0, except offset fields, which encode their zero value.
            f.put(named.get(f.name, 0.0 if f.offset and not f.mask else f.offset), data)
        return bytes(data)


# --- the table -------------------------------------------------------------------------------

PCT = 100.0 / 255.0  # A * 100 / 255
TRIM = 100.0 / 128.0  # (A - 128) * 100 / 128 = A * 100/128 - 100
OBD = "Vehicle.OBD."

FUEL_SYSTEM = {0: "not present", 1: "open loop: not yet warm", 2: "closed loop",
               4: "open loop: load or deceleration", 8: "open loop: system failure",
               16: "closed loop: feedback fault"}
SECONDARY_AIR = {1: "upstream", 2: "downstream of catalytic converter",
                 4: "from the outside atmosphere or off", 8: "pump commanded on for diagnostics"}
OBD_STANDARDS = {1: "OBD-II (CARB)", 2: "OBD (EPA)", 3: "OBD and OBD-II", 4: "OBD-I", 5: "not OBD compliant",
                 6: "EOBD (Europe)", 7: "EOBD and OBD-II", 8: "EOBD and OBD", 9: "EOBD, OBD and OBD-II",
                 10: "JOBD (Japan)", 11: "JOBD and OBD-II", 12: "JOBD and EOBD", 13: "JOBD, EOBD and OBD-II"}
FUEL_TYPES = {0: "not available", 1: "gasoline", 2: "methanol", 3: "ethanol", 4: "diesel", 5: "LPG", 6: "CNG",
              7: "propane", 8: "electric", 9: "bifuel: gasoline", 10: "bifuel: methanol",
              11: "bifuel: ethanol",
              12: "bifuel: LPG", 13: "bifuel: CNG", 14: "bifuel: propane", 15: "bifuel: electricity",
              16: "bifuel: electric and combustion", 17: "hybrid gasoline", 18: "hybrid ethanol",
              19: "hybrid diesel", 20: "hybrid electric", 21: "hybrid electric and combustion",
              22: "hybrid regenerative", 23: "bifuel: diesel"}


def _one(pid: int, name: str, length: int, vss: str, unit: str, **kw: object) -> Pid:
    return Pid(pid, name, length, (Field(name, vss, unit, **kw),))  # type: ignore[arg-type]


def _pct(pid: int, name: str, vss: str) -> Pid:
    return _one(pid, name, 1, vss, "percent", scale=PCT)


def _trim(pid: int, name: str, vss: str) -> Pid:
    return _one(pid, name, 1, vss, "percent", scale=TRIM, offset=-100.0)


def _temp(pid: int, name: str, vss: str) -> Pid:
    return _one(pid, name, 1, vss, "celsius", offset=-40.0)


def _torque(pid: int, name: str, vss: str) -> Pid:
    return _one(pid, name, 1, vss, "percent", offset=-125.0)


def _monitors(prefix: str, vss: str, done_word: str) -> tuple[Field, ...]:
    """Bytes B, C, D of 0x01 / 0x41: which monitors exist (B0-2, C) and which are incomplete (B4-6, D)."""
    fields = []
    for bit, monitor, path in ((0, "misfire", "Misfire"), (1, "fuel_system", "FuelSystem"),
                               (2, "components", "Components")):
        fields.append(Field(f"{prefix}_{monitor}_{done_word}", f"{vss}{path}Monitor.Is{done_word.title()}",
                            "bool", start=1, mask=1 << bit, kind="bool"))
        fields.append(Field(f"{prefix}_{monitor}_incomplete", f"{vss}{path}Monitor.IsIncomplete",
                            "bool", start=1, mask=1 << (bit + 4), kind="bool"))
    fields.append(Field(f"{prefix}_engine_monitors_{done_word}", f"{vss}EngineMonitors{done_word.title()}",
                        "bitmask", start=2, kind="int"))
    fields.append(Field(f"{prefix}_engine_monitors_incomplete", f"{vss}EngineMonitorsIncomplete",
                        "bitmask", start=3, kind="int"))
    return tuple(fields)


def _o2(pid: int) -> Pid:
    n = pid - 0x13  # 0x14..0x1B: bank 1 sensors 1-4, bank 2 sensors 1-4
    bank, sensor = 1 + (n - 1) // 4, 1 + (n - 1) % 4
    name = f"o2_b{bank}s{sensor}"
    return Pid(pid, name, 2, (
        Field(f"{name}_voltage", f"{OBD}O2.Sensor{n}.Voltage", "V", scale=0.005),
        Field(f"{name}_fuel_trim", f"{OBD}O2.Sensor{n}.ShortTermFuelTrim", "percent", start=1,
              scale=TRIM, offset=-100.0),
    ))


def _o2_wide(pid: int, base: int, second: str) -> Pid:
    n = pid - base + 1  # sensors 1..8
    name = f"o2_s{n}_wide_range"
    lam = Field(f"o2_s{n}_lambda", f"{OBD}O2WR.Sensor{n}.Lambda", "ratio", size=2, scale=2.0 / 65536)
    if second == "voltage":
        other = Field(f"o2_s{n}_voltage", f"{OBD}O2WR.Sensor{n}.Voltage", "V", start=2, size=2,
                      scale=8.0 / 65536)
    else:
        other = Field(f"o2_s{n}_current", f"{OBD}O2WR.Sensor{n}.Current", "mA", start=2, size=2,
                      scale=1.0 / 256, offset=-128.0)
    return Pid(pid, f"{name}_{second}", 4, (lam, other))


def _catalyst(pid: int, bank: int, sensor: int) -> Pid:
    return _one(pid, f"catalyst_temp_b{bank}s{sensor}", 2, f"{OBD}Catalyst.Bank{bank}.Temperature{sensor}",
                "celsius", size=2, scale=0.1, offset=-40.0)


def _o2_trim(pid: int, term: str, bank: int) -> Pid:
    return Pid(pid, f"{term}_o2_trim_b{bank}", 2, tuple(
        Field(f"{term}_o2_trim_b{b}", f"{OBD}{term.title()}TermO2Trim{b}", "percent", start=i,
              scale=TRIM, offset=-100.0)
        for i, b in enumerate((bank, bank + 2))
    ))


_TABLE: list[Pid] = [
    Pid(0x01, "monitor_status", 4, (
        # A6..A0: confirmed emission DTCs; A7: MIL on; B3: compression ignition (diesel).
        Field("dtc_count", "Vehicle.Diagnostics.DTCCount", "count", mask=0x7F, kind="int"),
        Field("mil_on", f"{OBD}Status.IsMILOn", "bool", mask=0x80, kind="bool"),
        Field("compression_ignition", f"{OBD}Status.IsCompressionIgnition", "bool", start=1, mask=0x08,
              kind="bool"),
        *_monitors("status", f"{OBD}Status.", "available"),
    )),
    Pid(0x03, "fuel_system_status", 2, (
        Field("fuel_system_1_status", f"{OBD}FuelStatus.System1", "enum", kind="int", meanings=FUEL_SYSTEM),
        Field("fuel_system_2_status", f"{OBD}FuelStatus.System2", "enum", start=1, kind="int",
              meanings=FUEL_SYSTEM),
    )),
    _pct(0x04, "engine_load", f"{OBD}EngineLoad"),
    _temp(0x05, "coolant_temp", "Vehicle.Powertrain.CombustionEngine.ECT"),
    _trim(0x06, "short_fuel_trim_1", f"{OBD}ShortTermFuelTrim1"),
    _trim(0x07, "long_fuel_trim_1", f"{OBD}LongTermFuelTrim1"),
    _trim(0x08, "short_fuel_trim_2", f"{OBD}ShortTermFuelTrim2"),
    _trim(0x09, "long_fuel_trim_2", f"{OBD}LongTermFuelTrim2"),
    _one(0x0A, "fuel_pressure", 1, f"{OBD}FuelPressure", "kPa", scale=3.0),
    _one(0x0B, "intake_pressure", 1, "Vehicle.Powertrain.CombustionEngine.MAP", "kPa"),
    _one(0x0C, "engine_rpm", 2, "Vehicle.Powertrain.CombustionEngine.Speed", "rpm", size=2, scale=0.25),
    _one(0x0D, "vehicle_speed", 1, "Vehicle.Speed", "km/h"),
    _one(0x0E, "timing_advance", 1, f"{OBD}TimingAdvance", "degrees", scale=0.5, offset=-64.0),
    _temp(0x0F, "intake_air_temp", f"{OBD}IntakeTemp"),
    _one(0x10, "maf_rate", 2, f"{OBD}MAF", "g/s", size=2, scale=0.01),
    _pct(0x11, "throttle_position", "Vehicle.Powertrain.CombustionEngine.TPS"),
    _one(0x12, "secondary_air_status", 1, f"{OBD}AirStatus", "enum", kind="int", meanings=SECONDARY_AIR),
    _one(0x13, "o2_sensors_present", 1, f"{OBD}OxygenSensorsIn2Banks", "bitmask", kind="int"),
    *(_o2(pid) for pid in range(0x14, 0x1C)),
    _one(0x1C, "obd_standards", 1, f"{OBD}OBDStandards", "enum", kind="int", meanings=OBD_STANDARDS),
    _one(0x1D, "o2_sensors_present_4_banks", 1, f"{OBD}OxygenSensorsIn4Banks", "bitmask", kind="int"),
    _one(0x1E, "pto_active", 1, f"{OBD}IsPTOActive", "bool", mask=0x01, kind="bool"),  # A0
    _one(0x1F, "run_time", 2, f"{OBD}RunTime", "s", size=2),
    _one(0x21, "distance_with_mil", 2, f"{OBD}DistanceWithMIL", "km", size=2),
    _one(0x22, "fuel_rail_pressure_vac", 2, f"{OBD}FuelRailPressureVac", "kPa", size=2, scale=0.079),
    _one(0x23, "fuel_rail_pressure_direct", 2, f"{OBD}FuelRailPressureDirect", "kPa", size=2, scale=10.0),
    *(_o2_wide(pid, 0x24, "voltage") for pid in range(0x24, 0x2C)),
    _pct(0x2C, "commanded_egr", f"{OBD}CommandedEGR"),
    _trim(0x2D, "egr_error", f"{OBD}EGRError"),
    _pct(0x2E, "commanded_evap_purge", f"{OBD}CommandedEVAP"),
    _pct(0x2F, "fuel_level", "Vehicle.Powertrain.FuelSystem.RelativeLevel"),
    _one(0x30, "warmups_since_dtc_clear", 1, f"{OBD}WarmupsSinceDTCClear", "count", kind="int"),
    _one(0x31, "distance_since_dtc_clear", 2, f"{OBD}DistanceSinceDTCClear", "km", size=2),
    _one(0x32, "evap_vapor_pressure", 2, f"{OBD}EVAPVaporPressure", "Pa", size=2, scale=0.25, signed=True),
    _one(0x33, "barometric_pressure", 1, f"{OBD}BarometricPressure", "kPa"),
    *(_o2_wide(pid, 0x34, "current") for pid in range(0x34, 0x3C)),
    _catalyst(0x3C, 1, 1),
    _catalyst(0x3D, 2, 1),
    _catalyst(0x3E, 1, 2),
    _catalyst(0x3F, 2, 2),
    Pid(0x41, "drive_cycle_status", 4, _monitors("drive_cycle", f"{OBD}DriveCycleStatus.", "enabled")),
    _one(0x42, "control_module_voltage", 2, f"{OBD}ControlModuleVoltage", "V", size=2, scale=0.001),
    _one(0x43, "absolute_load", 2, f"{OBD}AbsoluteLoad", "percent", size=2, scale=PCT),
    _one(0x44, "commanded_equivalence_ratio", 2, f"{OBD}CommandedEquivalenceRatio", "ratio", size=2,
         scale=2.0 / 65536),
    _pct(0x45, "relative_throttle_position", f"{OBD}RelativeThrottlePosition"),
    _temp(0x46, "ambient_air_temp", "Vehicle.Exterior.AirTemperature"),
    _pct(0x47, "throttle_position_b", f"{OBD}ThrottlePositionB"),
    _pct(0x48, "throttle_position_c", f"{OBD}ThrottlePositionC"),
    _pct(0x49, "accelerator_position_d", f"{OBD}AcceleratorPositionD"),
    _pct(0x4A, "accelerator_position_e", f"{OBD}AcceleratorPositionE"),
    _pct(0x4B, "accelerator_position_f", f"{OBD}AcceleratorPositionF"),
    _pct(0x4C, "commanded_throttle_actuator", f"{OBD}ThrottleActuator"),
    _one(0x4D, "run_time_with_mil", 2, f"{OBD}RunTimeMIL", "min", size=2),
    _one(0x4E, "time_since_dtc_clear", 2, f"{OBD}TimeSinceDTCCleared", "min", size=2),
    Pid(0x4F, "max_values", 4, (
        Field("max_equivalence_ratio", f"{OBD}MaxValues.EquivalenceRatio", "ratio"),
        Field("max_o2_voltage", f"{OBD}MaxValues.O2SensorVoltage", "V", start=1),
        Field("max_o2_current", f"{OBD}MaxValues.O2SensorCurrent", "mA", start=2),
        Field("max_intake_pressure", f"{OBD}MaxValues.IntakeMAP", "kPa", start=3, scale=10.0),
    )),
    _one(0x50, "max_maf", 4, f"{OBD}MaxMAF", "g/s", scale=10.0),  # B, C, D reserved
    _one(0x51, "fuel_type", 1, f"{OBD}FuelType", "enum", kind="int", meanings=FUEL_TYPES),
    _pct(0x52, "ethanol_percent", f"{OBD}EthanolPercent"),
    _one(0x53, "evap_vapor_pressure_abs", 2, f"{OBD}EVAPVaporPressureAbsolute", "kPa", size=2, scale=0.005),
    _one(0x54, "evap_vapor_pressure_alt", 2, f"{OBD}EVAPVaporPressureAlternate", "Pa", size=2,
         offset=-32767.0),
    _o2_trim(0x55, "short", 1),
    _o2_trim(0x56, "long", 1),
    _o2_trim(0x57, "short", 2),
    _o2_trim(0x58, "long", 2),
    _one(0x59, "fuel_rail_pressure_abs", 2, f"{OBD}FuelRailPressureAbsolute", "kPa", size=2, scale=10.0),
    _pct(0x5A, "relative_accelerator_position", "Vehicle.Chassis.Accelerator.PedalPosition"),
    _pct(0x5B, "hybrid_battery_remaining", f"{OBD}HybridBatteryRemaining"),
    _temp(0x5C, "engine_oil_temp", "Vehicle.Powertrain.CombustionEngine.EOT"),
    _one(0x5D, "fuel_injection_timing", 2, f"{OBD}FuelInjectionTiming", "degrees", size=2, scale=1.0 / 128,
         offset=-210.0),
    _one(0x5E, "fuel_rate", 2, f"{OBD}FuelRate", "l/h", size=2, scale=0.05),
    _one(0x5F, "emission_requirements", 1, f"{OBD}EmissionRequirements", "enum", kind="int"),
    _torque(0x61, "driver_demand_torque", f"{OBD}DriverDemandEngineTorque"),
    _torque(0x62, "actual_torque", f"{OBD}ActualEngineTorque"),
    _one(0x63, "reference_torque", 2, f"{OBD}EngineReferenceTorque", "Nm", size=2),
    Pid(0x64, "percent_torque", 5, tuple(
        Field(f"percent_torque_{point.lower()}", f"{OBD}EnginePercentTorque.{point}", "percent", start=i,
              offset=-125.0)
        for i, point in enumerate(("Idle", "Point1", "Point2", "Point3", "Point4"))
    )),
    _pct(0x8D, "throttle_position_g", f"{OBD}ThrottlePositionG"),
    _torque(0x8E, "engine_friction_torque", f"{OBD}EngineFrictionPercentTorque"),
    _one(0xA2, "cylinder_fuel_rate", 2, f"{OBD}CylinderFuelRate", "mg/stroke", size=2, scale=1.0 / 32),
    # 0xA6: odometer in 0.1 km (u32); Vehicle.TraveledDistance is in metres (VSS v6).
    _one(0xA6, "odometer", 4, "Vehicle.TraveledDistance", "m", size=4, scale=100.0),
]

PIDS: dict[int, Pid] = {p.pid: p for p in _TABLE}

SUPPORTED_PID_RANGES = tuple(range(0x00, 0xE0, 0x20))
"""PIDs 0x00, 0x20, ..., 0xC0: each answers a 4-byte bitmask of the next 32 PIDs."""


def all_fields() -> list[tuple[Pid, Field]]:
    """Every (PID, field) of the table, in PID order."""
    return [(p, f) for p in _TABLE for f in p.fields]


def decode_supported(base: int, data: bytes) -> set[int]:
    """PIDs flagged in the 4-byte bitmask answered to `base` (0x00, 0x20, ...)."""
    if len(data) < 4:
        raise ObdDecodeError(f"supported-PIDs bitmask for 0x{base:02X} needs 4 bytes, got {len(data)}")
    mask = _u32(data)
    return {base + i + 1 for i in range(32) if mask & (1 << (31 - i))}


def encode_supported(base: int, pids: set[int]) -> bytes:
    mask = 0
    for pid in pids:
        if base < pid <= base + 32:
            mask |= 1 << (31 - (pid - base - 1))
    return _be(mask, 4)


def parse_mode01(payload: bytes) -> tuple[dict[int, bytes], bytes]:
    """Split a positive mode 01 response (`41 pid data [pid data ...]`) into {pid: data bytes}.

    Returns the parsed PIDs and any trailing bytes that could not be attributed (a PID this
    table does not know ends the walk, since its length is unknown).
    """
    if not payload or payload[0] != 0x41:
        raise ObdDecodeError("not a mode 01 response (first byte must be 0x41)")
    out: dict[int, bytes] = {}
    i = 1
    while i < len(payload):
        pid = payload[i]
        if pid in SUPPORTED_PID_RANGES:
            length = 4
        elif pid in PIDS:
            length = PIDS[pid].length
        else:
            return out, payload[i:]
        data = payload[i + 1 : i + 1 + length]
        if len(data) < length:
            return out, payload[i:]
        out[pid] = bytes(data)
        i += 1 + length
    if not out:
        raise ObdDecodeError("mode 01 response carries no PID")
    return out, b""


def decode_pid(pid: int, data: bytes) -> list[PidValue]:
    """Every field of one PID's data bytes; `ObdDecodeError` for an unknown PID or short data."""
    spec = PIDS.get(pid)
    if spec is None:
        raise ObdDecodeError(f"PID 0x{pid:02X} has no decoder (see `lienwatch obd decode --list`)")
    if len(data) < spec.length:
        raise ObdDecodeError(f"PID 0x{pid:02X} ({spec.name}) needs {spec.length} data bytes, got {len(data)}")
    return spec.decode(data[: spec.length])


def decode_response(payload: bytes) -> list[PidValue]:
    """Decode a whole mode 01 response; `ObdDecodeError` if any part of it is malformed."""
    if len(payload) >= 3 and payload[0] == 0x7F:
        raise ObdDecodeError(f"negative response to service 0x{payload[1]:02X}: NRC 0x{payload[2]:02X}")
    parsed, rest = parse_mode01(payload)
    if rest and rest[0] in PIDS and len(rest) - 1 < PIDS[rest[0]].length:
        spec = PIDS[rest[0]]
        raise ObdDecodeError(
            f"PID 0x{spec.pid:02X} ({spec.name}) needs {spec.length} data bytes, got {len(rest) - 1}"
        )
    if rest:
        raise ObdDecodeError(
            f"cannot decode bytes from offset {len(payload) - len(rest)}: {rest.hex(' ').upper()}"
            " (unknown PID or truncated data)"
        )
    return [
        v for pid, data in parsed.items() if pid not in SUPPORTED_PID_RANGES for v in decode_pid(pid, data)
    ]


# --- DTCs (modes 03 and 07) -------------------------------------------------------------------

_DTC_LETTERS = "PCBU"


def decode_dtc(two: bytes) -> str:
    """`b'\\x01\\x43'` -> `P0143`: 2 bits system letter, then 14 bits as 4 hex digits."""
    value = _u16(two)
    return f"{_DTC_LETTERS[value >> 14]}{(value >> 12) & 0x3:X}{(value >> 8) & 0xF:X}{value & 0xFF:02X}"


def encode_dtc(code: str) -> bytes:
    if len(code) != 5 or code[0] not in _DTC_LETTERS:
        raise ObdDecodeError(f"DTC {code!r} is not like P0143")
    value = (_DTC_LETTERS.index(code[0]) << 14) | int(code[1:], 16)
    return _be(value, 2)


def decode_dtcs(payload: bytes) -> list[str]:
    """DTCs of a mode 03 (`43`) or mode 07 (`47`) response over CAN: service, count, 2 bytes each.

    Padding entries `00 00` are skipped.
    """
    if len(payload) < 2 or payload[0] not in (0x43, 0x47, 0x4A):
        raise ObdDecodeError("not a DTC response (first byte must be 0x43, 0x47 or 0x4A)")
    count = payload[1]
    body = payload[2:]
    if len(body) < 2 * count:
        raise ObdDecodeError(f"DTC response announces {count} codes but carries {len(body) // 2}")
    codes = [decode_dtc(body[2 * i : 2 * i + 2]) for i in range(count)]
    return [c for c in codes if c != "P0000"]


# --- mode 09: vehicle information -----------------------------------------------------------

VIN, CALIBRATION_IDS, CVNS, IPT_SPARK, ECU_NAME, IPT_COMPRESSION = 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0B
MODE09_PIDS = (VIN, CALIBRATION_IDS, CVNS, IPT_SPARK, ECU_NAME, IPT_COMPRESSION)

# In-use performance tracking counters (J1979 mode 09 PIDs 08 and 0B), in their order on the wire.
IPT_SPARK_NAMES = ("OBDCOND", "IGNCNTR", "CATCOMP1", "CATCOND1", "CATCOMP2", "CATCOND2", "O2SCOMP1",
                   "O2SCOND1", "O2SCOMP2", "O2SCOND2", "EGRCOMP", "EGRCOND", "AIRCOMP", "AIRCOND",
                   "EVAPCOMP", "EVAPCOND", "SO2SCOMP1", "SO2SCOND1", "SO2SCOMP2", "SO2SCOND2")
IPT_COMPRESSION_NAMES = ("OBDCOND", "IGNCNTR", "HCCATCOMP", "HCCATCOND", "NCATCOMP", "NCATCOND",
                         "NADSCOMP", "NADSCOND", "PMCOMP", "PMCOND", "EGSCOMP", "EGSCOND", "EGRCOMP",
                         "EGRCOND", "BPCOMP", "BPCOND", "FUELCOMP", "FUELCOND")


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """One decoded mode 09 response: texts (VIN, calibration ids, CVNs in hex, ECU name) or counters."""

    pid: int
    name: str
    texts: tuple[str, ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)


def _ascii(chunk: bytes, what: str) -> str:
    text = chunk.rstrip(b"\x00 ").lstrip(b"\x00")
    if not text or not all(0x20 <= b < 0x7F for b in text):
        raise ObdDecodeError(f"{what} is not printable ASCII: {chunk.hex(' ').upper()}")
    return text.decode("ascii")


def decode_vehicle_info(payload: bytes) -> VehicleInfo:
    """A mode 09 response (`49 pid count data...`) of PID 02, 04, 06, 08, 0A or 0B."""
    if len(payload) < 3 or payload[0] != 0x49:
        raise ObdDecodeError("not a mode 09 response (must start with 49 pid count)")
    pid, count, body = payload[1], payload[2], payload[3:]
    if pid == VIN:
        return VehicleInfo(pid, "vin", (_ascii(body, "VIN"),))
    sizes = {CALIBRATION_IDS: 16, CVNS: 4, ECU_NAME: 20, IPT_SPARK: 2, IPT_COMPRESSION: 2}
    if pid not in sizes:
        raise ObdDecodeError(f"mode 09 PID 0x{pid:02X} has no decoder (known: 02, 04, 06, 08, 0A, 0B)")
    size = sizes[pid]
    if count == 0 or len(body) < count * size:
        raise ObdDecodeError(f"mode 09 PID 0x{pid:02X} announces {count} items of {size} bytes, "
                             f"carries {len(body)} bytes")
    items = [body[i * size : (i + 1) * size] for i in range(count)]
    if pid == CALIBRATION_IDS:
        return VehicleInfo(pid, "calibration_ids", tuple(_ascii(i, "calibration id") for i in items))
    if pid == CVNS:
        return VehicleInfo(pid, "cvns", tuple(i.hex().upper() for i in items))
    if pid == ECU_NAME:
        return VehicleInfo(pid, "ecu_name", tuple(_ascii(i, "ECU name") for i in items))
    names = IPT_SPARK_NAMES if pid == IPT_SPARK else IPT_COMPRESSION_NAMES
    if count > len(names):
        raise ObdDecodeError(
            f"mode 09 PID 0x{pid:02X} announces {count} counters, J1979 defines {len(names)}"
        )
    label = "in_use_spark" if pid == IPT_SPARK else "in_use_compression"
    return VehicleInfo(pid, label, counters={names[i]: _u16(item) for i, item in enumerate(items)})


def encode_vehicle_info(pid: int, items: list[str] | Mapping[str, int]) -> bytes:
    """The mode 09 response the emulator sends for `items` (texts, or counters by name)."""
    if isinstance(items, Mapping):
        names = IPT_SPARK_NAMES if pid == IPT_SPARK else IPT_COMPRESSION_NAMES
        count = max(16, *(names.index(n) + 1 for n in items))
        body = b"".join(_be(items.get(names[i], 0), 2) for i in range(count))
        return bytes([0x49, pid, count]) + body
    if pid == CVNS:
        return bytes([0x49, pid, len(items)]) + b"".join(bytes.fromhex(i) for i in items)
    size = {VIN: 17, CALIBRATION_IDS: 16, ECU_NAME: 20}[pid]
    body = b"".join(i.encode("ascii")[:size].ljust(size, b"\x00") for i in items)
    return bytes([0x49, pid, len(items)]) + body


def decode_vin(payload: bytes) -> str:
    """The VIN from a mode 09 PID 02 response (`49 02 01` + 17 ASCII characters)."""
    if len(payload) < 3 or payload[0] != 0x49 or payload[1] != 0x02:
        raise ObdDecodeError("not a VIN response (must start with 49 02)")
    return decode_vehicle_info(payload).texts[0]


def parse_hex(words: list[str]) -> bytes:
    """`['41', '0C', '1A', 'F8']` or `['410C1AF8']` -> bytes; `ObdDecodeError` on anything else."""
    text = "".join(w.replace(",", "").replace(":", "") for w in words).replace(" ", "")
    if text.lower().startswith("0x"):
        text = text[2:]
    if not text or len(text) % 2:
        raise ObdDecodeError(f"expected hex bytes like '41 0C 1A F8', got {' '.join(words)!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ObdDecodeError(f"expected hex bytes like '41 0C 1A F8', got {' '.join(words)!r}") from None
