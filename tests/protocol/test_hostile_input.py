"""Decoding hostile payloads: RFC 8949 Appendix A, huge lengths, deep nesting, bombs — typed refusals only."""

from __future__ import annotations

import time
import zlib

import cbor2
import pytest

import protocol
from protocol import errors, golden
from protocol.catalog import default_catalog
from protocol.limits import MAX_MESSAGE_BYTES

# Every example of RFC 8949 Appendix A (well-formed CBOR, none of it a lienwatch message).
RFC8949_APPENDIX_A = [
    "00", "01", "0a", "17", "1818", "1819", "1864", "1903e8", "1a000f4240", "1b000000e8d4a51000",
    "1bffffffffffffffff", "c249010000000000000000", "3bffffffffffffffff", "c349010000000000000000", "20",
    "29", "3863", "3903e7", "f90000", "f98000", "f93c00", "fb3ff199999999999a", "f93e00", "f97bff",
    "fa47c35000", "fa7f7fffff", "fb7e37e43c8800759c", "f90001", "f90400", "f9c400", "fbc010666666666666",
    "f97c00", "f97e00", "f9fc00", "fa7f800000", "fa7fc00000", "faff800000", "fb7ff0000000000000",
    "fb7ff8000000000000", "fbfff0000000000000", "f4", "f5", "f6", "f7", "f0", "f8ff",
    "c074323031332d30332d32315432303a30343a30305a", "c11a514b67b0", "c1fb41d452d9ec200000", "d74401020304",
    "d818456449455446", "d82076687474703a2f2f7777772e6578616d706c652e636f6d", "40", "4401020304", "60",
    "6161", "6449455446", "62225c", "62c3bc", "63e6b0b4", "64f0908591", "80", "83010203",
    "8301820203820405", "98190102030405060708090a0b0c0d0e0f101112131415161718181819", "a0", "a201020304",
    "a26161016162820203", "826161a161626163", "a56161614161626142616361436164614461656145",
    "5f42010243030405ff", "7f657374726561646d696e67ff", "9fff", "9f018202039f0405ffff",
    "9f01820203820405ff", "83018202039f0405ff", "83019f0203ff820405",
    "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", "bf61610161629f0203ffff",
    "826161bf61626163ff", "bf6346756ef563416d7421ff",
]
VECTORS = {name: (golden.VECTOR_DIR / f"{name}.cbor").read_bytes() for name in golden.EXAMPLES}


@pytest.mark.parametrize("item", RFC8949_APPENDIX_A)
def test_rfc8949_examples_are_refused_as_messages(item):
    with pytest.raises(errors.ProtocolError) as refusal:
        protocol.decode(bytes.fromhex(item))
    assert not isinstance(refusal.value, errors.InternalDecodeError)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_rfc8949_examples_in_every_field_are_refused_or_valid(name):
    envelope = cbor2.loads(VECTORS[name])
    for item in RFC8949_APPENDIX_A:
        for position in range(len(envelope)):
            try:
                protocol.decode(_splice(envelope, position, bytes.fromhex(item)))
            except errors.InternalDecodeError:
                raise
            except errors.ProtocolError:
                pass


def _splice(envelope: list[object], position: int, item: bytes) -> bytes:
    """The envelope array with element `position` replaced by raw CBOR `item` (tags and all)."""
    parts = [cbor2.dumps(value) for value in envelope]
    parts[position] = item
    return bytes([0x80 | len(parts)]) + b"".join(parts)


def _refused(payload: bytes, error: type[errors.ProtocolError] = errors.ProtocolError) -> None:
    start = time.monotonic()
    with pytest.raises(error) as refusal:
        protocol.decode(payload)
    assert not isinstance(refusal.value, errors.InternalDecodeError)
    assert time.monotonic() - start < 1.0


def test_huge_declared_lengths_are_refused_without_allocating():
    for head in (b"\x9b", b"\x5b", b"\x7b", b"\xbb"):  # array, bytes, text, map of 2**63 items
        _refused(head + b"\x7f\xff\xff\xff\xff\xff\xff\xff")
    header = b"\x85\x68veh-0001\x07\x18\x2a\x00\x00"
    _refused(b"\x84\x01\x01" + header + b"\xa1\x03\x1a\xff\xff\xff\xff", errors.ProtocolError)


def test_deep_nesting_is_refused():
    _refused(b"\x81" * 100_000 + b"\x00", errors.MalformedMessageError)
    _refused(b"\xa1\x01" * 50_000 + b"\x00", errors.MalformedMessageError)


