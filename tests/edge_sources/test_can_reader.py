"""QueuedFrameReader: batch reads of a python-can bus, against python-can's own `recv()`."""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator

import can
import msgpack  # type: ignore[import-untyped]
import pytest

from edge.sources.base import HealthState
from edge.sources.can_bus import QueuedFrameReader, open_bus
from edge.sources.dbc import DbcSource, load_manifest
from lienwatch.clock import ManualClock
from tests.edge_sources.test_dbc_changes import HIL_MANIFEST

FIELDS = ("arbitration_id", "is_extended_id", "is_remote_frame", "is_error_frame", "is_fd", "bitrate_switch",
          "error_state_indicator", "dlc", "data")


def _fields(msg: can.Message) -> tuple[object, ...]:
    return tuple(bytes(msg.data) if name == "data" else getattr(msg, name) for name in FIELDS)


@pytest.fixture
def group_port() -> tuple[str, int]:
    port = random.Random().randrange(40000, 60000)
    return f"ff11::7:{port:x}", port


@pytest.fixture
def buses(group_port: tuple[str, int]) -> Iterator[tuple[can.BusABC, can.BusABC, can.BusABC]]:
    """(sender, bus read by QueuedFrameReader, bus read by python-can's recv) on one ff11:: group."""
    group, port = group_port
    opened = [open_bus("udp_multicast", group, port=port) for _ in range(3)]
    yield opened[0], opened[1], opened[2]
    for bus in opened:
        bus.shutdown()


def _frames(count: int, seed: int = 3) -> list[can.Message]:
    rng = random.Random(seed)
    frames = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            data = rng.randbytes(rng.randrange(9))
            frames.append(can.Message(arbitration_id=rng.randrange(0x800), data=data, is_extended_id=False))
        elif kind == 1:
            frames.append(can.Message(arbitration_id=rng.randrange(1 << 29), data=rng.randbytes(8)))
        elif kind == 2:
            frames.append(can.Message(arbitration_id=rng.randrange(0x800), is_remote_frame=True, dlc=4,
                                      is_extended_id=False))
        elif kind == 3:
            frames.append(can.Message(arbitration_id=0x40, is_error_frame=True, data=bytes(8),
                                      is_extended_id=False))
        else:
            frames.append(can.Message(arbitration_id=rng.randrange(0x800), data=rng.randbytes(64), is_fd=True,
                                      bitrate_switch=True, is_extended_id=False))
    return frames


def _send(sender: can.BusABC, count: int) -> list[can.Message]:
    frames = _frames(count)
    for msg in frames:
        sender.send(msg)
    return frames


def _recv_all(bus: can.BusABC, count: int) -> list[can.Message]:
    out: list[can.Message] = []
    while len(out) < count:
        msg = bus.recv(2.0)
        assert msg is not None, f"only {len(out)} of {count} frames arrived"
        out.append(msg)
    return out


def _read_all(reader: QueuedFrameReader, count: int) -> list[can.Message]:
    out: list[can.Message] = []
    deadline = time.monotonic() + 5
    while len(out) < count and time.monotonic() < deadline:
        out += reader.read(0.5, count - len(out))
    return out


def test_batches_equal_python_can_recv_frame_for_frame(buses: tuple[can.BusABC, ...]) -> None:
    sender, ours, theirs = buses
    reader = QueuedFrameReader(ours, "udp_multicast")
    sent = _send(sender, 200)
    expected = _recv_all(theirs, len(sent))
    got = _read_all(reader, len(sent))
    assert [_fields(m) for m in got] == [_fields(m) for m in expected] == [_fields(m) for m in sent]
    assert reader.malformed == 0
    assert reader.read(0, 100) == []  # drained: nothing more, at once
    reader.close()


def test_a_batch_stops_at_the_limit_and_the_rest_stays_queued(buses: tuple[can.BusABC, ...]) -> None:
    sender, ours, _ = buses
    reader = QueuedFrameReader(ours, "udp_multicast")
    sent = _send(sender, 10)
    time.sleep(0.05)  # let the loopback deliver all ten
    first = reader.read(1.0, 4)
    rest = _read_all(reader, 6)
    assert len(first) == 4
    assert [_fields(m) for m in first + rest] == [_fields(m) for m in sent]
    reader.close()


