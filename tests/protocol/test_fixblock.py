"""The compiled fix-block decoder (protocol/_fixblock.pyx) agrees with its numpy oracle, always."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol import golden, telemetry_codec
from tests.protocol import strategies as s

VECTOR = (golden.VECTOR_DIR / "telemetry.cbor").read_bytes()


@contextmanager
def numpy_oracle() -> Iterator[None]:
    telemetry_codec.ACCELERATED = False
    try:
        yield
    finally:
        telemetry_codec.ACCELERATED = True


def outcome(data: bytes) -> object:
    try:
        return protocol.decode(data)
    except protocol.ProtocolError as error:
        assert not isinstance(error, protocol.errors.InternalDecodeError), error
        return type(error)


def both(data: bytes) -> tuple[object, object]:
    compiled = outcome(data)
    with numpy_oracle():
        oracle = outcome(data)
    return compiled, oracle


def test_the_kernel_is_compiled_and_used():
    assert telemetry_codec.COMPILED, "protocol/_fixblock.pyx was not built (pip install -e .)"
    assert telemetry_codec.ACCELERATED


@settings(max_examples=150, deadline=None)
@given(s.batches(max_fixes=80, max_samples=0))
def test_kernel_equals_numpy_on_valid_batches(batch):
    compiled, oracle = both(protocol.encode(batch))
    assert compiled == oracle == batch


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_kernel_equals_numpy_on_damaged_fix_blocks(data):
    envelope = cbor2.loads(VECTOR)
    body = envelope[3]
    choice = data.draw(st.sampled_from(["bytes", "count", "mask", "base", "t0"]))
    if choice == "bytes":
        block = bytearray(body[6])
        for _ in range(data.draw(st.integers(1, 6))):
            at = data.draw(st.integers(0, len(block)))
            block[at:at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=9))
        body[6] = bytes(block)
    elif choice == "count":
        body[3] = data.draw(st.integers(0, 3600))
    elif choice == "mask":
        body[5] = data.draw(st.integers(0, 511))
    elif choice == "base":
        body[4][data.draw(st.integers(0, 13))] = data.draw(st.integers(-(2**36), 2**36))
    else:
        body[2] = data.draw(st.integers(0, 9_000_000_000_000))
    compiled, oracle = both(cbor2.dumps(envelope))
    assert compiled == oracle
