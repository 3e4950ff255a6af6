"""OBD-II over ISO-TP against the HIL ECU emulator on a real python-can virtual bus."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import can
import pytest

from edge.sources.base import HealthState, SourceRunner
from edge.sources.obd.client import NegativeResponse, ObdClient
from edge.sources.obd.scheduler import PollSpec
from edge.sources.obd.source import ObdConfig, ObdSource
from edge.sources.registry import build_source
from hil.ecu import EcuEmulator, EmulatedEcu, demo_vehicle
from lienwatch.clock import SystemClock
from lienwatch.errors import ConfigError

from .conftest import Collect

Emulate = Callable[..., EcuEmulator]
BusFactory = Callable[[], can.BusABC]


def run_for(runner: SourceRunner, seconds: float) -> None:
    """Step a runner for `seconds` of real time (the bus is real; waits are short)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(runner.step(), 0.01))


def run_until(runner: SourceRunner, done: Callable[[], bool], max_s: float = 5.0) -> None:
    """Step a runner until `done()` (or `max_s` of real time passed)."""
    deadline = time.monotonic() + max_s
    while not done() and time.monotonic() < deadline:
        time.sleep(min(runner.step(), 0.01))


def client_on(bus_factory: BusFactory, **kwargs: object) -> ObdClient:
    options: dict[str, object] = {"timeout_s": 0.15}
    options.update(kwargs)
    return ObdClient(bus_factory(), SystemClock(), **options)  # type: ignore[arg-type]


