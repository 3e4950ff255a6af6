"""The dbc source's on-change rule: mapped-bit masks, skipping repeats, refreshes, nothing lost."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can
import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.base import SourceRunner
from edge.sources.dbc import DbcDecoder, DbcSource, Manifest, load_manifest
from edge.sources.dbc_layout import signal_bits
from edge.sources.registry import SourceContext, build_source
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from protocol.catalog import default_catalog

from .conftest import REPO, Collect

HIL_MANIFEST = REPO / "hil" / "vehicle_manifest.toml"

# A gateway-style message: Motorola (big-endian) signals, a signed one, and an unmapped rolling
# counter and checksum that change in every frame.
TEST_DBC = """VERSION ""

NS_ :

BS_:

BU_: ECU GW

BO_ 768 Drive: 8 ECU
 SG_ SpeedKmh : 7|12@0+ (0.1,0) [0|409.5] "km/h" GW
 SG_ Counter : 11|4@0+ (1,0) [0|15] "" GW
 SG_ TorqueNm : 23|16@0- (0.5,0) [-16384|16383.5] "Nm" GW
 SG_ GearRaw : 39|3@0+ (1,0) [0|7] "" GW
 SG_ Spare : 36|5@0+ (1,0) [0|31] "" GW
 SG_ Checksum : 63|8@0+ (1,0) [0|255] "" GW

BO_ 2566848768 ExtBody: 8 ECU
 SG_ DoorOpen : 0|1@1+ (1,0) [0|1] "" GW
 SG_ AliveCounter : 8|8@1+ (1,0) [0|255] "" GW
 SG_ StateRaw : 20|3@1+ (1,0) [0|7] "" GW
"""

TEST_MANIFEST = """dbc = "gateway.dbc"

[[signal]]
message = "Drive"
signal = "SpeedKmh"
vss = "Vehicle.Speed"

[[signal]]
message = "Drive"
signal = "TorqueNm"
vss = "Vehicle.Powertrain.TractionBattery.CurrentCurrent"

[[signal]]
message = "Drive"
signal = "GearRaw"
vss = "Vehicle.LowVoltageSystemState"
values = { 0 = 1, 1 = 2, 2 = 3, 3 = 4, 4 = 5 }

[[signal]]
message = "ExtBody"
signal = "DoorOpen"
vss = "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen"

