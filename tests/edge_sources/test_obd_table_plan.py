"""The supported-PID bitmaps decide the poll plan, and the bus-load cap holds with the whole table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import can

from edge.sources.base import SourceRunner
from edge.sources.obd.pids import PIDS
from edge.sources.obd.scheduler import BITS_PER_FRAME, PollSpec
from edge.sources.obd.source import ObdConfig, ObdSource, request_frames
from hil.ecu import EcuEmulator, EmulatedEcu
from lienwatch.clock import SystemClock

from .conftest import Collect

Emulate = Callable[..., EcuEmulator]


def test_request_frames_counts_isotp_frames_of_the_reply() -> None:
    assert request_frames([0x0D], 1) == 2  # 41 0D A: one single frame
    assert request_frames([0x0C, 0x0D], 1) == 2  # 41 0C A B 0D A: 6 bytes
    assert request_frames([0x0C, 0xA6], 1) == 4  # 9 bytes: first + consecutive frame + flow control
    assert request_frames([0x24, 0x25, 0x26, 0x27, 0x28, 0x29], 2) == 1 + 2 * (2 + 4)  # 31 bytes each


def test_supported_bitmaps_decide_the_plan(emulate: Emulate, channel: str) -> None:
    emulate([EmulatedEcu(index=0, values={0x0D: 30, 0x14: 0.5, 0x5B: 80.0, 0xA6: 1e6})])
    config = ObdConfig(interface="virtual", channel=channel, read_vin=False,
                       plan=[PollSpec(0x0D, 1.0, 0), PollSpec(0x0C, 1.0, 0)])
    source = ObdSource("obd", SystemClock(), config)
    sink = Collect()
    source.open()
    try:
        source.poll(sink)  # discovery
        assert source.scheduler is not None
        assert set(source.scheduler.specs) == {0x0D, 0x14, 0x5B, 0xA6}  # 0x0C: no ECU supports it
        assert source.scheduler.specs[0x5B].period_s == config.supported_period_s
        assert source.health.counters["pid_0x0C_unsupported"] == 1
        deadline = time.monotonic() + 3
        while len({s.signal_id for s in sink.samples}) < 5 and time.monotonic() < deadline:
            time.sleep(min(source.poll(sink), 0.01))
        paths = set(sink.by_path())
        assert {"Vehicle.Speed", "Vehicle.OBD.O2.Sensor1.Voltage", "Vehicle.OBD.O2.Sensor1.ShortTermFuelTrim",
                "Vehicle.OBD.HybridBatteryRemaining", "Vehicle.TraveledDistance"} <= paths
    finally:
        source.close()
    config.poll_supported = False
    source = ObdSource("obd", SystemClock(), config)
    source.open()
    try:
        source.poll(sink)
        assert source.scheduler is not None and set(source.scheduler.specs) == {0x0D}
    finally:
        source.close()


def test_the_whole_table_at_1_hz_stays_under_the_bus_load_cap(
    emulate: Emulate, channel: str, bus_factory: Callable[[], can.BusABC]
) -> None:
    emulate([EmulatedEcu(index=0, values={pid: 0.0 for pid in PIDS})])
    load = 0.012  # of 500 kbit/s: 44 frames/s, a third of what 100 PIDs at 1 Hz would take
    config = ObdConfig(interface="virtual", channel=channel, read_vin=False, dtc_period_s=3600,
                       max_bus_load=load, supported_period_s=1.0)
    listener = bus_factory()
    frames: list[float] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            msg = listener.recv(0.05)
            if msg is not None:
                frames.append(time.monotonic())

    thread = threading.Thread(target=count, daemon=True)
    source = ObdSource("obd", SystemClock(), config)
    sink = Collect()
    runner = SourceRunner(source, sink)
    try:
        runner.step()  # discovery (its frames are not the poller's)
        assert source.scheduler is not None and len(source.scheduler.specs) == len(PIDS)
        thread.start()
        start = time.monotonic()
        seconds = 4.0
        while time.monotonic() - start < seconds:
            time.sleep(min(runner.step(), 0.01))
        elapsed = time.monotonic() - start
    finally:
        runner.stop()
        stop.set()
        thread.join(2)
    rate = 500_000 * load / BITS_PER_FRAME
    capacity = max(4.0, rate)
    assert len(frames) <= rate * elapsed + capacity + 8  # + the replies of the last request in flight
    assert len(frames) >= 0.5 * rate * elapsed  # and the cap is used, not idle
    speeds = sink.by_path()["Vehicle.Speed"]
    assert len(speeds) >= seconds - 1  # the priority-0 PID keeps its 1 Hz under the cap
    assert len({s.signal_id for s in sink.samples}) >= 60  # the table is polled, slower