def test_discovery_finds_each_ecu_and_its_supported_pids(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate(demo_vehicle())
    client = client_on(bus_factory)
    ecus = client.discover()
    assert sorted(ecus) == [0x7E8, 0x7E9]
    assert {0x0C, 0x0D, 0x42, 0xA6, 0x5C} <= ecus[0x7E8].supported
    assert ecus[0x7E9].supported == {0x05, 0x0D}
    assert ecus[0x7E8].multi_pid_ok
    assert not ecus[0x7E9].multi_pid_ok  # answered the 6-PID discovery request with NRC 0x12


def test_multi_pid_read_and_single_pid_fallback(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate(demo_vehicle())
    client = client_on(bus_factory)
    client.discover()
    values = client.read_pids([0x0C, 0x0D, 0x05, 0xA6])
    assert values[0x7E8] == {
        0x0C: b"\x1a\xf8",
        0x0D: b"\x32",
        0x05: bytes([128]),
        0xA6: bytes.fromhex("0012D687"),
    }
    # the transmission ECU refuses multi-PID requests: it still answers, one PID at a time
    assert values[0x7E9] == {0x0D: b"\x32", 0x05: bytes([120])}


def test_vin_spans_several_isotp_frames_and_dtcs_are_read(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate(demo_vehicle())
    client = client_on(bus_factory)
    client.discover()
    assert client.read_vin() == {0x7E8: "WVWZZZ1KZAW000001"}
    assert client.read_dtcs(0x03) == {0x7E8: ["P0143"], 0x7E9: []}
    assert client.read_dtcs(0x07)[0x7E8] == ["P0300", "U0100"]


def test_29bit_addressing(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate(demo_vehicle(), extended_29bit=True)
    client = client_on(bus_factory, extended_29bit=True)
    ecus = client.discover()
    assert sorted(ecus) == [0x18DAF110, 0x18DAF111]
    assert client.read_vin() == {0x18DAF110: "WVWZZZ1KZAW000001"}


def test_slow_ecu_within_timeout_is_answered(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate([EmulatedEcu(index=0, values={0x0D: 42}, delay_s=0.03)])
    client = client_on(bus_factory, timeout_s=0.3)
    client.discover()
    assert client.read_pids([0x0D]) == {0x7E8: {0x0D: b"\x2a"}}
    assert client.ecus[0x7E8].timeouts == 0


def test_too_slow_ecu_times_out_and_its_late_answer_is_not_taken(
    emulate: Emulate, bus_factory: BusFactory
) -> None:
    ecu = EmulatedEcu(index=0, values={0x0D: 42, 0x0C: 800})
    emulate([ecu])
    client = client_on(bus_factory, timeout_s=0.3)
    client.discover()
    client.timeout_ns = 50_000_000
    ecu.delay_s = 0.08
    assert client.read_pids([0x0D]) == {}
    assert client.ecus[0x7E8].timeouts == 1
    ecu.delay_s = 0.0
    client.timeout_ns = 500_000_000  # generous now: the answer is expected
    time.sleep(0.05)
    # the late 0x0D answer is queued before the 0x0C one; it must not be taken for it
    values = client.read_pids([0x0C])
    assert values == {0x7E8: {0x0C: bytes.fromhex("0C80")}}
    assert client.stale_replies >= 1


def test_response_pending_extends_the_wait(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate([EmulatedEcu(index=0, values={0x0D: 7}, pending_first=True, delay_s=0.3)])
    client = client_on(bus_factory, timeout_s=0.15, pending_timeout_s=1.0)
    client.discover()
    assert client.read_pids([0x0D]) == {0x7E8: {0x0D: b"\x07"}}


def test_refused_service_gives_a_negative_response_per_ecu(emulate: Emulate, bus_factory: BusFactory) -> None:
    emulate(
        [
            EmulatedEcu(index=0, values={0x0D: 1}, refuse_services={0x03}),
            EmulatedEcu(index=2, values={0x0D: 1}),
        ]
    )
    client = client_on(bus_factory)
    client.discover()
    replies = client.request(b"\x03", expect=[0x7E8, 0x7EA])
    assert replies[0x7E8] == NegativeResponse(0x03, 0x11)
    assert replies[0x7EA] == b"\x43\x00"
    assert client.ecus[0x7E8].negative == {0x11: 1}


def test_silent_ecu_counts_timeouts_and_degrades_the_source(
    emulate: Emulate, bus_factory: BusFactory, channel: str
) -> None:
    engine = EmulatedEcu(index=0, values={0x0D: 30, 0x0C: 2000})
    emulate([engine])
    config = ObdConfig(
        interface="virtual",
        channel=channel,
        timeout_s=0.1,
        asleep_probe_s=0.05,
        read_vin=False,
        plan=[PollSpec(0x0D, 0.01, 0), PollSpec(0x0C, 0.01, 1)],
    )
    source = ObdSource("obd", SystemClock(), config)
    sink = Collect()
    runner = SourceRunner(source, sink)
    run_until(runner, lambda: source.health.state is HealthState.OK and len(sink.samples) >= 3)
    assert source.health.state is HealthState.OK, source.health.detail
    by_path = sink.by_path()
    assert by_path["Vehicle.Speed"][-1] == 30.0
    assert by_path["Vehicle.Powertrain.CombustionEngine.Speed"][-1] == 2000.0
    assert by_path["Vehicle.Diagnostics.DTCCount"] == [0.0]
    engine.silent = True  # ignition off
    run_until(runner, lambda: source.health.state is HealthState.DEGRADED)
    health = runner.health()
    assert health.state is HealthState.DEGRADED
    assert "silent" in health.detail or "no ECU" in health.detail
    assert health.timeouts >= 3
    assert health.counters["ecu_0x7E8_timeouts"] == health.timeouts
    engine.silent = False  # ignition on again: the source rediscovers and polls
    before = len(sink.samples)
    run_until(runner, lambda: source.health.state is HealthState.OK and len(sink.samples) > before)
    assert source.health.state is HealthState.OK
    assert len(sink.samples) > before
    runner.stop()


def test_obd_source_with_no_car_is_degraded_not_dead(channel: str) -> None:
    config = ObdConfig(
        interface="virtual", channel=channel, timeout_s=0.02, asleep_probe_s=0.01, silent_after_s=0.01
    )
    source = ObdSource("obd", SystemClock(), config)
    runner = SourceRunner(source, Collect())
    for _ in range(3):
        runner.step()
    assert runner.is_open
    assert source.health.state is HealthState.DEGRADED
    runner.stop()


def test_random_frames_on_the_bus_do_not_crash_client_or_emulator(
    emulate: Emulate, bus_factory: BusFactory
) -> None:
    emulator = emulate(demo_vehicle())
    client = client_on(bus_factory)
    noise = bus_factory()
    rng = random.Random(7)
    ids = [0x7DF, 0x7E0, 0x7E1, 0x7E8, 0x7E9, 0x123, 0x3B0]
    for _ in range(400):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
        noise.send(can.Message(arbitration_id=rng.choice(ids), data=data, is_extended_id=False))
    noise.send(can.Message(arbitration_id=0x18DAF110, data=b"\x10\xff\x00", is_extended_id=True))
    client.pump(0.05)
    ecus = client.discover()  # the garbage is behind us; a clean conversation still works
    assert {0x7E8, 0x7E9} <= set(ecus)
    assert client.read_vin()[0x7E8] == "WVWZZZ1KZAW000001"
    assert emulator._thread is not None and emulator._thread.is_alive()


def test_udp_multicast_refuses_groups_that_leave_the_machine() -> None:
    from edge.sources.can_bus import check_channel
    from lienwatch.errors import ConfigError

    check_channel("udp_multicast", "ff11::1:2:3")
    for bad in ("239.74.163.2", "ff15:7079:7468:6f6e:6465:6d6f:6d63:6173", "ff02::1", "not-an-ip"):
        with pytest.raises(ConfigError):
            check_channel("udp_multicast", bad)


def test_a_bus_that_dies_under_the_source_is_reopened_with_backoff(emulate: Emulate, channel: str) -> None:
    from edge.sources.base import Backoff

    emulate(demo_vehicle())
    config = ObdConfig(
        interface="virtual", channel=channel, timeout_s=0.2, read_vin=False, plan=[PollSpec(0x0D, 0.01, 0)]
    )
    source = ObdSource("obd", SystemClock(), config)
    sink = Collect()
    runner = SourceRunner(source, sink, backoff=Backoff(initial_s=0.05, jitter=0.0))
    run_until(runner, lambda: len(sink.samples) >= 2)
    assert source.bus is not None
    source.bus.shutdown()  # the driver goes away (USB CAN adapter unplugged, interface down)
    run_until(runner, lambda: source.health.reconnects >= 1 and len(sink.samples) >= 4)
    health = runner.health()
    assert health.reconnects == 1
    assert "CAN send failed" in health.last_error or "poll failed" in health.last_error
    assert health.state is HealthState.OK
    runner.stop()


def test_udp_multicast_buses_are_apart_only_on_different_ports() -> None:
    """Why the bench (and the config) give OBD and the body CAN their own group *and* port."""
    from edge.sources.can_bus import multicast_port, open_bus
    from lienwatch.errors import ConfigError

    rng = random.Random()
    port = rng.randrange(40000, 60000)
    groups = [f"ff11::5:{rng.randrange(1, 0xFFFF):x}:{i}" for i in range(2)]
    obd = open_bus("udp_multicast", groups[0], port=port)
    body_same_port = open_bus("udp_multicast", groups[1], port=port)
    body_own_port = open_bus("udp_multicast", groups[1], port=port + 1)
    try:
        body_own_port.send(can.Message(arbitration_id=0x3B0, data=b"\x01", is_extended_id=False))
        body_same_port.send(can.Message(arbitration_id=0x3B1, data=b"\x02", is_extended_id=False))
        seen = obd.recv(1.0)
        assert seen is not None and seen.arbitration_id == 0x3B1  # same port: the other group leaks in
        assert obd.recv(0.2) is None  # the bus on its own port stays apart
    finally:
        for bus in (obd, body_same_port, body_own_port):
            bus.shutdown()
    assert multicast_port("obd", 0) is None and multicast_port("obd", 43200) == 43200
    for bad in (-1, 65536):
        with pytest.raises(ConfigError, match=r"sources\.obd\.port"):
            build_source({"kind": "obd", "interface": "udp_multicast", "channel": "ff11::1", "port": bad})


def test_mixed_ecus_get_multi_pid_requests_physically_and_no_stale_nrc(
    emulate: Emulate, bus_factory: BusFactory
) -> None:
    """One ECU refuses multi-PID requests: only its PIDs go one by one; the other ECU still gets
    up to 6 PIDs per request on its physical id, which the refusing ECU never sees."""
    from edge.sources.obd.client import PidRequest

    emulate(demo_vehicle())
    client = client_on(bus_factory)
    client.discover()
    refusals = client.ecus[0x7E9].negative.get(0x12, 0)
    assert refusals >= 1  # the discovery request was refused
    plan = client.plan([0x0C, 0x0D, 0x05, 0xA6, 0x42])
    assert plan == [PidRequest((0x0C, 0xA6, 0x42), 0x7E8), PidRequest((0x0D,)), PidRequest((0x05,))]
    sent = client.requests
    for _ in range(5):
        values = client.read_pids([0x0C, 0x0D, 0x05, 0xA6, 0x42])
        assert set(values[0x7E8]) == {0x0C, 0x0D, 0x05, 0xA6, 0x42}
        assert values[0x7E9] == {0x0D: b"\x32", 0x05: bytes([120])}
    assert client.ecus[0x7E9].negative.get(0x12, 0) == refusals  # never asked for several PIDs again
    assert client.stale_replies == 0
    assert client.requests - sent == 5 * 3  # instead of 5 × 5 single-PID requests


def test_a_refusing_ecu_that_has_none_of_the_pids_sees_no_multi_pid_request(
    emulate: Emulate, bus_factory: BusFactory
) -> None:
    """Only the engine ECU has 0x0C and 0xA6; the refusing transmission ECU must not get them in a
    functional multi-PID request, which it would refuse (NRC 0x12), perhaps after the deadline."""
    from edge.sources.obd.client import PidRequest

    emulate(demo_vehicle())
    client = client_on(bus_factory)
    client.discover()
    refusals = client.ecus[0x7E9].negative.get(0x12, 0)
    assert client.plan([0x0C, 0xA6]) == [PidRequest((0x0C, 0xA6), 0x7E8)]
    for _ in range(3):
        values = client.read_pids([0x0C, 0xA6])
        assert set(values[0x7E8]) == {0x0C, 0xA6} and 0x7E9 not in values
    assert client.ecus[0x7E9].negative.get(0x12, 0) == refusals
    assert client.stale_replies == 0


def test_a_silent_ecu_gets_no_physical_requests_to_wait_for(
    emulate: Emulate, bus_factory: BusFactory
) -> None:
    from edge.sources.obd.client import PidRequest

    emulate(demo_vehicle())
    client = client_on(bus_factory)
    client.discover()
    pids = [0x0C, 0x0D, 0x05]
    client.ecus[0x7E8].consecutive_timeouts = 3  # the multi-PID ECU went silent: singles for all
    assert client.plan(pids) == [PidRequest((0x0C,)), PidRequest((0x0D,)), PidRequest((0x05,))]
    client.ecus[0x7E8].consecutive_timeouts = 0
    client.ecus[0x7E9].consecutive_timeouts = 3  # the refusing ECU went silent: one multi-PID request
    assert client.plan(pids) == [PidRequest((0x0C, 0x0D, 0x05))]
    timeouts = client.ecus[0x7E9].timeouts
    values = client.read_pids(pids)
    assert set(values[0x7E8]) == {0x0C, 0x0D, 0x05}
    assert client.ecus[0x7E9].timeouts == timeouts  # not waited for, so no timeout against it


def test_primary_only_asks_each_pid_of_one_ecu_and_falls_back_when_it_goes_silent(
    emulate: Emulate, bus_factory: BusFactory
) -> None:
    """The source's policy: one value per PID per poll, from the lowest live response id that has it."""
    from edge.sources.obd.client import PidRequest

    emulate(demo_vehicle())
    client = client_on(bus_factory, primary_only=True)
    client.discover()
    pids = [0x0C, 0x0D, 0x05, 0xA6, 0x42]
    assert client.plan(pids) == [PidRequest((0x0C, 0x0D, 0x05, 0xA6, 0x42), 0x7E8)]
    sent = client.requests
    values = client.read_pids(pids)
    assert values == {0x7E8: {0x0C: b"\x1a\xf8", 0x0D: b"\x32", 0x05: bytes([128]),
                              0xA6: bytes.fromhex("0012D687"), 0x42: values[0x7E8][0x42]}}
    assert client.requests - sent == 1  # instead of 3 when every ECU answers
    # The engine ECU goes silent: the transmission (single-PID only) takes over what it has; the
    # rest is asked functionally, so an answer from the engine brings it back — one PID per
    # request, as the live transmission ECU refuses multi-PID requests.
    client.ecus[0x7E8].consecutive_timeouts = 3
    assert client.plan(pids) == [PidRequest((0x0C,)), PidRequest((0x0D,), 0x7E9), PidRequest((0x05,), 0x7E9),
                                 PidRequest((0xA6,)), PidRequest((0x42,))]
    client.ecus[0x7E8].consecutive_timeouts = 0
    assert client.stale_replies == 0


def test_the_obd_source_reads_each_pid_from_its_primary_ecu_unless_told_all(
    channel: str, emulate: Emulate
) -> None:
    emulate(demo_vehicle())
    for ecus, polled in (("primary", {0x7E8}), ("all", {0x7E8, 0x7E9})):
        source = build_source({"kind": "obd", "interface": "virtual", "channel": channel, "ecus": ecus,
                               "read_vin": False, "poll_supported": False,
                               "pids": [{"pid": 0x0D, "period_s": 0.05}]})
        assert isinstance(source, ObdSource)
        sink = Collect()
        runner = SourceRunner(source, sink)
        samples = sink.samples
        run_until(runner, lambda: len(samples) >= 1)  # noqa: B023 - discovery and the first DTC read done
        assert source.client is not None
        after_start = {e: s.replies for e, s in source.client.ecus.items()}
        run_until(runner, lambda: len(samples) >= 12)  # noqa: B023 - called before the loop moves on
        answered = {e for e, s in source.client.ecus.items() if s.replies > after_start.get(e, 0)}
        assert answered == polled
        assert len(sink.by_path()["Vehicle.Speed"]) >= 6
        runner.stop()
    with pytest.raises(ConfigError, match='ecus must be "primary" or "all"'):
        build_source({"kind": "obd", "interface": "virtual", "channel": channel, "ecus": "both"})


def test_mode_09_beyond_the_vin_is_read_from_the_ecus_that_support_it(
    emulate: Emulate, bus_factory: BusFactory, channel: str
) -> None:
    emulate(demo_vehicle())
    client = client_on(bus_factory)
    client.discover()
    info = client.read_vehicle_info()
    assert set(info) == {0x7E8}  # the transmission answers no 09 00: it is asked nothing more
    engine = info[0x7E8]
    assert engine[0x04].texts == ("EMS-CAL-0001",) and engine[0x06].texts == ("1A2B3C4D",)
    assert engine[0x0A].texts == ("ECM-EngineControl",)
    assert engine[0x08].counters["OBDCOND"] == 120 and engine[0x08].counters["CATCOND1"] == 110
    source = build_source({"kind": "obd", "interface": "virtual", "channel": channel,
                           "poll_supported": False})
    assert isinstance(source, ObdSource)
    runner = SourceRunner(source, Collect())
    run_until(runner, lambda: source.diagnostics is not None)
    runner.stop()
    diagnostics = source.diagnostics
    assert diagnostics is not None and diagnostics.vin == "WVWZZZ1KZAW000001"
    assert diagnostics.calibration_ids == {"0x7E8": ("EMS-CAL-0001",)}
    assert diagnostics.ecu_names == {"0x7E8": "ECM-EngineControl"}
    assert diagnostics.in_use_counters["0x7E8"]["IGNCNTR"] == 480
