"""The compiled CAN frame path (cython_ext.canframe) against cantools, python-can and its Python twin."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path
from typing import Any

import can
import cantools
import msgpack  # type: ignore[import-untyped]
import pytest
from can.interfaces.udp_multicast.utils import pack_message, unpack_message
from hypothesis import given, settings
from hypothesis import strategies as st

from cython_ext.canframe import FrameBatch
from edge.sources.base import Sample
from edge.sources.can_bus import BusMonitor
from edge.sources.dbc import DbcDecoder, DbcSource, Manifest, SignalMap, compile_messages, load_manifest
from edge.sources.dbc_layout import FrameLayout, compile_dbc, signal_bits
from edge.sources.dbc_reference import ReferenceDecoder
from lienwatch.clock import ManualClock
from tests.edge_sources.test_dbc_changes import _GATEWAY, HIL_MANIFEST

from .conftest import REPO

FACTORS = ["1", "0.1", "0.5", "2", "0.001", "3", "1.5", "-1", "1000000", "1e-9"]
OFFSETS = ["0", "-40", "1.5", "100", "-273.15", "0.0"]


def _manifest_of_all(layouts: dict[str, FrameLayout], values: dict[str, dict[int, float]] | None = None,
                     scale: float = 1.0) -> Manifest:
    """A manifest mapping every signal of every message (signal ids 1, 2, ...; `values` by name)."""
    by_frame: dict[int, tuple[SignalMap, ...]] = {}
    signal_id = 0
    for layout in layouts.values():
        maps = []
        for signal in layout.signals:
            signal_id += 1
            maps.append(SignalMap(signal.name, signal_id, (values or {}).get(signal.name), scale))
        by_frame[layout.frame_id] = tuple(maps)
    by_id = {layout.frame_id: layout for layout in layouts.values()}
    masks = {}
    for frame_id, layout in by_id.items():
        mask = (1 << 512) - 1 if layout.multiplexed else 0
        if not layout.multiplexed:
            for signal in layout.signals:
                mask |= signal.bits()
        masks[frame_id] = mask
    return Manifest(by_id, by_frame, masks)


def _oracle(message: Any, manifest: Manifest, frame_id: int,
            payload: bytes) -> list[tuple[int, float]] | None:
    """What the manifest's rules make of cantools' decode (None: the frame does not decode)."""
    try:
        raw = message.decode(payload, decode_choices=False, allow_excess=False)
    except cantools.database.DecodeError:
        return None
    floats = {s.name for s in message.signals if s.is_float}
    out = []
    for m in manifest.by_frame[frame_id]:
        if m.signal not in raw:
            continue
        value = raw[m.signal]
        if m.values is not None:
            if int(value) not in m.values:
                continue
            value = m.values[int(value)]
        value = float(value) * m.scale
        if m.signal in floats and not math.isfinite(value):
            continue
        out.append((m.signal_id, value))
    return out


def _bits_equal(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """Equal signal for signal, to the bit (struct: -0.0 is not 0.0)."""
    return [(i, struct.pack("<d", v)) for i, v in a] == [(i, struct.pack("<d", v)) for i, v in b]


@st.composite
def dbc_messages(draw: st.DrawFn) -> tuple[str, int]:
    """A DBC with one message (1..64 bytes) of random Intel/Motorola, signed, float, 1..64-bit signals."""
    length = draw(st.sampled_from([1, 2, 3, 5, 8, 8, 8, 12, 16, 32, 64]))
    bits = 8 * length
    used = 0
    lines: list[str] = []
    valtypes: list[str] = []
    multiplexed = draw(st.integers(0, 9)) == 0 and length >= 2
    if multiplexed:
        lines.append(' SG_ Mux M : 0|2@1+ (1,0) [0|3] "" GW')
        used |= 0b11
    for i in range(draw(st.integers(1, 8))):
        is_float = draw(st.integers(0, 4)) == 0 and bits >= 32
        size = draw(st.sampled_from([32, 64] if bits >= 64 else [32])) if is_float else draw(
            st.one_of(st.integers(1, 16), st.integers(17, 64)))
        little = draw(st.booleans())
        start = draw(st.integers(0, bits - 1))
        if size > bits:
            continue
        mask = signal_bits(start, size, "little_endian" if little else "big_endian")
        if mask >> bits or mask & used:
            continue
        used |= mask
        signed = "-" if draw(st.booleans()) and not is_float else "+"
        mux = f" m{draw(st.integers(0, 3))}" if multiplexed and draw(st.booleans()) else ""
        factor, offset = draw(st.sampled_from(FACTORS)), draw(st.sampled_from(OFFSETS))
        lines.append(f' SG_ S{i}{mux} : {start}|{size}@{1 if little else 0}{signed} ({factor},{offset}) '
                     f'[0|0] "" GW')
        if is_float:
            valtypes.append(f"SIG_VALTYPE_ 512 S{i} : {1 if size == 32 else 2};")
    text = "\n".join(['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: ECU GW", "",
                      f"BO_ 512 Frame: {length} ECU", *lines, "", *valtypes, ""])
    return text, length


@settings(max_examples=300, deadline=None)
@given(dbc_messages(), st.data())
def test_compiled_decoding_equals_cantools(tmp_path_factory: pytest.TempPathFactory,
                                           message: tuple[str, int], data: st.DataObject) -> None:
    text, length = message
    path = tmp_path_factory.mktemp("dbc") / "random.dbc"
    path.write_text(text)
    oracle = cantools.database.load_file(str(path)).get_message_by_name("Frame")  # type: ignore[union-attr]
    layouts = compile_dbc(path)
    # small enum maps on some integer signals: raw values that hit them and ones that miss
    values = {s.name: {k: float(k * 10 + 1) for k in range(-2, 3)}
              for s in layouts["Frame"].signals if not s.is_float and data.draw(st.integers(0, 3)) == 0}
    manifest = _manifest_of_all(layouts, values, scale=data.draw(st.sampled_from([1.0, 0.5, 3.6])))
    layout = layouts["Frame"]
    (_, _, _, _, fallback), = compile_messages(manifest)
    # What the C decoder takes (so that this test exercises C, not only the twin): no multiplexer,
    # no unsigned 64-bit integer, exact integer scaling within int64.
    native = not layout.multiplexed and all(
        s.is_float or ((s.signed or s.length < 64) and (
            type(s.factor) is not int or 2**s.length * abs(s.factor) + abs(s.offset) < 2**63))
        for s in layout.signals)
    assert (fallback is None) == native, text
    decoder = DbcDecoder(manifest, refresh_s=0.0)
    for _ in range(20):
        size = data.draw(st.sampled_from([length, length, length, length, length - 1, length + 1, 0]))
        payload = data.draw(st.binary(min_size=size, max_size=size))
        expected = _oracle(oracle, manifest, 512, payload)
        rejected = decoder.rejected
        got = decoder.decode(can.Message(arbitration_id=512, data=payload, is_extended_id=False))
        if expected is None:
            assert got == [] and decoder.rejected == rejected + 1
            continue
        assert _bits_equal(got, expected), (text, payload.hex(), got, expected)
        assert decoder.rejected == rejected + len(manifest.by_frame[512]) - len(expected)


def test_every_message_of_every_shipped_dbc_decodes_as_cantools() -> None:
    rng = random.Random(21)
    dbcs = sorted(REPO.glob("**/*.dbc"))
    dbcs = [p for p in dbcs if ".venv" not in p.parts and "build" not in p.parts]
    assert dbcs
    for path in dbcs:
        db: Any = cantools.database.load_file(str(path))
        layouts = compile_dbc(path)
        manifest = _manifest_of_all(layouts)
        assert all(spec[4] is None for spec in compile_messages(manifest)), path  # all decoded in C
        decoder = DbcDecoder(manifest, refresh_s=0.0)
        for message in db.messages:
            for _ in range(500):
                payload = rng.randbytes(message.length)
                got = decoder.decode(can.Message(arbitration_id=message.frame_id, data=payload,
                                                 is_extended_id=message.is_extended_frame))
                expected = _oracle(message, manifest, message.frame_id, payload)
                assert expected is not None and _bits_equal(got, expected), (message.name, payload.hex())


def _random_frame(rng: random.Random, manifest: Manifest, pool: dict[int, list[bytes]]) -> can.Message:
    kind = rng.randrange(20)
    frame_id = rng.choice(sorted(pool))
    extended = frame_id > 0x7FF
    if kind == 0:
        return can.Message(arbitration_id=CAN_ERR_BUSOFF if rng.random() < 0.5 else 0x100,
                           is_error_frame=True, data=bytes(8), is_extended_id=False)
    if kind == 1:
        return can.Message(arbitration_id=frame_id, is_remote_frame=True, dlc=8, is_extended_id=extended)
    if kind == 2:
        return can.Message(arbitration_id=rng.randrange(0x800), data=rng.randbytes(8), is_extended_id=False)
    if kind == 3:  # a wrong DLC
        return can.Message(arbitration_id=frame_id, data=rng.randbytes(rng.randrange(9)),
                           is_extended_id=extended)
    return can.Message(arbitration_id=frame_id, data=rng.choice(pool[frame_id]), is_extended_id=extended)


CAN_ERR_BUSOFF = 0x40


@pytest.mark.parametrize("refresh_s", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("seed", range(6))
def test_batches_equal_the_python_twin_frame_for_frame(seed: int, refresh_s: float) -> None:
    """The on-change rule, refresh, counters and bus monitor in C equal edge/sources/dbc_reference.py."""
    rng = random.Random(seed)
    for manifest in (load_manifest(HIL_MANIFEST), _GATEWAY):
        lengths = {fid: layout.length for fid, layout in manifest.layouts.items()}
        pool = {fid: [rng.randbytes(n) for _ in range(rng.randrange(1, 5))] for fid, n in lengths.items()}
        compiled = DbcDecoder(manifest, refresh_s=refresh_s)
        twin = ReferenceDecoder(manifest.layouts, manifest.by_frame, manifest.masks,
                                refresh_ns=round(refresh_s * 1e9))
        clock = ManualClock()
        monitors = BusMonitor(clock), BusMonitor(clock)
        batch = FrameBatch(4)
        for _ in range(60):
            clock.advance(rng.choice([0.0, 0.01, 0.1, 0.7]))
            now = clock.monotonic_ns()
            frames = [_random_frame(rng, manifest, pool) for _ in range(rng.randrange(0, 40))]
            batch.clear()
            for msg in frames:
                batch.append_message(msg)
            compiled.process(batch, now, monitors[0])
            got = compiled.compiled.output()
            expected = []
            for msg in frames:
                if monitors[1].observe(msg, now):
                    expected += twin.changes(msg, now)
            assert _bits_equal(got, expected)
            assert ((compiled.decoded, compiled.rejected, compiled.ignored, compiled.unchanged)
                    == (twin.decoded, twin.rejected, twin.ignored, twin.unchanged))
            a, b = monitors
            assert ((a.frames, a.error_frames, a.bus_off_events, a.bus_off, list(a._recent), a.status())
                    == (b.frames, b.error_frames, b.bus_off_events, b.bus_off, list(b._recent), b.status()))


def test_the_benchmark_flood_gives_the_same_samples_as_before() -> None:
    """bench/agent.py's 2,000 frames/s driving flood: the samples the source emits, bit for bit."""
    from bench.agent import body_can_frames

    manifest = load_manifest(HIL_MANIFEST)
    clock = ManualClock()
    source = DbcSource("dbc", clock, manifest=manifest, interface="udp_multicast", channel="ff11::1")
    twin = ReferenceDecoder(manifest.layouts, manifest.by_frame, manifest.masks, refresh_ns=10**9)
    monitor = BusMonitor(clock)
    frames = body_can_frames(4000)
    datagrams = [pack_message(m) for m in frames]
    got: list[Sample] = []
    expected: list[Sample] = []
    batch = FrameBatch(200)
    for tick in range(20):
        clock.advance(0.1)
        now = clock.monotonic_ns()
        batch.clear()
        assert batch.append_datagrams(datagrams[200 * tick:200 * (tick + 1)], unpack_message) == 0
        source.handle_batch(batch, got.append, now)
        for msg in frames[200 * tick:200 * (tick + 1)]:
            if monitor.observe(msg, now):
                expected += [Sample(now, i, v) for i, v in twin.changes(msg, now)]
    assert len(got) > 1000 and got == expected
    assert source.health.samples == len(got)
    assert (source.decoder.decoded, source.decoder.unchanged) == (twin.decoded, twin.unchanged)