[[signal]]
message = "ExtBody"
signal = "StateRaw"
vss = "Vehicle.Body.Hood.IsOpen"
values = { 0 = 0, 1 = 1 }
"""

DRIVE, EXT_BODY = 768, 0x18FF0100  # 2566848768 in the DBC is the id with the extended flag bit


@pytest.fixture
def gateway(tmp_path: Path) -> Manifest:
    (tmp_path / "gateway.dbc").write_text(TEST_DBC)
    (tmp_path / "gateway.toml").write_text(TEST_MANIFEST)
    return load_manifest(tmp_path / "gateway.toml")


def _manifests(tmp_path: Path) -> list[Manifest]:
    (tmp_path / "gateway.dbc").write_text(TEST_DBC)
    (tmp_path / "gateway.toml").write_text(TEST_MANIFEST)
    return [load_manifest(HIL_MANIFEST), load_manifest(tmp_path / "gateway.toml")]


@functools.cache
def _cantools_message(frame_id: int) -> Any:
    """The cantools message of a frame id of the HIL DBC or TEST_DBC (the oracle for the layouts)."""
    for db in (cantools.database.load_string(TEST_DBC, database_format="dbc"),
               cantools.database.load_file(str(REPO / "hil" / "vehicle.dbc"))):
        try:
            return db.get_message_by_frame_id(frame_id)  # type: ignore[union-attr]
        except KeyError:
            continue
    raise KeyError(frame_id)


def _raw(manifest: Manifest, frame_id: int, data: bytes) -> dict[str, Any]:
    names = {m.signal for m in manifest.by_frame[frame_id]}
    message = _cantools_message(frame_id)
    decoded = message.decode(data, decode_choices=False, scaling=False)
    return {k: v for k, v in decoded.items() if k in names}


def test_mask_marks_exactly_the_bits_cantools_reads_for_mapped_signals(tmp_path: Path) -> None:
    """Flip every payload bit: the mapped raw values change iff the bit is in the mask."""
    rng = random.Random(5)
    for manifest in _manifests(tmp_path):
        for frame_id, mask in manifest.masks.items():
            length = _cantools_message(frame_id).length
            for _ in range(5):
                base = bytes(rng.randrange(256) for _ in range(length))
                before = _raw(manifest, frame_id, base)
                for bit in range(8 * length):
                    flipped = (int.from_bytes(base, "little") ^ (1 << bit)).to_bytes(length, "little")
                    changed = _raw(manifest, frame_id, flipped) != before
                    assert changed == bool(mask >> bit & 1), (frame_id, bit)


def test_signal_bits_motorola_walks_down_then_to_the_next_byte() -> None:
    assert signal_bits(0, 4, "little_endian") == 0x0F
    assert signal_bits(7, 12, "big_endian") == 0xF0FF  # byte 0 all, byte 1 bits 7..4
    assert signal_bits(3, 2, "big_endian") == 0b1100


def _frame(frame_id: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=frame_id, data=data, is_extended_id=frame_id > 0x7FF)


def _drive(manifest: Manifest, counter: int = 0, **signals: float) -> can.Message:
    message = _cantools_message(DRIVE)
    values = {"SpeedKmh": 50.0, "Counter": counter, "TorqueNm": 120.5, "GearRaw": 3, "Spare": 0,
              "Checksum": (counter * 37) % 256, **signals}
    return _frame(DRIVE, message.encode(values))


def test_repeats_are_skipped_changes_emitted_at_once_and_refreshed(gateway: Manifest) -> None:
    clock = ManualClock()
    decoder = DbcDecoder(gateway, refresh_s=1.0)
    path = {s.id: s.path for s in default_catalog().signals}

    def changes(msg: can.Message) -> dict[str, float]:
        return {path[k]: v for k, v in decoder.changes(msg, clock.monotonic_ns())}

    first = changes(_drive(gateway))
    assert first == {"Vehicle.Speed": pytest.approx(50.0), "Vehicle.LowVoltageSystemState": 4.0,
                     "Vehicle.Powertrain.TractionBattery.CurrentCurrent": 120.5}
    for counter in range(1, 10):  # only the rolling counter and checksum move: nothing to decode
        clock.advance(0.1)
        assert changes(_drive(gateway, counter)) == {}
    assert (decoder.decoded, decoder.unchanged) == (1, 9)
    clock.advance(0.1)  # 1.0 s since the last emission: everything again, from the repeated frame
    assert changes(_drive(gateway, 10)).keys() == first.keys()
    clock.advance(0.1)
    assert changes(_drive(gateway, 11, SpeedKmh=50.1)) == {"Vehicle.Speed": pytest.approx(50.1)}
    clock.advance(0.01)
    assert changes(_drive(gateway, 12, SpeedKmh=50.1)) == {}
    assert decoder.decoded == 2 and decoder.rejected == 0


def test_a_rejected_frame_is_decoded_and_counted_every_time(gateway: Manifest) -> None:
    clock = ManualClock()
    decoder = DbcDecoder(gateway, refresh_s=5.0)
    bad = _drive(gateway, GearRaw=7)  # raw 7 has no catalog value
    for _ in range(3):
        clock.advance(0.1)
        out = dict(decoder.changes(bad, clock.monotonic_ns()))
        assert default_catalog().id_of("Vehicle.LowVoltageSystemState") not in out
    assert (decoder.rejected, decoder.decoded, decoder.unchanged) == (3, 3, 0)
    short = _frame(DRIVE, b"\x01\x02")
    decoder.changes(short, clock.monotonic_ns())
    decoder.changes(short, clock.monotonic_ns())
    assert decoder.rejected == 5
    good = _drive(gateway)
    assert decoder.changes(good, clock.monotonic_ns())
    truncated = _frame(DRIVE, bytes(good.data[:5]))  # every mapped bit the same, but too short
    assert decoder.changes(truncated, clock.monotonic_ns()) == []
    assert (decoder.rejected, decoder.unchanged) == (6, 0)
    padded = _frame(DRIVE, bytes(good.data) + b"\x00")  # the same bytes and one more: a wrong DLC
    for _ in range(2):
        assert decoder.changes(padded, clock.monotonic_ns()) == [] and decoder.decode(padded) == []
    assert (decoder.rejected, decoder.unchanged) == (10, 0)


def test_refresh_zero_decodes_and_emits_every_frame(gateway: Manifest) -> None:
    decoder = DbcDecoder(gateway, refresh_s=0.0)
    for _ in range(4):
        assert len(decoder.changes(_drive(gateway), 0)) == 3
    assert (decoder.decoded, decoder.unchanged) == (4, 0)
    with pytest.raises(ConfigError, match="refresh_s"):
        DbcDecoder(gateway, refresh_s=-1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([DRIVE, EXT_BODY]), st.integers(0, 5), st.integers(0, 400)),
        min_size=1,
        max_size=120,
    ),
    st.sampled_from([0.05, 0.5, 2.0]),
)
def test_no_change_is_ever_lost_and_values_are_never_stale(
    steps: list[tuple[int, int, int]], refresh_s: float
) -> None:
    """Against a full decode of every frame: each change is emitted with its frame, every emitted
    value is the frame's own, and a signal whose message keeps coming is emitted every refresh_s."""
    manifest = _GATEWAY
    rng = random.Random(len(steps))
    pool = {fid: [bytes(rng.randrange(256) for _ in range(8)) for _ in range(6)] for fid in (DRIVE, EXT_BODY)}
    decoder, reference = DbcDecoder(manifest, refresh_s=refresh_s), DbcDecoder(manifest, refresh_s=0)
    last_value: dict[int, float] = {}
    last_emit: dict[int, int] = {}
    now = 0
    for frame_id, which, advance_ms in steps:
        now += advance_ms * 1_000_000
        msg = _frame(frame_id, pool[frame_id][which])
        full = dict(reference.changes(msg, now))
        emitted = dict(decoder.changes(msg, now))
        for signal_id, value in emitted.items():
            assert full.get(signal_id) == value  # never a stale or invented value
        for signal_id, value in full.items():
            if last_value.get(signal_id) != value:
                assert emitted.get(signal_id) == value  # a change is emitted with its frame
            if now - last_emit.get(signal_id, -(10**18)) >= round(refresh_s * 1e9):
                assert signal_id in emitted  # refreshed at the interval
        for signal_id, value in emitted.items():
            last_value[signal_id] = value
            last_emit[signal_id] = now
    assert decoder.rejected == reference.rejected  # repeats of rejected frames are counted too


