"""The `uds` source (UDS ReadDataByIdentifier per a DID table) against the HIL ECU emulator over
real ISO-TP on an interface-local udp_multicast group, and DID tables that are garbage."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.base import HealthState, SourceRunner
from edge.sources.can_bus import open_bus
from edge.sources.obd.client import NegativeResponse
from edge.sources.registry import build_source
from edge.sources.uds.didtable import load_table, parse_table
from edge.sources.uds.source import UdsConfig, UdsSource
from hil.ecu import EcuEmulator, EmulatedEcu, demo_bms
from lienwatch.clock import SystemClock
from lienwatch.errors import ConfigError

from .conftest import Collect

BMS_STATE = {
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": 76.5,
    "Vehicle.Powertrain.TractionBattery.StateOfHealth": 93.2,
    "Vehicle.Powertrain.TractionBattery.Temperature.Average": 24.0,
    "Vehicle.Powertrain.TractionBattery.CurrentCurrent": -12.3,
    "Vehicle.Powertrain.TractionBattery.ChargeCycles": 412.0,
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Min": 3.912,
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Max": 3.958,
}


@pytest.fixture
def multicast() -> Iterator[tuple[str, int]]:
    rng = random.Random()
    yield f"ff11::7:{rng.randrange(1, 0xFFFF):x}:{rng.randrange(1, 0xFFFF):x}", rng.randrange(40000, 60000)


def _emulate(multicast: tuple[str, int], ecu: EmulatedEcu) -> EcuEmulator:
    group, port = multicast
    return EcuEmulator(open_bus("udp_multicast", group, port=port), [ecu]).start()


def _source(multicast: tuple[str, int], **kwargs: object) -> UdsSource:
    group, port = multicast
    config = UdsConfig(table=load_table("example-bev"), interface="udp_multicast", channel=group, port=port,
                       timeout_s=0.2)
    return UdsSource("uds", SystemClock(), replace(config, **kwargs))  # type: ignore[arg-type]


def _run(source: UdsSource, until: int, max_s: float = 5.0) -> tuple[SourceRunner, Collect]:
    sink = Collect()
    runner = SourceRunner(source, sink)
    deadline = time.monotonic() + max_s
    while len(sink.samples) < until and time.monotonic() < deadline:
        time.sleep(min(runner.step(), 0.01))
    return runner, sink


def test_the_example_table_is_read_over_isotp_multi_frame_included(multicast: tuple[str, int]) -> None:
    emulator = _emulate(multicast, demo_bms(BMS_STATE))
    try:
        runner, sink = _run(_source(multicast), until=7)
        state = runner.source.health.state
        runner.stop()
    finally:
        emulator.stop()
        emulator.bus.shutdown()
    values = {path: vs[0] for path, vs in sink.by_path().items()}
    assert values.keys() == BMS_STATE.keys()
    for path, expected in BMS_STATE.items():
        assert values[path] == pytest.approx(expected, abs=1e-9), path
    assert state is HealthState.OK


def test_response_pending_extends_the_wait_like_the_obd_client(multicast: tuple[str, int]) -> None:
    ecu = replace(demo_bms(BMS_STATE), pending_first=True, delay_s=0.5)  # 0.5 s > timeout_s 0.2
    emulator = _emulate(multicast, ecu)
    try:
        source = _source(multicast, pending_timeout_s=2.0)
        runner, sink = _run(source, until=7, max_s=8.0)
        state = source.health.state
        runner.stop()
    finally:
        emulator.stop()
        emulator.bus.shutdown()
    assert len(sink.by_path()) == 7
    assert source.client is None or source.client.stats.timeouts == 0
    assert source.health.timeouts == 0 and state is HealthState.OK


def test_a_silent_ecu_times_out_degrades_the_source_and_is_probed_slowly(multicast: tuple[str, int]) -> None:
    emulator = _emulate(multicast, replace(demo_bms(), silent=True))
    try:
        source = _source(multicast, timeout_s=0.05, asleep_probe_s=30.0)
        sink = Collect()
        runner = SourceRunner(source, sink)
        for _ in range(4):
            runner.step()
        assert source.client is not None
        assert source.client.stats.timeouts >= 2 and source.client.stats.silent is (
            source.client.stats.consecutive_timeouts >= 3)
        while source.client.stats.consecutive_timeouts < 3:
            runner.step()
        assert source.health.state is HealthState.DEGRADED and "not answering" in source.health.detail
        requests = source.client.requests
        for _ in range(5):
            runner.step()
        assert source.client.requests == requests  # silent: the next read waits for asleep_probe_s
        emulator.ecus[0].silent = False  # the ECU wakes up; the next probe would bring it back
        runner.stop()
    finally:
        emulator.stop()
        emulator.bus.shutdown()
    assert sink.samples == []


def test_negative_responses_and_short_replies_are_counted_not_taken(multicast: tuple[str, int]) -> None:
    ecu = demo_bms(BMS_STATE)
    ecu.dids = {0x0101: ecu.dids[0x0101][:4]}  # 0x0102 unknown → NRC 0x31; 0x0101 too short
    emulator = _emulate(multicast, ecu)
    try:
        source = _source(multicast)
        sink = Collect()
        runner = SourceRunner(source, sink)
        deadline = time.monotonic() + 5
        while not source.health.counters.get("nrc_0x31") and time.monotonic() < deadline:
            time.sleep(min(runner.step(), 0.01))
        runner.step()
        state, detail = source.health.state, source.health.detail
        runner.stop()
    finally:
        emulator.stop()
        emulator.bus.shutdown()
    assert source.health.counters["nrc_0x31"] >= 1
    assert source.health.counters["short_replies"] >= 1
    assert sink.samples == []
    assert state is HealthState.DEGRADED
    assert "DID 0x0102: NRC 0x31" in detail and "DID 0x0101: 4 bytes, the table needs 10" in detail


def test_the_emulator_answers_read_data_by_identifier() -> None:
    ecu = EmulatedEcu(index=4, obd=False, dids={0x0101: b"\x01\x02", 0xF190: b"VIN"})
    assert ecu.answer(bytes.fromhex("220101")) == [bytes.fromhex("6201010102")]
    assert ecu.answer(bytes.fromhex("220101F190")) == [bytes.fromhex("6201010102F190") + b"VIN"]
    assert ecu.answer(bytes.fromhex("220202")) == [bytes.fromhex("7F2231")]
    assert ecu.answer(bytes.fromhex("2201")) == [bytes.fromhex("7F2213")]
    assert ecu.answer(bytes.fromhex("0100")) == []  # a UDS-only ECU says nothing to J1979
    assert NegativeResponse(0x22, 0x31) == NegativeResponse(0x22, 0x31)


def test_the_uds_source_is_built_from_config_and_refuses_bad_options() -> None:
    source = build_source({"kind": "uds", "interface": "virtual", "channel": "uds-cfg",
                           "table": "example-bev"})
    assert isinstance(source, UdsSource) and source.config.table.response_id == 0x7EC
    with pytest.raises(ConfigError, match="table is required"):
        build_source({"kind": "uds", "interface": "virtual", "channel": "uds-cfg"})
    with pytest.raises(ConfigError, match="cannot read DID table"):
        build_source({"kind": "uds", "interface": "virtual", "channel": "x", "table": "/nonexistent.toml"})
    with pytest.raises(ConfigError, match="timeout_s must be > 0"):
        build_source({"kind": "uds", "interface": "virtual", "channel": "x", "table": "example-bev",
                      "timeout_s": 0.0})


GOOD = """model = "M"
request_id = 0x7E4
response_id = 0x7EC
[[signal]]
did = 0x0101
vss = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
start = 0
size = 2
scale = 0.1
"""


@pytest.mark.parametrize(("text", "message"), [
    ("model = ", "not valid TOML"),
    (GOOD.replace('model = "M"\n', ""), "model is required"),
    (GOOD.replace("0x7E4", "0x800"), "11-bit CAN id"),
    (GOOD.replace("0x7E4", "0x7EC"), "must differ"),
    (GOOD.replace("0x7E4", '"0x7E4"'), "must be an integer"),
    (GOOD.replace("did = 0x0101", "did = 0x10000"), "0..0xFFFF"),
    (GOOD.replace("StateOfHealth", "StateOfWealth"), "not a signal of catalog"),
    (GOOD.replace("size = 2", "size = 9"), "size 1..8"),
    (GOOD.replace("scale = 0.1", "scale = 0"), "scale must not be 0"),
    (GOOD.replace("scale = 0.1", "scale = nan"), "must be finite"),
    (GOOD.replace("scale = 0.1", "colour = 3"), "unknown key"),
    (GOOD + "bogus = 1\n", "unknown key"),
    (GOOD.split("[[signal]]")[0], "at least one"),
    (GOOD + GOOD.split("\n", 3)[3], "twice"),
    (GOOD.replace("start = 0", "period_s = -1\nstart = 0"), "period_s must be > 0"),
])
def test_bad_did_tables_are_config_errors_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_table(text, "t.toml")


def test_the_table_decodes_and_encodes_each_signal() -> None:
    table = parse_table(GOOD)
    (signal,) = table.signals
    assert table.encode(0x0101, {signal.field.vss: 93.2}) == bytes.fromhex("03A4")
    assert signal.field.value(bytes.fromhex("03A4")) == pytest.approx(93.2)
    assert table.period_of(0x0101) == 10.0 and table.data_length(0x0101) == 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_is_a_table_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_table(text)