# ------------------------------------------------------------------------------ datagrams

FIELDS = ("timestamp", "arbitration_id", "is_extended_id", "is_remote_frame", "is_error_frame", "is_fd",
          "bitrate_switch", "error_state_indicator", "dlc", "data")


def _fields(msg: can.Message) -> tuple[object, ...]:
    """The frame as the agent reads it (flags by truth: python-can keeps a truthy 7 as it came)."""
    return tuple(bytes(msg.data) if name == "data" else bool(getattr(msg, name)) if name.startswith(
        ("is_", "bitrate", "error")) else getattr(msg, name) for name in FIELDS)


def _python_can(datagram: bytes) -> can.Message | None:
    """python-can's frame; an id or DLC that is no integer (python-can's check lets 1.5 or a NaN
    through) as the batch keeps it: an id no frame has, DLC 0."""
    try:
        msg = unpack_message(datagram, check=True)
    except Exception:
        return None
    if not (msg.arbitration_id == msg.arbitration_id and msg.arbitration_id % 1 == 0):
        msg.arbitration_id = 0xFFFFFFFF
    if not (msg.dlc == msg.dlc and msg.dlc % 1 == 0):
        msg.dlc = 0
    return msg


def _messages(rng: random.Random, count: int) -> list[can.Message]:
    out = []
    for _ in range(count):
        fd = rng.random() < 0.2
        remote = not fd and rng.random() < 0.1
        data = b"" if remote else rng.randbytes(rng.choice([0, 1, 8, 12, 64] if fd else range(9)))
        out.append(can.Message(timestamp=rng.random() * 1e9, arbitration_id=rng.randrange(1 << 29),
                               is_extended_id=True, is_remote_frame=remote,
                               dlc=rng.randrange(9) if remote else None,
                               is_error_frame=rng.random() < 0.05 and not remote, data=data, is_fd=fd,
                               bitrate_switch=fd and rng.random() < 0.5,
                               error_state_indicator=fd and rng.random() < 0.5))
        if rng.random() < 0.5:
            out[-1].is_extended_id, out[-1].arbitration_id = False, rng.randrange(0x800)
    return out


