"""The supervisor and its frames on CPython: the MicroPython checks, plus properties and fuzzing."""

from __future__ import annotations

import binascii
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.mcu import frame, selftest


@pytest.mark.parametrize("check", selftest.CHECKS, ids=lambda c: c.__name__)
def test_selftest_check_on_cpython(check: Callable[[], None]) -> None:
    check()


@given(st.binary(max_size=300))
def test_crc16_matches_cpython_crc_hqx(data: bytes) -> None:
    assert frame.crc16(data) == binascii.crc_hqx(data, 0xFFFF)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=frame.MAX_PAYLOAD)), max_size=8),
       st.lists(st.integers(1, 40), max_size=20))
def test_any_chunking_of_a_stream_gives_the_same_frames(frames: list[tuple[int, bytes]],
                                                        cuts: list[int]) -> None:
    sender = frame.Sender()
    stream = b"".join(sender.frame(kind, payload) for kind, payload in frames)
    decoder = frame.Decoder()
    got, pos = [], 0
    for cut in cuts:
        got += decoder.feed(stream[pos:pos + cut])
        pos += cut
    got += decoder.feed(stream[pos:])
    assert [(k, p) for k, _, p in got] == frames
    assert decoder.garbage_bytes == decoder.bad_crc == decoder.replayed == 0


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_garbage_never_raises_and_is_never_a_frame_by_accident_unless_its_crc_holds(data: bytes) -> None:
    decoder = frame.Decoder()
    for kind, seq, payload in decoder.feed(data):
        # anything accepted really is a well-formed frame somewhere in the data
        assert frame.encode(kind, seq, payload) in data
    decoder.expire(10**9)
    counted = decoder.garbage_bytes + decoder.bad_crc + decoder.oversize + decoder.truncated
    assert counted > 0 or decoder.accepted > 0 or len(data) < frame.OVERHEAD


def test_encode_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        frame.encode(1, 0, bytes(frame.MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        frame.encode(256, 0)
    with pytest.raises(ValueError):
        frame.encode(1, 0x10000)
