"""The integrator tools through lienwatch.cli.main, on the shipped examples and on garbage."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import can
import pytest

from edge.sources.can_bus import open_bus
from edge.sources.obd.client import ObdClient
from hil.ecu import EcuEmulator, demo_vehicle
from lienwatch.cli import main
from lienwatch.clock import SystemClock

from .conftest import EXAMPLES, REPO

Capsys = pytest.CaptureFixture[str]


def test_obd_decode_example_from_the_issue(capsys: Capsys) -> None:
    assert main(["obd", "decode", "41", "0C", "1A", "F8"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "pid": "0x0C",
        "name": "engine_rpm",
        "vss": "Vehicle.Powertrain.CombustionEngine.Speed",
        "value": 1726.0,
        "unit": "rpm",
    }


def test_obd_decode_every_shipped_example(capsys: Capsys) -> None:
    lines = [line for line in (EXAMPLES / "obd_responses.txt").read_text().splitlines() if line[:1].isalnum()]
    for line in lines:
        assert main(["obd", "decode", *line.split()]) == 0, line
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_pid = {o["pid"]: o for o in out if "pid" in o}
    assert by_pid["0xA6"]["value"] == 123_456_700.0 and by_pid["0xA6"]["unit"] == "m"
    assert by_pid["0x42"]["value"] == pytest.approx(14.2)
    assert {"service": "0x03", "dtcs": ["P0143", "P0300"]} in out
    assert {"service": "0x07", "dtcs": ["P0300", "U0100"]} in out
    assert {"service": "0x09", "vin": "WVWZZZ1KZAW000001"} in out
    assert {"service": "0x01", "nrc": "0x12", "meaning": "subFunctionNotSupported"} in out


@pytest.mark.parametrize(
    "words",
    [
        ["zz"],
        ["41", "0C", "1A"],
        ["41"],
        ["12", "34"],
        ["41", "FF", "00"],
        ["0x"],
        ["43", "05", "01"],
        ["7F"],
        ["41", "00", "BE", "1F", "A8", "13"],
    ],
)
def test_obd_decode_garbage_exits_2_with_one_line(words: list[str], capsys: Capsys) -> None:
    assert main(["obd", "decode", *words]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("lienwatch: ObdDecodeError: ")


def test_gnss_parse_the_quirky_example(capsys: Capsys) -> None:
    assert main(["gnss", "parse", str(EXAMPLES / "drive_quirks.nmea")]) == 0
    captured = capsys.readouterr()
    epochs = [json.loads(line) for line in captured.out.splitlines()]
    assert len(epochs) == 12
    assert set(epochs[0]) == {"time", "lat", "lon", "alt_m", "speed_kmh", "course_deg", "fix", "sats", "hdop"}
    assert epochs[0]["time"] == "2026-03-14T09:27:25Z"
    assert {e["fix"] for e in epochs} == {"3d", "dgps", "rtk_fixed", "rtk_float", "dead_reckoning", "none"}
    assert "checksum" in captured.err and "truncated" in captured.err and "proprietary" in captured.err


def test_gnss_parse_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    import io

    data = (EXAMPLES / "drive_clean.nmea").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["gnss", "parse", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


@pytest.mark.parametrize("content", [b"", b"\x00\xff" * 5000, b"hello world\n" * 10, bytes(range(256)) * 40])
def test_gnss_parse_garbage_exits_2(tmp_path: Path, content: bytes, capsys: Capsys) -> None:
    path = tmp_path / "junk.nmea"
    path.write_bytes(content)
    assert main(["gnss", "parse", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lienwatch: NmeaInputError:" in err and "Traceback" not in err


def test_gnss_parse_unreadable_file_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["gnss", "parse", str(tmp_path / "missing.nmea")]) == 2
    assert main(["gnss", "parse", str(tmp_path)]) == 2  # a directory
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("lienwatch: NmeaInputError: cannot read") for line in err)


def test_edge_probe_against_the_emulated_vehicle(
    channel: str, bus_factory: Callable[[], can.BusABC], capsys: Capsys
) -> None:
    with EcuEmulator(bus_factory(), demo_vehicle()):
        code = main(["edge", "probe", "--interface", "virtual", "--channel", channel, "--timeout", "0.6"])
    out = capsys.readouterr().out
    assert code == 0
    header, engine, transmission = out.splitlines()[:3]
    assert header.split()[:2] == ["ECU", "multi-PID"]
    assert engine.startswith("0x7E8") and "WVWZZZ1KZAW000001" in engine and "0C 0D" in engine
    assert transmission.startswith("0x7E9") and "no (NRC 0x12)" in transmission and "05 0D" in transmission
    assert "engine_rpm" in out and "1,726 rpm" in out  # lienwatch.fmt.number: thousands separated


def test_edge_probe_with_no_car_and_with_a_bad_interface(channel: str, capsys: Capsys) -> None:
    assert main(["edge", "probe", "--interface", "virtual", "--channel", channel, "--timeout", "0.02"]) == 1
    assert "no ECU answered" in capsys.readouterr().err
    assert main(["edge", "probe", "--interface", "socketcan", "--channel", "can0"]) == 2  # no SocketCAN here
    assert main(["edge", "probe", "--interface", "udp_multicast", "--channel", "239.74.163.2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("lienwatch: SourceError: cannot open CAN socketcan:can0")
    assert "would leave this machine" in err[1]


def test_obd_across_processes_over_udp_multicast_ff11(capsys: Capsys) -> None:
    """The HIL ECU emulator in its own process, the client and `edge probe --port` here, on an
    interface-local IPv6 group and a port of its own."""
    rng = random.Random()
    group = f"ff11::1:2:{rng.randrange(1, 0xFFFF):x}"
    port = rng.randrange(40000, 60000)
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil.ecu",
            "--interface",
            "udp_multicast",
            "--channel",
            group,
            "--port",
            str(port),
            "--seconds",
            "30",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        assert emulator.stdout.readline().strip() == "ready", (
            emulator.stderr.read() if emulator.stderr else ""
        )
        bus = open_bus("udp_multicast", group, port=port)
        try:
            client = ObdClient(bus, SystemClock(), timeout_s=0.3)
            deadline = time.monotonic() + 5
            while not client.discover() and time.monotonic() < deadline:
                pass
            assert {0x7E8, 0x7E9} <= set(client.ecus)
            assert client.read_vin()[0x7E8] == "WVWZZZ1KZAW000001"  # multi-frame with flow control across
            assert client.read_pids([0x0C])[0x7E8] == {0x0C: b"\x1a\xf8"}
        finally:
            bus.shutdown()
        probe = ["edge", "probe", "--interface", "udp_multicast", "--channel", group, "--timeout", "0.3"]
        assert main([*probe, "--port", str(port)]) == 0
        assert "WVWZZZ1KZAW000001" in capsys.readouterr().out
    finally:
        emulator.terminate()
        emulator.wait(10)


def test_obd_decode_list_names_every_field_and_its_vss_path(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.sources.obd.pids import all_fields

    assert main(["obd", "decode", "--list"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == len(all_fields()) and {o["pid"] for o in out} >= {"0x01", "0x5B", "0xA6"}
    assert {"pid": "0x5A", "name": "relative_accelerator_position",
            "vss": "Vehicle.Chassis.Accelerator.PedalPosition", "unit": "percent"} in out
    assert main(["obd", "decode", "41", "51", "08", "1E", "01"]) == 0
    fuel, pto = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert fuel["text"] == "electric"
    assert pto == {"pid": "0x1E", "name": "pto_active", "vss": "Vehicle.OBD.IsPTOActive", "value": 1.0,
                   "unit": "bool"}