def _mutate(rng: random.Random, datagram: bytes) -> bytes:
    how = rng.randrange(6)
    if how == 0:
        return datagram[:rng.randrange(len(datagram))]
    if how == 1:
        i = rng.randrange(len(datagram))
        return datagram[:i] + bytes([rng.randrange(256)]) + datagram[i + 1:]
    if how == 2:
        return datagram + rng.randbytes(rng.randrange(1, 4))
    if how == 3:
        return rng.randbytes(rng.randrange(40))
    as_dict = msgpack.unpackb(datagram, raw=False)
    key = rng.choice(sorted(as_dict))
    as_dict[key] = rng.choice([None, True, False, -1, 0x7FF, 0x800, 1 << 29, 9, 65, 1.5, -0.5, "x",
                               b"\x01" * 9, float("nan"), float("inf"), [1, 2]])
    if how == 5:
        as_dict[rng.choice(["colour", "is_rx", "check"])] = 1
    return bytes(msgpack.packb(as_dict, use_bin_type=True))


def test_datagrams_unpack_as_python_can_does_garbage_included() -> None:
    """Every datagram — python-can's own and broken ones — gives python-can's frame or is counted."""
    rng = random.Random(8)
    good = [pack_message(m) for m in _messages(rng, 400)]
    garbage = [_mutate(rng, rng.choice(good)) for _ in range(3000)]
    garbage += [b"", b"\xc1", msgpack.packb(42), msgpack.packb({"data": b"\x00"}),
                msgpack.packb({"arbitration_id": 1, "channel": "vcan0", "is_extended_id": False})]
    datagrams = good + garbage
    rng.shuffle(datagrams)
    batch = FrameBatch(1)
    malformed = batch.append_datagrams(datagrams, unpack_message)
    expected = [m for m in map(_python_can, datagrams) if m is not None]
    assert malformed == len(datagrams) - len(expected) > 1000
    assert [_fields(m) for m in batch.messages()] == [_fields(m) for m in expected]


