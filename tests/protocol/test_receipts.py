"""Stored receipts (kind 18) and the header's receipt flag: round trips, limits, bad input."""

from __future__ import annotations

import cbor2
import pytest

import protocol
from protocol import golden
from protocol.errors import InvalidFieldError, MalformedMessageError, ProtocolError
from protocol.limits import MAX_RECEIPT_BOOTS, MAX_RECEIPT_RANGES
from protocol.messages import HEADER_WANTS_RECEIPTS, BootReceipt, StoredReceipt, TelemetryBatch
from protocol.receipts import receipts_for, seq_ranges, uplink_key
from protocol.topics import parse_topic, receipt_topic


def test_a_receipt_round_trips_and_names_its_keys():
    receipt = golden.stored_receipt()
    decoded = protocol.decode(protocol.encode(receipt))
    assert decoded == receipt and isinstance(decoded, StoredReceipt)
    assert sorted(decoded.stored_keys()) == [(7, 40), (7, 41), (7, 42), (7, 45), (8, 3)]


def test_the_receipt_flag_travels_in_the_header_and_is_absent_when_zero():
    with_flag = protocol.decode((golden.VECTOR_DIR / "telemetry_receipts.cbor").read_bytes())
    assert isinstance(with_flag, TelemetryBatch) and with_flag.header.flags == HEADER_WANTS_RECEIPTS
    plain = (golden.VECTOR_DIR / "telemetry.cbor").read_bytes()
    assert len(cbor2.loads(plain)[2]) == 5  # a 1.0 message is byte for byte what it was
    decoded = protocol.decode(plain)
    assert isinstance(decoded, TelemetryBatch) and decoded.header.flags == 0


def test_uplink_key_reads_boot_and_seq_without_decoding_the_body():
    assert uplink_key((golden.VECTOR_DIR / "telemetry_deflate.cbor").read_bytes()) == (7, 42)
    for junk in (b"", b"\xff", cbor2.dumps([1, 2]), cbor2.dumps([1, 1, "x", {}]),
                 cbor2.dumps([1, 1, ["veh", "7", 1], {}])):
        assert uplink_key(junk) is None


def test_seq_ranges_and_splitting_keep_within_the_limits():
    assert seq_ranges([5, 3, 4, 9, 9, 11, 10]) == [(3, 5), (9, 11)]
    many = {boot: range(0, 2 * 3000, 2) for boot in range(MAX_RECEIPT_BOOTS + 3)}
    receipts = receipts_for("veh-1", many, golden.T0)
    assert len(receipts) > 1
    confirmed: set[tuple[int, int]] = set()
    for receipt in receipts:
        assert sum(len(b.ranges) for b in receipt.boots) <= MAX_RECEIPT_RANGES
        assert len(receipt.boots) <= MAX_RECEIPT_BOOTS
        decoded = protocol.decode(protocol.encode(receipt))
        assert isinstance(decoded, StoredReceipt)
        confirmed.update(decoded.stored_keys())
    assert confirmed == {(boot, seq) for boot, seqs in many.items() for seq in seqs}


def test_the_receipt_topic_is_a_downlink_topic():
    topic = parse_topic(receipt_topic("veh-0001"))
    assert (topic.direction, topic.kind) == ("down", protocol.MessageKind.STORED_RECEIPT)


BAD_BODIES = [
    {2: golden.T0, 3: [[7, [[1, 2]]]]},  # no device
    {1: "veh-1", 3: [[7, [[1, 2]]]]},  # no time
    {1: "veh-1", 2: golden.T0, 3: []},  # no boots
    {1: "veh-1", 2: golden.T0, 3: [[7, []]]},  # no ranges
    {1: "veh-1", 2: golden.T0, 3: [[7, [[3, 2]]]]},  # last before first
    {1: "veh-1", 2: golden.T0, 3: [[7, [[1, 5], [4, 9]]]]},  # overlapping
    {1: "veh-1", 2: golden.T0, 3: [[7, [[1, 5], [6, 9]]]]},  # adjacent (not canonical)
    {1: "veh-1", 2: golden.T0, 3: [[7, [[0, 70000]]]]},  # too wide
    {1: "veh-1", 2: golden.T0, 3: [[7, [[1, 2]]], [7, [[5, 6]]]]},  # boot twice
    {1: "veh-1", 2: golden.T0, 3: [[2**32, [[1, 2]]]]},  # boot id out of range
    {1: "veh-1", 2: golden.T0, 3: [[7, [[-1, 2]]]]},
    {1: "veh-1", 2: golden.T0, 3: [[7, [[1, 2, 3]]]]},
    {1: "veh-1", 2: golden.T0, 3: [[7, [[1, "2"]]]]},
    {1: "veh-1", 2: golden.T0, 3: [[b, [[1, 1]]] for b in range(MAX_RECEIPT_BOOTS + 1)]},
    {1: "veh-1", 2: golden.T0, 3: [[7, [[2 * i, 2 * i] for i in range(MAX_RECEIPT_RANGES + 1)]]]},
    {1: "veh/1", 2: golden.T0, 3: [[7, [[1, 2]]]]},
    "not a map",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_receipts_are_refused_with_a_protocol_error(body):
    with pytest.raises(ProtocolError):
        protocol.decode(cbor2.dumps([1, 18, body]))


def test_a_receipt_with_extra_envelope_items_is_malformed():
    with pytest.raises(MalformedMessageError):
        protocol.decode(cbor2.dumps([1, 18, {1: "veh-1", 2: 0, 3: [[7, [[1, 1]]]]}, None]))


def test_encode_refuses_what_decode_would_refuse():
    with pytest.raises(InvalidFieldError):
        protocol.encode(StoredReceipt("veh-1", golden.T0, (BootReceipt(7, ((5, 9), (7, 12))),)))
    with pytest.raises(InvalidFieldError):
        protocol.encode(StoredReceipt("veh-1", golden.T0, ()))