def _gateway_manifest() -> Manifest:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        return _manifests(Path(directory))[1]


_GATEWAY = _gateway_manifest()


def test_can_filters_pass_exactly_the_mapped_ids(gateway: Manifest, channel: str,
                                                 bus_factory: Callable[[], can.BusABC]) -> None:
    """The filter list as python-can applies it (SocketCAN hands the same list to the kernel)."""
    assert gateway.can_filters() == [
        {"can_id": DRIVE, "can_mask": 0x7FF, "extended": False},
        {"can_id": EXT_BODY, "can_mask": 0x1FFFFFFF, "extended": True},
    ]
    filtered = can.Bus(interface="virtual", channel=channel, can_filters=gateway.can_filters())
    try:
        car = bus_factory()
        sent = [_frame(DRIVE, bytes(8)), _frame(EXT_BODY, bytes(8)),
                can.Message(arbitration_id=DRIVE, data=bytes(8), is_extended_id=True),
                _frame(0x301, bytes(8)), _frame(EXT_BODY + 1, bytes(8))]
        for msg in sent:
            car.send(msg)
        got = []
        while (received := filtered.recv(0.2)) is not None:
            got.append((received.arbitration_id, received.is_extended_id))
        assert got == [(DRIVE, False), (EXT_BODY, True)]
    finally:
        filtered.shutdown()


def test_dbc_source_emits_on_change_over_a_real_bus(channel: str,
                                                    bus_factory: Callable[[], can.BusABC]) -> None:
    clock = ManualClock()
    source = build_source(
        {"kind": "dbc", "manifest": str(HIL_MANIFEST), "interface": "virtual", "channel": channel,
         "refresh_s": 5.0},
        SourceContext(clock=clock),
    )
    assert isinstance(source, DbcSource)
    sink = Collect()
    runner = SourceRunner(source, sink)
    runner.step()  # open
    car = bus_factory()
    db: Any = cantools.database.load_file(str(REPO / "hil" / "vehicle.dbc"))
    doors = db.get_message_by_name("BodyDoors")
    closed = {s.name: 0 for s in doors.signals}
    for _ in range(50):
        car.send(can.Message(arbitration_id=doors.frame_id, data=doors.encode(closed), is_extended_id=False))
    car.send(can.Message(arbitration_id=doors.frame_id, data=doors.encode({**closed, "TrunkOpen": 1}),
                         is_extended_id=False))
    for _ in range(5):
        runner.step()
    trunk = sink.by_path()["Vehicle.Body.Trunk.Rear.IsOpen"]
    assert trunk == [0.0, 1.0]  # the first frame, then the change; 49 repeats skipped
    assert len(sink.samples) == 6 + 1
    counters = source.health.counters
    assert (counters["decoded_frames"], counters["unchanged_frames"]) == (2, 49)
    assert source.health.frames == 51
    runner.stop()