def test_a_datagram_not_in_pack_messages_form_goes_to_python_can() -> None:
    calls: list[bytes] = []

    def unpack(datagram: bytes, check: bool) -> can.Message:
        calls.append(datagram)
        return unpack_message(datagram, check=check)

    batch = FrameBatch(4)
    plain = pack_message(can.Message(arbitration_id=5, data=b"\x01", is_extended_id=False))
    with_channel = msgpack.packb({"arbitration_id": 5, "channel": "can0", "is_extended_id": False,
                                  "data": b"\x02"}, use_bin_type=True)
    assert batch.append_datagrams([plain, with_channel, b"\xc1"], unpack) == 1
    assert calls == [with_channel, b"\xc1"]  # the plain one was unpacked in C
    assert [bytes(m.data) for m in batch.messages()] == [b"\x01", b"\x02"]


def test_the_decoder_refuses_a_table_it_cannot_hold(tmp_path: Path) -> None:
    from cython_ext.canframe import ChangeDecoder

    entry = (1, True, 60, 8, False, 0, 0, 0, 0, 1.0, 0.0, 1.0, None)
    with pytest.raises(ValueError, match="outside a 8-byte payload"):
        ChangeDecoder([(0x100, 8, bytes(64), [entry], None)], 0)
    with pytest.raises(ValueError, match="is not a CAN message"):
        ChangeDecoder([(1 << 29, 8, bytes(64), [], None)], 0)
