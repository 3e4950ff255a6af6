"""J1979 decoders against hand-computed values, and garbage in → typed error out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.obd.pids import (
    PIDS,
    ObdDecodeError,
    decode_dtc,
    decode_dtcs,
    decode_pid,
    decode_response,
    decode_supported,
    decode_vin,
    encode_dtc,
    encode_supported,
    parse_hex,
    parse_mode01,
)
from protocol.catalog import default_catalog

# (pid, data bytes, expected value, unit) — values computed by hand from the J1979 formulas.
HAND_COMPUTED = [
    (0x04, "80", 128 * 100 / 255, "percent"),  # load = 100A/255 = 50.196 %
    (0x05, "7B", 83.0, "celsius"),  # 123 - 40
    (0x05, "00", -40.0, "celsius"),
    (0x0C, "1AF8", 1726.0, "rpm"),  # (256*26 + 248)/4 = 6904/4
    (0x0C, "FFFF", 16383.75, "rpm"),
    (0x0D, "32", 50.0, "km/h"),
    (0x0F, "41", 25.0, "celsius"),  # 65 - 40
    (0x10, "04E2", 12.5, "g/s"),  # 1250/100
    (0x1F, "0258", 600.0, "s"),
    (0x21, "000C", 12.0, "km"),
    (0x2F, "FF", 100.0, "percent"),
    (0x2F, "A0", 160 * 100 / 255, "percent"),  # 62.745 %
    (0x31, "05F3", 1523.0, "km"),
    (0x42, "3778", 14.2, "V"),  # 0x3778 = 14200 mV
    (0x46, "3A", 18.0, "celsius"),  # 58 - 40
    (0x5C, "87", 95.0, "celsius"),  # 135 - 40
    (0xA6, "0012D687", 123_456_700.0, "m"),  # 1234567 * 0.1 km = 123456.7 km = 123456700 m
    (0x01, "83076500", 3.0, "count"),  # MIL on, 3 DTCs
]


@pytest.mark.parametrize(("pid", "data", "expected", "unit"), HAND_COMPUTED, ids=lambda v: str(v))
def test_pid_formula_matches_hand_computed_value(pid: int, data: str, expected: float, unit: str) -> None:
    value = decode_pid(pid, bytes.fromhex(data))
    assert value.value == pytest.approx(expected, abs=1e-9)
    assert value.unit == unit


def test_every_pid_required_by_the_issue_has_a_decoder_mapped_to_the_catalog() -> None:
    required = {0x04, 0x05, 0x0C, 0x0D, 0x0F, 0x10, 0x1F, 0x21, 0x2F, 0x31, 0x42, 0x46, 0x5C, 0xA6}
    assert required <= set(PIDS)
    catalog = default_catalog()
    for spec in PIDS.values():
        signal = catalog.by_path(spec.vss)
        assert signal.unit == spec.unit, spec.name


@pytest.mark.parametrize("pid", sorted(PIDS))
def test_encode_is_the_inverse_of_decode_within_one_quantum(pid: int) -> None:
    spec = PIDS[pid]
    raw = bytes(range(0x11, 0x11 + spec.length))
    value = spec.decode(raw)
    assert spec.decode(spec.encode(value)) == pytest.approx(value, abs=1e-9)
    if pid != 0x01:  # 0x01 carries readiness bits the emulator does not model
        assert spec.encode(value) == raw


def test_multi_pid_response_is_split_by_table_lengths() -> None:
    values = decode_response(bytes.fromhex("410C1AF80D3205 7B".replace(" ", "")))
    assert [(v.pid, v.value) for v in values] == [(0x0C, 1726.0), (0x0D, 50.0), (0x05, 83.0)]


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
