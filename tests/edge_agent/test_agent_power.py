"""The agent's heartbeat, status file and `lienwatch edge status` carry the power state."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from edge.agent.config import load_config
from edge.agent.runtime import Agent
from edge.sources.base import Sample
from hil.services import MosquittoBroker
from lienwatch.cli import main
from lienwatch.clock import ManualClock
from protocol import decode, encode
from protocol.catalog import default_catalog
from protocol.messages import PowerState, Status
from protocol.signing import generate_key
from tests.edge_agent.conftest import Pki
from tests.edge_agent.test_agent import write_config

CATALOG = default_catalog()
STATE = CATALOG.id_of("Vehicle.LowVoltageSystemState")
SUPPLY = CATALOG.id_of("Vehicle.LowVoltageBattery.CurrentVoltage")


def test_heartbeat_and_status_carry_power_state_forecast_and_draw(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    config = load_config(write_config(tmp_path, pki, tls_broker, generate_key()))
    clock = ManualClock()
    agent = Agent(config, clock=clock, sources=[], detectors=[])
    try:
        assert agent.heartbeat().power_state is PowerState.UNKNOWN
        agent.inbox.put(Sample(clock.monotonic_ns(), STATE, 2.0))  # ignition OFF
        agent.inbox.put(Sample(clock.monotonic_ns(), SUPPLY, 12.45))
        agent.step()
        heartbeat = agent.heartbeat()
        assert heartbeat.power_state is PowerState.IDLE  # PARKED_WATCH
        assert heartbeat.energy_forecast_days is not None and heartbeat.energy_forecast_days > 90
        assert heartbeat.avg_current_ma is not None and heartbeat.avg_current_ma > 1
        back = decode(encode(heartbeat))
        assert isinstance(back, Status) and back.power_state is PowerState.IDLE
        for _ in range(400):  # past the watch hour
            clock.advance(10)
            agent.step()
        assert agent.heartbeat().power_state is PowerState.DEEP_SLEEP  # the planned SoC-off sleep
        agent.inbox.put(Sample(clock.monotonic_ns(), STATE, 4.0))  # ignition ON
        clock.advance(10)
        agent.step()
        assert agent.heartbeat().power_state is PowerState.ACTIVE
        power = agent.status()["power"]
        assert power["state"] == "driving" and power["ledger"]["spent_mah"] > 0
        agent._write_status_file()
        out = io.StringIO()
        with redirect_stdout(out):
            main(["edge", "status", "--status-file", str(config["agent.status_file"])])
        assert "power      driving (ACTIVE)" in out.getvalue() and "days parked" in out.getvalue()
    finally:
        agent.shutdown(flush_timeout_s=0)


@pytest.mark.parametrize("power", [{"avg_current_ma": "3 mA"}, {"forecast_days": True}, {"ledger": []},
                                   {"soc_pct": None}, "on", {"ledger": {"spent_mah": "x"}}])
def test_a_status_file_with_a_garbled_power_section_exits_2(
        tmp_path: Path, power: object, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"written_ns": 0, "power": power}))
    assert main(["edge", "status", "--status-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "StatusFileError" in err and "power" in err and err.count("\n") == 1
