"""Passive CAN signals: the HIL DBC + manifest, decoded from a real virtual bus."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from edge.sources.base import HealthState, SourceRunner
from edge.sources.dbc import DbcDecoder, DbcSource, load_manifest
from edge.sources.registry import SourceContext, build_source
from lienwatch.clock import ManualClock, SystemClock
from lienwatch.errors import ConfigError

from .conftest import REPO, Collect

MANIFEST = REPO / "hil" / "vehicle_manifest.toml"
DB: Any = cantools.database.load_file(str(REPO / "hil" / "vehicle.dbc"))


def frame(message: str, **signals: float) -> can.Message:
    msg = DB.get_message_by_name(message)
    return can.Message(arbitration_id=msg.frame_id, data=msg.encode(signals), is_extended_id=False)


def test_manifest_maps_every_signal_the_issue_names() -> None:
    manifest = load_manifest(MANIFEST)
    from protocol.catalog import default_catalog

    paths = {default_catalog().by_id(m.signal_id).path for maps in manifest.by_frame.values() for m in maps}
    assert {
        "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen",
        "Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen",
        "Vehicle.LowVoltageSystemState",
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
        "Vehicle.Powertrain.TractionBattery.StateOfHealth",
        "Vehicle.Powertrain.TractionBattery.CellVoltage.Min",
        "Vehicle.Powertrain.TractionBattery.CellVoltage.Max",
        "Vehicle.Powertrain.TractionBattery.CurrentCurrent",
        "Vehicle.Powertrain.TractionBattery.Temperature.Average",
    } <= paths


def test_decoder_scales_maps_enums_and_rejects_unmapped_values() -> None:
    decoder = DbcDecoder(load_manifest(MANIFEST))
    from protocol.catalog import default_catalog

    path = {s.id: s.path for s in default_catalog().signals}
    doors = dict(
        decoder.decode(
            frame(
                "BodyDoors",
                DoorFrontLeftOpen=1,
                DoorFrontRightOpen=0,
                DoorRearLeftOpen=0,
                DoorRearRightOpen=1,
                HoodOpen=0,
                TrunkOpen=1,
            )
        )
    )
    assert {path[k]: v for k, v in doors.items()}["Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen"] == 1.0
    bms = {
        path[k]: v
        for k, v in decoder.decode(
            frame("BMS_Status", StateOfCharge=81.3, StateOfHealth=96.5, PackCurrent=-12.4, PackTemperature=27)
        )
    }
    assert bms["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"] == pytest.approx(81.3)
    assert bms["Vehicle.Powertrain.TractionBattery.CurrentCurrent"] == pytest.approx(-12.4)
    assert bms["Vehicle.Powertrain.TractionBattery.Temperature.Average"] == 27.0
    state = decoder.decode(frame("PowerMode", PowerMode=3))  # DBC ON → catalog ON (4)
    assert [(path[k], v) for k, v in state] == [("Vehicle.LowVoltageSystemState", 4.0)]
    assert decoder.decode(can.Message(arbitration_id=960, data=b"\x07", is_extended_id=False)) == []
    assert decoder.rejected == 1  # raw 7 has no catalog value: counted, not passed through
    assert decoder.decode(can.Message(arbitration_id=1184, data=b"\x01", is_extended_id=False)) == []
    assert decoder.rejected == 2  # too short for BMS_Status
    assert decoder.decode(can.Message(arbitration_id=0x555, data=b"\x01", is_extended_id=False)) == []
    assert decoder.ignored == 1


def test_dbc_source_on_a_virtual_bus_survives_random_frames(
    channel: str, bus_factory: Callable[[], can.BusABC]
) -> None:
    source = build_source(
        {"kind": "dbc", "manifest": str(MANIFEST), "interface": "virtual", "channel": channel},
        SourceContext(clock=SystemClock()),
    )
    assert isinstance(source, DbcSource)
    sink = Collect()
    runner = SourceRunner(source, sink)
    runner.step()  # open
    car = bus_factory()
    rng = random.Random(11)
    for _ in range(300):
        arbitration_id = rng.choice([944, 960, 1184, 1185, rng.randrange(0x800)])
        car.send(
            can.Message(
                arbitration_id=arbitration_id,
                data=bytes(rng.randrange(256) for _ in range(rng.randrange(9))),
                is_extended_id=False,
            )
        )
    car.send(frame("BMS_Cells", CellVoltageMin=3.512, CellVoltageMax=3.604, PackVoltage=388.2))
    car.send(frame("PowerMode", PowerMode=1))
    for _ in range(5):
        runner.step()
    by_path = sink.by_path()
    assert by_path["Vehicle.Powertrain.TractionBattery.CellVoltage.Min"][-1] == pytest.approx(3.512)
    assert by_path["Vehicle.Powertrain.TractionBattery.CellVoltage.Max"][-1] == pytest.approx(3.604)
    assert by_path["Vehicle.LowVoltageSystemState"][-1] == 2.0  # OFF
    assert source.health.frames == 302
    assert source.health.errors > 0  # short/unmapped frames counted
    assert source.health.state is HealthState.OK
    runner.stop()


def test_error_frames_and_bus_off_are_reported(channel: str, bus_factory: Callable[[], can.BusABC]) -> None:
    source = DbcSource(
        "dbc", SystemClock(), manifest=load_manifest(MANIFEST), interface="virtual", channel=channel
    )
    runner = SourceRunner(source, Collect())
    runner.step()
    bus = bus_factory()
    bus.send(can.Message(arbitration_id=0x040, is_error_frame=True, data=bytes(8)))  # CAN_ERR_BUSOFF
    runner.step()
    assert source.health.state is HealthState.DEGRADED and source.health.detail == "bus-off"
    assert source.health.counters["bus_off_events"] == 1
    bus.send(frame("PowerMode", PowerMode=3))  # traffic again: the controller recovered
    runner.step()
    assert runner.health().state is HealthState.OK
    for _ in range(20):
        bus.send(can.Message(arbitration_id=0x008, is_error_frame=True, data=bytes(8)))  # protocol errors
    runner.step()
    assert source.health.detail == "error frames on the bus"
    runner.stop()


def test_silent_bus_is_degraded() -> None:
    from edge.sources.can_bus import BusMonitor

    clock = ManualClock()
    monitor = BusMonitor(clock, silent_after_s=2.0)
    assert monitor.status().state is HealthState.OK
    clock.advance(2.0)
    status = monitor.status()
    assert (status.state, status.detail) == (HealthState.DEGRADED, "bus silent")
    monitor.observe(can.Message(arbitration_id=1, data=b""))
    assert monitor.status().state is HealthState.OK


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ('dbc = "missing.dbc"\n[[signal]]\n', "cannot read DBC"),
        ('dbc = "vehicle.dbc"\n', "no \\[\\[signal\\]\\]"),
        (
            'dbc = "vehicle.dbc"\n[[signal]]\nmessage="Nope"\nsignal="x"\nvss="Vehicle.Speed"\n',
            "message 'Nope'",
        ),
        (
            'dbc = "vehicle.dbc"\n[[signal]]\nmessage="PowerMode"\nsignal="x"\nvss="Vehicle.Speed"\n',
            "signal 'x'",
        ),
        (
            'dbc = "vehicle.dbc"\n[[signal]]\nmessage="PowerMode"\nsignal="PowerMode"\nvss="Vehicle.Warp"\n',
            "not in catalog",
        ),
        (
            'dbc = "vehicle.dbc"\n[[signal]]\nmessage="PowerMode"\nsignal="PowerMode"\nvss="Vehicle.Speed"\n'
            "values = { a = 1 }\n",
            "values must map",
        ),
        (
            'dbc = "vehicle.dbc"\n[[signal]]\nmessage="PowerMode"\nsignal="PowerMode"\nvss="Vehicle.Speed"\n'
            "values = { 1 = nan }\n",
            "values must be finite",
        ),
        (
            'dbc = "vehicle.dbc"\n[[signal]]\nmessage="PowerMode"\nsignal="PowerMode"\nvss="Vehicle.Speed"\n'
            "scale = inf\n",
            "scale must be a finite number",
        ),
        ('dbc = "garbage.dbc"\n[[signal]]\n', "does not parse"),
    ],
)
def test_bad_manifests_raise_config_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "vehicle.dbc").write_text((REPO / "hil" / "vehicle.dbc").read_text())
    (tmp_path / "garbage.dbc").write_bytes(b"BO_ 12 \xff\xfe garbage : : ;\n" * 3)
    manifest = tmp_path / "m.toml"
    manifest.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_manifest(manifest)
