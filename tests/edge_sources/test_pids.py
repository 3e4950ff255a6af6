"""J1979 decoders against hand-computed values, and garbage in → typed error out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.obd.pids import (
    PIDS,
    ObdDecodeError,
    all_fields,
    decode_dtc,
    decode_dtcs,
    decode_pid,
    decode_response,
    decode_supported,
    decode_vehicle_info,
    decode_vin,
    encode_dtc,
    encode_supported,
    encode_vehicle_info,
    parse_hex,
    parse_mode01,
)
from protocol.catalog import default_catalog

# (pid, data bytes, {field: expected}) — values computed by hand from the J1979 formulas.
HAND_COMPUTED: list[tuple[int, str, dict[str, float]]] = [
    (0x01, "83076500", {"dtc_count": 3, "mil_on": 1, "compression_ignition": 0, "status_misfire_available": 1,
                        "status_fuel_system_available": 1, "status_components_available": 1,
                        "status_misfire_incomplete": 0, "status_engine_monitors_available": 0x65,
                        "status_engine_monitors_incomplete": 0}),
    (0x01, "0A6DFF01", {"dtc_count": 10, "mil_on": 0, "compression_ignition": 1,
                        "status_misfire_available": 1,
                        "status_fuel_system_available": 0, "status_components_available": 1,
                        "status_misfire_incomplete": 0, "status_fuel_system_incomplete": 1,
                        "status_components_incomplete": 1, "status_engine_monitors_incomplete": 1}),
    (0x03, "0204", {"fuel_system_1_status": 2, "fuel_system_2_status": 4}),
    (0x04, "80", {"engine_load": 128 * 100 / 255}),  # 50.196 %
    (0x05, "7B", {"coolant_temp": 83.0}),  # 123 - 40
    (0x06, "80", {"short_fuel_trim_1": 0.0}),  # 128/1.28 - 100
    (0x07, "A0", {"long_fuel_trim_1": 25.0}),  # 160/1.28 - 100
    (0x0A, "64", {"fuel_pressure": 300.0}),  # 3 * 100 kPa
    (0x0B, "65", {"intake_pressure": 101.0}),
    (0x0C, "1AF8", {"engine_rpm": 1726.0}),  # (256*26 + 248)/4 = 6904/4
    (0x0D, "32", {"vehicle_speed": 50.0}),
    (0x0E, "94", {"timing_advance": 10.0}),  # 148/2 - 64
    (0x0F, "41", {"intake_air_temp": 25.0}),  # 65 - 40
    (0x10, "04E2", {"maf_rate": 12.5}),  # 1250/100
    (0x12, "04", {"secondary_air_status": 4}),
    (0x13, "33", {"o2_sensors_present": 0x33}),
    (0x14, "5A80", {"o2_b1s1_voltage": 0.45, "o2_b1s1_fuel_trim": 0.0}),  # 90/200 V, 128/1.28-100
    (0x1B, "FF00", {"o2_b2s4_voltage": 1.275, "o2_b2s4_fuel_trim": -100.0}),
    (0x1C, "06", {"obd_standards": 6}),
    (0x1E, "01", {"pto_active": 1}),  # A0
    (0x1E, "FE", {"pto_active": 0}),
    (0x1F, "0258", {"run_time": 600.0}),
    (0x21, "000C", {"distance_with_mil": 12.0}),
    (0x22, "03E8", {"fuel_rail_pressure_vac": 79.0}),  # 0.079 * 1000
    (0x23, "0190", {"fuel_rail_pressure_direct": 4000.0}),  # 10 * 400
    (0x24, "80004000", {"o2_s1_lambda": 1.0, "o2_s1_voltage": 2.0}),  # 2*32768/65536, 8*16384/65536
    (0x34, "80008100", {"o2_s1_lambda": 1.0, "o2_s1_current": 1.0}),  # 33024/256 - 128
    (0x3B, "40000000", {"o2_s8_lambda": 0.5, "o2_s8_current": -128.0}),
    (0x2C, "FF", {"commanded_egr": 100.0}),
    (0x2D, "00", {"egr_error": -100.0}),
    (0x30, "07", {"warmups_since_dtc_clear": 7}),
    (0x31, "05F3", {"distance_since_dtc_clear": 1523.0}),
    (0x32, "FFFC", {"evap_vapor_pressure": -1.0}),  # two's complement -4 / 4
    (0x32, "0190", {"evap_vapor_pressure": 100.0}),  # 400 / 4
    (0x33, "62", {"barometric_pressure": 98.0}),
    (0x3C, "1194", {"catalyst_temp_b1s1": 410.0}),  # 4500/10 - 40
    (0x41, "00076504", {"drive_cycle_misfire_enabled": 1, "drive_cycle_fuel_system_enabled": 1,
                        "drive_cycle_components_enabled": 1, "drive_cycle_misfire_incomplete": 0,
                        "drive_cycle_engine_monitors_enabled": 0x65,
                        "drive_cycle_engine_monitors_incomplete": 4}),
    (0x42, "3778", {"control_module_voltage": 14.2}),  # 0x3778 = 14200 mV
    (0x43, "00FF", {"absolute_load": 100.0}),  # 255 * 100/255
    (0x44, "8000", {"commanded_equivalence_ratio": 1.0}),
    (0x46, "3A", {"ambient_air_temp": 18.0}),  # 58 - 40
    (0x49, "33", {"accelerator_position_d": 20.0}),  # 51 * 100/255
    (0x4D, "003C", {"run_time_with_mil": 60.0}),
    (0x4E, "0E10", {"time_since_dtc_clear": 3600.0}),
    (0x4F, "0102030A", {"max_equivalence_ratio": 1, "max_o2_voltage": 2, "max_o2_current": 3,
                        "max_intake_pressure": 100}),
    (0x50, "20000000", {"max_maf": 320.0}),
    (0x51, "08", {"fuel_type": 8}),
    (0x52, "1A", {"ethanol_percent": 26 * 100 / 255}),
    (0x53, "4E20", {"evap_vapor_pressure_abs": 100.0}),  # 20000/200
    (0x54, "7FFF", {"evap_vapor_pressure_alt": 0.0}),  # 32767 - 32767
    (0x55, "8060", {"short_o2_trim_b1": 0.0, "short_o2_trim_b3": -25.0}),
    (0x58, "A080", {"long_o2_trim_b2": 25.0, "long_o2_trim_b4": 0.0}),
    (0x59, "1388", {"fuel_rail_pressure_abs": 50000.0}),
    (0x5A, "80", {"relative_accelerator_position": 128 * 100 / 255}),
    (0x5B, "CC", {"hybrid_battery_remaining": 80.0}),  # 204 * 100/255
    (0x5C, "87", {"engine_oil_temp": 95.0}),  # 135 - 40
    (0x5D, "6900", {"fuel_injection_timing": 0.0}),  # 26880/128 - 210
    (0x5E, "00C8", {"fuel_rate": 10.0}),  # 200 * 0.05
    (0x61, "7D", {"driver_demand_torque": 0.0}),  # 125 - 125
    (0x62, "AF", {"actual_torque": 50.0}),
    (0x63, "0190", {"reference_torque": 400.0}),
    (0x64, "7D8796A0FF", {"percent_torque_idle": 0, "percent_torque_point1": 10, "percent_torque_point2": 25,
                          "percent_torque_point3": 35, "percent_torque_point4": 130}),
    (0x8E, "00", {"engine_friction_torque": -125.0}),
    (0xA2, "0040", {"cylinder_fuel_rate": 2.0}),  # 64/32
    (0xA6, "0012D687", {"odometer": 123_456_700.0}),  # 1234567 * 0.1 km = 123456700 m
]

# The range of every PID's fields at all-0x00 and all-0xFF data bytes (J1979 minimum and maximum).
EDGES: dict[int, dict[str, tuple[float, float]]] = {
    0x01: {"dtc_count": (0, 127), "mil_on": (0, 1), "compression_ignition": (0, 1),
           "status_engine_monitors_available": (0, 255)},
    0x03: {"fuel_system_1_status": (0, 255)},
    **{pid: {name: (0.0, 100.0)} for pid, name in (
        (0x04, "engine_load"), (0x11, "throttle_position"), (0x2C, "commanded_egr"),
        (0x2E, "commanded_evap_purge"),
        (0x2F, "fuel_level"), (0x45, "relative_throttle_position"), (0x47, "throttle_position_b"),
        (0x48, "throttle_position_c"), (0x49, "accelerator_position_d"), (0x4A, "accelerator_position_e"),
        (0x4B, "accelerator_position_f"), (0x4C, "commanded_throttle_actuator"), (0x52, "ethanol_percent"),
        (0x5A, "relative_accelerator_position"), (0x5B, "hybrid_battery_remaining"),
        (0x8D, "throttle_position_g"))},
    **{pid: {name: (-40.0, 215.0)} for pid, name in (
        (0x05, "coolant_temp"), (0x0F, "intake_air_temp"), (0x46, "ambient_air_temp"),
        (0x5C, "engine_oil_temp"))},
    **{pid: {name: (-100.0, 99.21875)} for pid, name in (
        (0x06, "short_fuel_trim_1"), (0x07, "long_fuel_trim_1"), (0x08, "short_fuel_trim_2"),
        (0x09, "long_fuel_trim_2"), (0x2D, "egr_error"))},
    0x0A: {"fuel_pressure": (0.0, 765.0)},
    0x0B: {"intake_pressure": (0.0, 255.0)},
    0x0C: {"engine_rpm": (0.0, 16383.75)},
    0x0D: {"vehicle_speed": (0.0, 255.0)},
    0x0E: {"timing_advance": (-64.0, 63.5)},
    0x10: {"maf_rate": (0.0, 655.35)},
    0x12: {"secondary_air_status": (0, 255)},
    0x13: {"o2_sensors_present": (0, 255)},
    **{pid: {f"o2_b{1 + (pid - 0x14) // 4}s{1 + (pid - 0x14) % 4}_voltage": (0.0, 1.275),
             f"o2_b{1 + (pid - 0x14) // 4}s{1 + (pid - 0x14) % 4}_fuel_trim": (-100.0, 99.21875)}
       for pid in range(0x14, 0x1C)},
    0x1C: {"obd_standards": (0, 255)},
    0x1D: {"o2_sensors_present_4_banks": (0, 255)},
    0x1E: {"pto_active": (0, 1)},
    0x1F: {"run_time": (0.0, 65535.0)},
    0x21: {"distance_with_mil": (0.0, 65535.0)},
    0x22: {"fuel_rail_pressure_vac": (0.0, 5177.265)},
    0x23: {"fuel_rail_pressure_direct": (0.0, 655350.0)},
    **{pid: {f"o2_s{pid - 0x23}_lambda": (0.0, 2 * 65535 / 65536),
             f"o2_s{pid - 0x23}_voltage": (0.0, 8 * 65535 / 65536)} for pid in range(0x24, 0x2C)},
    0x30: {"warmups_since_dtc_clear": (0, 255)},
    0x31: {"distance_since_dtc_clear": (0.0, 65535.0)},
    0x32: {"evap_vapor_pressure": (0.0, -0.25)},  # FFFF is -1 in two's complement
    0x33: {"barometric_pressure": (0.0, 255.0)},
    **{pid: {f"o2_s{pid - 0x33}_lambda": (0.0, 2 * 65535 / 65536),
             f"o2_s{pid - 0x33}_current": (-128.0, 65535 / 256 - 128)} for pid in range(0x34, 0x3C)},
    **{pid: {name: (-40.0, 6513.5)} for pid, name in (
        (0x3C, "catalyst_temp_b1s1"), (0x3D, "catalyst_temp_b2s1"), (0x3E, "catalyst_temp_b1s2"),
        (0x3F, "catalyst_temp_b2s2"))},
    0x41: {"drive_cycle_misfire_enabled": (0, 1), "drive_cycle_engine_monitors_incomplete": (0, 255)},
    0x42: {"control_module_voltage": (0.0, 65.535)},
    0x43: {"absolute_load": (0.0, 25700.0)},
    0x44: {"commanded_equivalence_ratio": (0.0, 2 * 65535 / 65536)},
    0x4D: {"run_time_with_mil": (0.0, 65535.0)},
    0x4E: {"time_since_dtc_clear": (0.0, 65535.0)},
    0x4F: {"max_equivalence_ratio": (0, 255), "max_o2_voltage": (0, 255), "max_o2_current": (0, 255),
           "max_intake_pressure": (0, 2550)},
    0x50: {"max_maf": (0.0, 2550.0)},
    0x51: {"fuel_type": (0, 255)},
    0x53: {"evap_vapor_pressure_abs": (0.0, 327.675)},
    0x54: {"evap_vapor_pressure_alt": (-32767.0, 32768.0)},
    **{pid: {f"{term}_o2_trim_b{bank}": (-100.0, 99.21875), f"{term}_o2_trim_b{bank + 2}": (-100.0, 99.21875)}
       for pid, term, bank in ((0x55, "short", 1), (0x56, "long", 1), (0x57, "short", 2), (0x58, "long", 2))},
    0x59: {"fuel_rail_pressure_abs": (0.0, 655350.0)},
    0x5D: {"fuel_injection_timing": (-210.0, 65535 / 128 - 210)},  # 301.992 degrees
    0x5E: {"fuel_rate": (0.0, 3276.75)},
    0x5F: {"emission_requirements": (0, 255)},
    0x61: {"driver_demand_torque": (-125.0, 130.0)},
    0x62: {"actual_torque": (-125.0, 130.0)},
    0x63: {"reference_torque": (0.0, 65535.0)},
    0x64: {f"percent_torque_{p}": (-125.0, 130.0) for p in ("idle", "point1", "point2", "point3", "point4")},
    0x8E: {"engine_friction_torque": (-125.0, 130.0)},
    0xA2: {"cylinder_fuel_rate": (0.0, 2047.96875)},
    0xA6: {"odometer": (0.0, 429_496_729_500.0)},  # (2^32 - 1) * 0.1 km in metres
}


def _values(pid: int, data: bytes) -> dict[str, float]:
    return {v.name: v.value for v in decode_pid(pid, data)}


@pytest.mark.parametrize(("pid", "data", "expected"), HAND_COMPUTED, ids=lambda v: str(v))
def test_pid_formula_matches_hand_computed_value(pid: int, data: str, expected: dict[str, float]) -> None:
    values = _values(pid, bytes.fromhex(data))
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, abs=1e-9), name


@pytest.mark.parametrize("pid", sorted(PIDS))
def test_every_pid_at_the_edge_bytes_00_and_ff(pid: int) -> None:
    spec = PIDS[pid]
    low, high = _values(pid, bytes(spec.length)), _values(pid, b"\xff" * spec.length)
    for name, (at_00, at_ff) in EDGES[pid].items():
        assert low[name] == pytest.approx(at_00, abs=1e-9), name
        assert high[name] == pytest.approx(at_ff, abs=1e-9), name


def test_every_pid_has_edge_values_and_the_table_count_is_the_whole_j1979_table() -> None:
    assert set(EDGES) == set(PIDS)
    assert len(PIDS) == 100  # 0x01, 0x03-0x1F, 0x21-0x3F, 0x41-0x5F, 0x61-0x64, 0x8D, 0x8E, 0xA2, 0xA6
    assert {0x01, 0x03, 0x1F, 0x21, 0x3F, 0x41, 0x5F, 0x64} <= set(PIDS) and 0x02 not in PIDS


def test_every_field_maps_to_a_catalog_signal_of_its_unit_and_type() -> None:
    catalog = default_catalog()
    for pid, f in all_fields():
        signal = catalog.by_path(f.vss)
        assert signal.unit == f.unit, f.name
        assert signal.type == f.kind, f.name
        assert signal.overlay == f.vss.startswith("Vehicle.OBD."), f.vss
        # Distinct VSS paths within one PID: one sample per value.
        assert sum(1 for g in pid.fields if g.vss == f.vss) == 1, f.name


def test_enumerations_name_their_value() -> None:
    (fuel_type,) = decode_pid(0x51, b"\x08")
    assert fuel_type.text == "electric"
    first, second = decode_pid(0x03, b"\x02\x03")
    assert first.text == "closed loop" and second.text == "unknown"


@pytest.mark.parametrize("pid", sorted(PIDS))
def test_encode_is_the_inverse_of_decode(pid: int) -> None:
    spec = PIDS[pid]
    for raw in (bytes(range(0x11, 0x11 + spec.length)), bytes(spec.length), b"\xff" * spec.length):
        values = _values(pid, raw)
        again = spec.encode(values)
        assert _values(pid, again) == pytest.approx(values, abs=1e-9)
        if not any(f.mask for f in spec.fields) and pid != 0x50:  # 0x50: bytes B-D are reserved
            assert again == raw


def test_encode_refuses_a_field_the_pid_does_not_have() -> None:
    with pytest.raises(ObdDecodeError, match="no field"):
        PIDS[0x0C].encode({"vehicle_speed": 3.0})


def test_multi_pid_response_is_split_by_table_lengths() -> None:
    values = decode_response(bytes.fromhex("410C1AF80D3205 7B".replace(" ", "")))
    assert [(v.pid, v.value) for v in values] == [(0x0C, 1726.0), (0x0D, 50.0), (0x05, 83.0)]
    values = decode_response(bytes.fromhex("41 14 5A80 24 80004000 0D 32".replace(" ", "")))
    assert [(v.pid, v.name) for v in values] == [(0x14, "o2_b1s1_voltage"), (0x14, "o2_b1s1_fuel_trim"),
                                                 (0x24, "o2_s1_lambda"), (0x24, "o2_s1_voltage"),
                                                 (0x0D, "vehicle_speed")]


def test_supported_pid_bitmask() -> None:
    # 0xBE1FA813: the classic example from J1979 / Wikipedia
    assert decode_supported(0x00, bytes.fromhex("BE1FA813")) == {
        0x01,
        0x03,
        0x04,
        0x05,
        0x06,
        0x07,
        0x0C,
        0x0D,
        0x0E,
        0x0F,
        0x10,
        0x11,
        0x13,
        0x15,
        0x1C,
        0x1F,
        0x20,
    }
    assert decode_supported(0x20, encode_supported(0x20, {0x21, 0x2F, 0x40})) == {0x21, 0x2F, 0x40}


def test_dtcs_and_vin() -> None:
    assert decode_dtc(b"\x01\x43") == "P0143"
    assert decode_dtc(b"\xc1\x00") == "U0100"
    assert decode_dtc(b"\x41\x23") == "C0123"
    assert decode_dtc(b"\x92\x34") == "B1234"
    assert encode_dtc("U0100") == b"\xc1\x00"
    assert decode_dtcs(bytes.fromhex("4302014303000000")) == ["P0143", "P0300"]
    assert decode_dtcs(b"\x47\x00") == []
    assert decode_vin(b"\x49\x02\x01" + b"1HGCM82633A004352") == "1HGCM82633A004352"


@pytest.mark.parametrize(
    "payload",
    ["", "41", "410C1A", "42 0C 1A F8", "4302 0143", "4902", "490201FF00", "41FF00", "7F01"],
)
def test_malformed_responses_raise_typed_errors(payload: str) -> None:
    data = bytes.fromhex(payload.replace(" ", ""))
    with pytest.raises(ObdDecodeError):
        if data[:1] in (b"\x43", b"\x47"):
            decode_dtcs(data)
        elif data[:1] == b"\x49":
            decode_vin(data)
        else:
            decode_response(data)


@pytest.mark.parametrize("words", [["zz"], ["41", "0"], ["0x"], [""], ["41 0C", "G1"]])
def test_parse_hex_refuses_non_hex(words: list[str]) -> None:
    with pytest.raises(ObdDecodeError):
        parse_hex(words)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_typed_error(data: bytes) -> None:
    for decoder in (decode_response, decode_dtcs, decode_vin, parse_mode01):
        with contextlib.suppress(ObdDecodeError):
            decoder(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(PIDS)), st.binary(max_size=12))
def test_any_pid_with_any_data_decodes_or_raises_the_typed_error(pid: int, data: bytes) -> None:
    try:
        values = decode_pid(pid, data)
    except ObdDecodeError:
        assert len(data) < PIDS[pid].length
        return
    assert len(values) == len(PIDS[pid].fields)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=90))
def test_random_mode_09_bytes_decode_or_raise_typed_error(data: bytes) -> None:
    for payload in (data, b"\x49" + data, b"\x49\x08" + data, b"\x49\x04" + data):
        with contextlib.suppress(ObdDecodeError):
            decode_vehicle_info(payload)


def test_mode_09_calibration_ids_cvns_ecu_name_and_in_use_counters() -> None:
    calids = b"\x49\x04\x02" + b"JMB*36761500".ljust(16, b"\x00") + b"JMB*47872611".ljust(16, b"\x00")
    assert decode_vehicle_info(calids).texts == ("JMB*36761500", "JMB*47872611")
    assert decode_vehicle_info(bytes.fromhex("490602 17915D8E 1234ABCD")).texts == ("17915D8E", "1234ABCD")
    ecm = b"\x49\x0a\x01" + b"ECM-EngineControl".ljust(20, b"\x00")
    assert decode_vehicle_info(ecm).texts == ("ECM-EngineControl",)
    counters = decode_vehicle_info(bytes.fromhex("490810" + "0064" + "03E8" + "0032" * 14))
    assert counters.name == "in_use_spark"
    assert counters.counters["OBDCOND"] == 100 and counters.counters["IGNCNTR"] == 1000
    assert counters.counters["EVAPCOND"] == 50 and len(counters.counters) == 16
    diesel = decode_vehicle_info(bytes.fromhex("490B12" + "0001" * 18))
    assert diesel.counters["FUELCOND"] == 1 and len(diesel.counters) == 18
    for pid, items in ((0x04, ["CAL-1"]), (0x06, ["DEADBEEF"]), (0x0A, ["TCM-Transmission"])):
        assert decode_vehicle_info(encode_vehicle_info(pid, items)).texts == tuple(items)
    assert decode_vehicle_info(encode_vehicle_info(0x08, {"OBDCOND": 7})).counters["OBDCOND"] == 7


@pytest.mark.parametrize("payload", ["490402" + "41" * 16, "4906", "490600", "490B14" + "00" * 40,
                                     "49FF0100", "490A01" + "FF" * 20])
def test_malformed_mode_09_responses_raise_typed_errors(payload: str) -> None:
    with pytest.raises(ObdDecodeError):
        decode_vehicle_info(bytes.fromhex(payload))


def test_docs_sources_lists_every_pid_field_with_its_vss_path() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "sources.md").read_text("utf-8")
    for pid, f in all_fields():
        assert f"| {pid.pid:02X} | {f.name} |" in text and f" {f.vss}" in text, f.name
