"""Property tests: round trips, and for any bytes at all decode returns a message or a ProtocolError."""

from __future__ import annotations

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import errors, golden
from protocol.messages import Command, SignedCommand, TelemetryBatch
from tests.protocol import strategies as s

VECTORS = [(golden.VECTOR_DIR / f"{name}.cbor").read_bytes() for name in sorted(golden.EXAMPLES)]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_refuse(data: bytes) -> protocol.Message | None:
    """decode(data): a message or a ProtocolError, never another exception; a decoded message is stable."""
    try:
        message = protocol.decode(data)
    except errors.InternalDecodeError:
        raise
    except protocol.ProtocolError:
        return None
    if not (isinstance(message, TelemetryBatch) and message.raw_signal_ids):
        assert protocol.decode(protocol.encode(message)) == message
    return message


@FAST
@given(s.messages)
def test_every_valid_message_round_trips(message):
    data = protocol.encode(message)
    decoded = protocol.decode(data)
    assert protocol.encode(decoded) == data
    if isinstance(message, Command):
        assert isinstance(decoded, SignedCommand) and decoded.signature is None
        assert decoded.command == message
    else:
        assert decoded == message


@FAST
@given(s.batches(), st.booleans())
def test_batches_round_trip_with_and_without_deflate(batch, deflate):
    assert protocol.decode(protocol.encode(batch, deflate=deflate)) == batch


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data):
    decode_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VECTORS), st.data())
def test_mutated_vectors_decode_or_raise_protocol_error(vector, data):
    payload = bytearray(vector)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(payload)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and where < len(payload):
            payload[where] = data.draw(st.integers(0, 255))
        elif action == "insert":
            payload[where:where] = data.draw(st.binary(min_size=1, max_size=9))
        elif action == "delete":
            del payload[where:where + data.draw(st.integers(1, 9))]
        else:
            del payload[where:]
    decode_or_refuse(bytes(payload))


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats() | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.integers(-3, 14) | st.text(max_size=3),
                                                                 inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([0, 1, 2, 3]), st.sampled_from([1, 2, 3, 4, 16, 17, 5, -1]), cbor_values, cbor_values,
       st.sampled_from(VECTORS))
def test_structured_garbage_in_a_valid_envelope(version, kind, header, body, vector):
    valid = cbor2.loads(vector)
    for envelope in ([version, kind, header, body], [1, valid[1], valid[2], body],
                     [1, valid[1], header, *valid[3:]]):
        decode_or_refuse(cbor2.dumps(envelope))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VECTORS), cbor_values, st.integers(-2, 14))
def test_any_value_in_any_body_field_decodes_or_raises(vector, value, key):
    envelope = cbor2.loads(vector)
    body = envelope[3] if len(envelope) == 4 and isinstance(envelope[3], dict) else None
    if body is None and envelope[1] == 16:
        inner = cbor2.loads(envelope[2])
        inner[key] = value
        envelope[2] = cbor2.dumps(inner)
    elif body is None:
        envelope[2][key] = value
    else:
        body[key] = value
    decode_or_refuse(cbor2.dumps(envelope))