def test_dbc_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="refresh_s must be float"):
        build_source({"kind": "dbc", "manifest": str(HIL_MANIFEST), "refresh_s": "often"})
    with pytest.raises(ConfigError, match="refresh_s must be >= 0"):
        build_source({"kind": "dbc", "manifest": str(HIL_MANIFEST), "refresh_s": -1.0})


def test_reads_in_batches_that_stay_small_at_high_rates(channel: str,
                                                        bus_factory: Callable[[], can.BusABC]) -> None:
    from edge.sources.dbc import BATCH_FRAMES

    clock = ManualClock()
    source = DbcSource("dbc", clock, manifest=load_manifest(HIL_MANIFEST), interface="virtual",
                       channel=channel, read_interval_s=0.1)
    source.open()
    car = bus_factory()
    sink = Collect()
    try:
        power = can.Message(arbitration_id=960, data=b"\x03", is_extended_id=False)
        car.send(power)
        assert source.poll(sink) == 0.1  # nothing to go by yet: the longest rest
        for _ in range(2):  # 2 frames in 0.1 s: rest the whole interval
            car.send(power)
        clock.advance(0.1)
        assert source.poll(sink) == 0.1
        for _ in range(4 * BATCH_FRAMES):  # 4,000 frames/s: rest so that ~BATCH_FRAMES queue
            car.send(power)
        clock.advance(0.1)
        assert source.poll(sink) == pytest.approx(BATCH_FRAMES / 4000)
        assert source.health.frames == 3 + 4 * BATCH_FRAMES
        clock.advance(0.1)
        assert source.poll(sink) == 0.0  # a silent bus: waited in recv, no rest needed
    finally:
        source.close()


def test_error_frame_share_is_counted_over_a_rolling_window() -> None:
    from edge.sources.base import HealthState
    from edge.sources.can_bus import BusMonitor

    monitor = BusMonitor(ManualClock(), error_window=100)
    error = can.Message(arbitration_id=0x008, is_error_frame=True, data=bytes(8))
    data = can.Message(arbitration_id=0x3B0, data=b"\x01", is_extended_id=False)
    for _ in range(150):
        monitor.observe(error)
    assert monitor.status().detail == "error frames on the bus"
    for _ in range(49):
        monitor.observe(data)
    assert monitor.status().detail == "error frames on the bus"  # 51 of the last 100
    monitor.observe(data)
    assert monitor.status().state is HealthState.OK  # 50 of the last 100: not more than half
    assert (monitor.error_frames, monitor.frames) == (150, 50)


def test_receive_buffer_is_enlarged_and_sizes_the_batches(channel: str) -> None:
    from edge.sources.can_bus import open_bus, set_receive_buffer
    from edge.sources.dbc import BATCH_FRAMES, FRAME_BUFFER_BYTES

    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    port = random.Random().randrange(40000, 60000)
    source = DbcSource("dbc", ManualClock(), manifest=load_manifest(HIL_MANIFEST), interface="udp_multicast",
                       channel=f"ff11::6:{port:x}", port=port, receive_buffer_bytes=1 << 20)
    source.open()
    try:
        assert source.bus is not None
        effective = set_receive_buffer(source.bus, 0)  # 0: only read what is in effect
        assert effective == min(2 << 20, 2 * rmem_max)  # Linux doubles the request, capped by rmem_max
        assert source.batch_frames == effective // FRAME_BUFFER_BYTES // 2
        assert source.health.counters["receive_buffer_bytes"] == effective
    finally:
        source.close()
    virtual = open_bus("virtual", channel)
    try:
        assert set_receive_buffer(virtual, 1 << 20) is None  # no socket: the fixed batch size
    finally:
        virtual.shutdown()
    assert DbcSource("dbc", ManualClock(), manifest=load_manifest(HIL_MANIFEST), interface="virtual",
                     channel=channel).batch_frames == BATCH_FRAMES
    with pytest.raises(ConfigError, match="receive_buffer_bytes must be >= 0"):
        build_source({"kind": "dbc", "manifest": str(HIL_MANIFEST), "receive_buffer_bytes": -1})