def test_garbage_datagrams_are_counted_and_skipped(group_port: tuple[str, int],
                                                   buses: tuple[can.BusABC, ...]) -> None:
    group, port = group_port
    sender, ours, _ = buses
    reader = QueuedFrameReader(ours, "udp_multicast")
    raw = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, struct.pack("@I", 0))
    garbage = [
        b"\xc1\x00not msgpack",  # 0xc1 is never used by msgpack
        msgpack.packb(42),  # msgpack, but not a map
        msgpack.packb({"arbitration_id": 1, "colour": "red"}),  # a field can.Message does not know
        msgpack.packb({"arbitration_id": 0x900, "is_extended_id": False, "data": b"\x00"}),  # id > 11 bits
        msgpack.packb({"arbitration_id": 1, "data": b"\x00" * 9, "is_extended_id": False}),  # 9 B, classic
        b"",
    ]
    good = _frames(3)
    sender.send(good[0])
    for datagram in garbage:
        raw.sendto(datagram, (group, port))
    sender.send(good[1])
    sender.send(good[2])
    got = _read_all(reader, 3)
    raw.close()
    assert [_fields(m) for m in got] == [_fields(m) for m in good]
    assert reader.malformed == len(garbage)
    reader.close()


def test_other_interfaces_and_filtered_buses_go_through_python_can(group_port: tuple[str, int]) -> None:
    group, port = group_port
    sender = open_bus("udp_multicast", group, port=port)
    filtered = open_bus("udp_multicast", group, port=port,
                        can_filters=[{"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False}])
    try:
        reader = QueuedFrameReader(filtered, "udp_multicast")
        for arbitration_id in (0x100, 0x7E8, 0x200, 0x7EA):
            sender.send(can.Message(arbitration_id=arbitration_id, data=b"\x01", is_extended_id=False))
        got = _read_all(reader, 2)
        assert [m.arbitration_id for m in got] == [0x7E8, 0x7EA]  # python-can's filter still applies
    finally:
        sender.shutdown()
        filtered.shutdown()
    channel = f"reader-{port}"
    virtual_tx, virtual_rx = open_bus("virtual", channel), open_bus("virtual", channel)
    try:
        reader = QueuedFrameReader(virtual_rx, "virtual")
        for i in range(5):
            virtual_tx.send(can.Message(arbitration_id=i, data=bytes([i]), is_extended_id=False))
        assert [m.arbitration_id for m in reader.read(0.5, 3)] == [0, 1, 2]
        assert [m.arbitration_id for m in reader.read(0.5, 10)] == [3, 4]
        assert reader.read(0.01, 10) == []
        reader.close()
    finally:
        virtual_tx.shutdown()
        virtual_rx.shutdown()


def test_dbc_source_counts_malformed_datagrams_and_keeps_decoding(group_port: tuple[str, int]) -> None:
    group, port = group_port
    clock = ManualClock()
    manifest = load_manifest(HIL_MANIFEST)
    source = DbcSource("dbc", clock, manifest=manifest, interface="udp_multicast", channel=group, port=port)
    source.open()
    sender = open_bus("udp_multicast", group, port=port)
    raw = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, struct.pack("@I", 0))
    try:
        frame_id = next(iter(manifest.by_frame))
        length = manifest.layouts[frame_id].length
        raw.sendto(b"\xc1garbage", (group, port))
        sender.send(can.Message(arbitration_id=frame_id, data=bytes(length), is_extended_id=frame_id > 0x7FF))
        samples: list[object] = []
        deadline = time.monotonic() + 5
        while not samples and time.monotonic() < deadline:
            source.poll(samples.append)
        assert samples, "the frame after the garbage was not decoded"
        assert source.health.counters["malformed_datagrams"] == 1
        assert source.health.errors >= 1
        assert source.health.state is HealthState.OK
    finally:
        raw.close()
        sender.shutdown()
        source.close()
