"""SAE J1979 mode 01 PIDs as a table: length, formula, inverse, unit and VSS signal.

Each row's `decode` is the J1979 formula on the data bytes A, B, C, D (the bytes after the PID)
and returns the value in the unit of the catalog signal it maps to (e.g. the odometer, reported
in 0.1 km, becomes metres for `Vehicle.TraveledDistance`). `encode` is the inverse; the HIL ECU
emulator uses it to answer with the vehicle's state. Also: mode 03/07 DTCs and the mode 09 VIN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol.errors import ProtocolError


class ObdDecodeError(ProtocolError):
    """An OBD-II response that is too short, of an unknown service or PID, or otherwise malformed."""


def _u16(d: bytes) -> int:
    return (d[0] << 8) | d[1]


def _u32(d: bytes) -> int:
    return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def _clamp(raw: float, bits: int) -> int:
    return max(0, min((1 << bits) - 1, round(raw)))


def _be(value: int, n: int) -> bytes:
    return value.to_bytes(n, "big")


@dataclass(frozen=True, slots=True)
class Pid:
    """One mode 01 PID: J1979 data length in bytes and the formula to the catalog signal's unit."""

    pid: int
    name: str
    length: int
    vss: str
    unit: str
    decode: Callable[[bytes], float]
    encode: Callable[[float], bytes]


def _pct_a(pid: int, name: str, vss: str) -> Pid:
    return Pid(
        pid,
        name,
        1,
        vss,
        "percent",
        lambda d: d[0] * 100.0 / 255.0,
        lambda v: _be(_clamp(v * 255.0 / 100.0, 8), 1),
    )


def _temp_a(pid: int, name: str, vss: str) -> Pid:
    return Pid(pid, name, 1, vss, "celsius", lambda d: d[0] - 40.0, lambda v: _be(_clamp(v + 40.0, 8), 1))


def _u16_scaled(pid: int, name: str, vss: str, unit: str, divisor: float) -> Pid:
    return Pid(
        pid, name, 2, vss, unit, lambda d: _u16(d) / divisor, lambda v: _be(_clamp(v * divisor, 16), 2)
    )


PIDS: dict[int, Pid] = {
    p.pid: p
    for p in (
        # 0x01: A7 = MIL on, A6..A0 = number of confirmed emission DTCs.
        Pid(
            0x01,
            "monitor_status",
            4,
            "Vehicle.Diagnostics.DTCCount",
            "count",
            lambda d: float(d[0] & 0x7F),
            lambda v: bytes([_clamp(v, 7) | (0x80 if v > 0 else 0), 0x07, 0xE5, 0x00]),
        ),
        _pct_a(0x04, "engine_load", "Vehicle.OBD.EngineLoad"),
        _temp_a(0x05, "coolant_temp", "Vehicle.Powertrain.CombustionEngine.ECT"),
        _u16_scaled(0x0C, "engine_rpm", "Vehicle.Powertrain.CombustionEngine.Speed", "rpm", 4.0),
        Pid(
            0x0D,
            "vehicle_speed",
            1,
            "Vehicle.Speed",
            "km/h",
            lambda d: float(d[0]),
            lambda v: _be(_clamp(v, 8), 1),
        ),
        _temp_a(0x0F, "intake_air_temp", "Vehicle.OBD.IntakeTemp"),
        _u16_scaled(0x10, "maf_rate", "Vehicle.OBD.MAF", "g/s", 100.0),
        _u16_scaled(0x1F, "run_time", "Vehicle.OBD.RunTime", "s", 1.0),
        _u16_scaled(0x21, "distance_with_mil", "Vehicle.OBD.DistanceWithMIL", "km", 1.0),
        _pct_a(0x2F, "fuel_level", "Vehicle.Powertrain.FuelSystem.RelativeLevel"),
        _u16_scaled(0x31, "distance_since_dtc_clear", "Vehicle.OBD.DistanceSinceDTCClear", "km", 1.0),
        _u16_scaled(0x42, "control_module_voltage", "Vehicle.OBD.ControlModuleVoltage", "V", 1000.0),
        _temp_a(0x46, "ambient_air_temp", "Vehicle.Exterior.AirTemperature"),
        _temp_a(0x5C, "engine_oil_temp", "Vehicle.Powertrain.CombustionEngine.EOT"),
        # 0xA6: odometer in 0.1 km (u32); Vehicle.TraveledDistance is in metres (VSS v6).
        Pid(
            0xA6,
            "odometer",
            4,
            "Vehicle.TraveledDistance",
            "m",
            lambda d: _u32(d) * 100.0,
            lambda v: _be(_clamp(v / 100.0, 32), 4),
        ),
    )
}

SUPPORTED_PID_RANGES = tuple(range(0x00, 0xE0, 0x20))
"""PIDs 0x00, 0x20, ..., 0xC0: each answers a 4-byte bitmask of the next 32 PIDs."""


@dataclass(frozen=True, slots=True)
class PidValue:
    """One decoded PID value, in the unit of its catalog signal."""

    pid: int
    name: str
    vss: str
    value: float
    unit: str


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


def decode_pid(pid: int, data: bytes) -> PidValue:
    spec = PIDS.get(pid)
    if spec is None:
        raise ObdDecodeError(f"PID 0x{pid:02X} has no decoder (known: {', '.join(f'{p:02X}' for p in PIDS)})")
    if len(data) < spec.length:
        raise ObdDecodeError(f"PID 0x{pid:02X} ({spec.name}) needs {spec.length} data bytes, got {len(data)}")
    return PidValue(pid, spec.name, spec.vss, spec.decode(data[: spec.length]), spec.unit)


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
    return [decode_pid(pid, data) for pid, data in parsed.items() if pid not in SUPPORTED_PID_RANGES]


# --- DTCs (modes 03 and 07) and the VIN (mode 09 PID 02) -------------------------------------

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


def decode_vin(payload: bytes) -> str:
    """The VIN from a mode 09 PID 02 response (`49 02 01` + 17 ASCII characters)."""
    if len(payload) < 3 or payload[0] != 0x49 or payload[1] != 0x02:
        raise ObdDecodeError("not a VIN response (must start with 49 02)")
    text = payload[3:].rstrip(b"\x00 ").lstrip(b"\x00")
    if not text or not all(0x20 < b < 0x7F for b in text):
        raise ObdDecodeError("VIN response is not printable ASCII")
    return text.decode("ascii")


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