def test_oversized_payload_is_refused_before_parsing():
    _refused(b"\x00" * (MAX_MESSAGE_BYTES + 1), errors.PayloadTooLargeError)


def test_bignums_and_other_tags_are_refused():
    bignum = b"\xc2\x59\xff\xff" + b"\xff" * 65535
    for payload in (bignum, b"\xd8\x1c\x81\xd8\x1d\x00", b"\xc1\x1b" + b"\xff" * 8, b"\xd9\xd9\xf7\x80",
                    b"\xd8\x23\x63a+b"):
        _refused(payload, errors.MalformedMessageError)


def _telemetry_with(body_changes: dict[int, object]) -> bytes:
    envelope = cbor2.loads(VECTORS["telemetry"])
    envelope[3].update(body_changes)
    return cbor2.dumps(envelope)


def test_deflate_bomb_is_refused():
    bomb = zlib.compress(b"\x00" * 50_000_000, 9, -15)
    assert len(bomb) < MAX_MESSAGE_BYTES
    _refused(_telemetry_with({9: 1, 6: bomb, 8: bomb}), errors.PayloadTooLargeError)


def test_claimed_counts_must_match_the_packed_columns():
    _refused(_telemetry_with({3: 3600}), errors.MalformedMessageError)
    _refused(_telemetry_with({7: 16384}), errors.MalformedMessageError)
    _refused(_telemetry_with({3: 3601}), errors.InvalidFieldError)


def test_int64_spills_that_would_overflow_are_refused():
    n = 60
    stream = bytes([0x80]) * (n - 1) + b"\x00\x80" * (n - 1) + b"\x00\x00\x00\x80" * (n - 1) \
        + (2**62).to_bytes(8, "little") * (n - 1)
    _refused(_telemetry_with({3: n, 5: 1 << 1, 6: stream}), errors.InvalidFieldError)


def test_unknown_flags_and_bad_base_are_refused():
    _refused(_telemetry_with({9: 2}), errors.InvalidFieldError)
    _refused(_telemetry_with({4: [0] * 13}), errors.MalformedMessageError)
    _refused(_telemetry_with({4: [2**40] * 14}), errors.InvalidFieldError)
    _refused(_telemetry_with({4: [0.5] * 14}), errors.InvalidFieldError)


def test_samples_from_a_newer_catalog_are_kept_raw():
    envelope = cbor2.loads(VECTORS["telemetry"])
    batch = protocol.decode(VECTORS["telemetry"])
    assert isinstance(batch, protocol.TelemetryBatch)
    # Re-encode the sample block with signal 1 renamed to an id this catalog does not have.
    from protocol import spill
    ns = len(batch.samples)
    stream = spill.unpack(envelope[3][8], 3 * ns)[0]
    stream[ns:2 * ns][stream[ns:2 * ns] == 1] = 999
    envelope[3][8] = spill.pack(stream)
    ours = default_catalog().version
    envelope[3][1] = ours + 1
    newer = protocol.decode(cbor2.dumps(envelope))
    assert isinstance(newer, protocol.TelemetryBatch)
    assert newer.raw_signal_ids == {999} and newer.catalog_version == ours + 1
    raw_values = [v for s, v in zip(newer.samples.signal_id, newer.samples.value, strict=True) if s == 999]
    assert raw_values == [0.0, 2050.0, 3625.0]
    envelope[3][1] = ours  # same catalog version as ours: an unknown id is an error, not a newer signal
    _refused(cbor2.dumps(envelope), errors.UnknownSignalError)


def test_non_bytes_input_is_a_protocol_error():
    for value in (None, "text", 42, [1, 2]):
        with pytest.raises(errors.MalformedMessageError):
            protocol.decode(value)  # type: ignore[arg-type]


def test_text_with_nul_is_refused_on_encode_and_decode() -> None:
    """U+0000 cannot be stored (PostgreSQL text) or logged safely: refused at the boundary."""
    import dataclasses

    from protocol import decode, encode
    from protocol.errors import InvalidFieldError
    from tests.protocol.messages_fixture import event as sample_event

    event = sample_event()
    with pytest.raises(InvalidFieldError, match="U\\+0000"):
        encode(dataclasses.replace(event, detail="tow\x00truck"))
    payload = encode(dataclasses.replace(event, detail="tow_truck"))
    tampered = payload.replace(b"tow_truck", b"tow\x00truck")
    assert tampered != payload
    with pytest.raises(InvalidFieldError, match="U\\+0000"):
        decode(tampered)
