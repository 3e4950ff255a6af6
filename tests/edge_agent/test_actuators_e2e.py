"""End to end: API → broker (shipped TLS config, service ACL) → agent → relay file → ack and
events → receiver → database → GET /devices/{id}. Armed mid-drive, it engages only once parked."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.config import parse_config
from cloud.api.keys import create_key
from cloud.config import TlsConfig
from cloud.ingest.receiver import Receiver
from cloud.store.db import Conn, connect
from cloud.store.devices import Device, add_device
from cloud.store.migrate import migrate
from edge.agent.config import load_config
from edge.agent.runtime import Agent
from edge.sources.base import SampleSink, Source
from hil.services import MosquittoBroker
from lienwatch.clock import Clock, SystemClock
from protocol.catalog import default_catalog
from protocol.signing import generate_key, private_key_to_pem
from tests.cloud.helpers import receiver_config
from tests.edge_agent.conftest import DEVICE_A, Pki, wait_until
from tests.edge_agent.test_agent import write_config

pytestmark = pytest.mark.services
CATALOG = default_catalog()


class Car(Source):
    """The vehicle side at 10 Hz: ignition, engine speed, CAN speed, GNSS speed, external power."""

    kind = "test-car"

    def __init__(self, clock: Clock) -> None:
        super().__init__("car", clock)
        self.driving = True
        self._ids = {name: CATALOG.id_of(path) for name, path in (
            ("state", "Vehicle.LowVoltageSystemState"), ("rpm", "Vehicle.Powertrain.CombustionEngine.Speed"),
            ("can", "Vehicle.Speed"), ("gnss", "Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround"),
            ("external", "Vehicle.Telematics.IsExternalPowerConnected"))}

    def open(self) -> None:
        pass

    def poll(self, sink: SampleSink) -> float:
        moving = self.driving
        for name, value in (("state", 4.0 if moving else 2.0), ("rpm", 2100.0 if moving else 0.0),
                            ("can", 54.0 if moving else 0.0), ("gnss", 53.1 if moving else 0.7),
                            ("external", 1.0)):
            self.emit(sink, self._ids[name], value)
        return 0.1

    def close(self) -> None:
        pass


@pytest.fixture
def cloud_db(fresh_db: str) -> str:
    migrate(fresh_db, mode="plain")
    with connect(fresh_db) as conn:
        add_device(conn, Device(device_id=DEVICE_A))
    return fresh_db


def _row(conn: Conn, sql: str, *args: Any) -> Any:
    return conn.execute(sql, args).fetchone()


def test_arm_through_the_api_engages_only_after_parking_and_reaches_the_database(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker, cloud_db: str) -> None:
    service_port = tls_broker.ports[8884]
    signing = generate_key()
    key_file = tmp_path / "command.key"
    key_file.write_bytes(private_key_to_pem(signing))
    services = pki.etc / "pki/services"
    # the receiver, as deployed: the service listener, its own certificate, the shipped ACL
    base = receiver_config(cloud_db, service_port, "lienwatch-ingest", group="e2e")
    tls = TlsConfig(ca_file=str(pki.ca), cert_file=str(services / "lienwatch-ingest.crt"),
                    key_file=str(services / "lienwatch-ingest.key"))
    receiver = Receiver(replace(base, mqtt=replace(base.mqtt, tls=tls, insecure_plaintext=False)))
    receiver.start()
    relay = tmp_path / "gpio17/value"
    relay.parent.mkdir()
    relay.write_text("0\n")
    config = load_config(write_config(
        tmp_path, pki, tls_broker, signing,
        actuators__starter_interrupt={"output": f"sysfs:{relay}", "hold_s": 5.0}))
    car = Car(SystemClock())
    agent = Agent(config, sources=[car], detectors=[])
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    app = create_app(parse_config({
        "database": {"dsn": cloud_db},
        "api": {"command_signing_key_file": str(key_file), "publish_timeout_s": 5.0},
        "mqtt": {"host": "127.0.0.1", "port": service_port, "client_id": "lienwatch-api",
                 "tls": {"ca_file": str(pki.ca), "cert_file": str(services / "lienwatch-api.crt"),
                         "key_file": str(services / "lienwatch-api.key")}}}))
    try:
        thread.start()
        assert wait_until(lambda: agent.link.subscribed, 15), agent.link.last_error
        with connect(cloud_db) as conn, TestClient(app) as client:
            _, token = create_key(conn, "risk-1", "risk_officer")
            auth = {"Authorization": f"Bearer {token}"}

            def send(action: str, reason: str) -> str:
                answer = client.post(f"/devices/{DEVICE_A}/commands", headers=auth,
                                     json={"action": action, "params": {"reason": reason}})
                assert answer.status_code == 201, answer.text
                return str(answer.json()["command_id"])

            def answered(command_id: str) -> tuple[str, str] | None:
                row = _row(conn, "SELECT state, ack_detail FROM commands WHERE command_id = %s", command_id)
                return None if row is None or row[0] in ("pending", "sent") else (row[0], row[1])

            time.sleep(0.5)  # a few readings while driving
            armed = send("arm_starter_interrupt", "contract 7: default notice served")
            assert wait_until(lambda: answered(armed) is not None, 20), "no ack in the database"
            state, detail = answered(armed) or ("", "")
            assert state == "done" and detail.startswith("armed") and "ignition on" in detail
            time.sleep(2.0)  # still driving: never engaged
            assert relay.read_text() == "0\n"
            shown = client.get(f"/devices/{DEVICE_A}", headers=auth).json()["starter_interrupt"]
            car.driving = False  # the driver parks and switches off
            parked_at = time.monotonic()
            assert wait_until(lambda: relay.read_text() == "1\n", 20), agent.status()["actuators"]
            assert time.monotonic() - parked_at >= 5.0  # the hold time, measured from the outside
            assert wait_until(lambda: _row(conn, "SELECT count(*) FROM events WHERE detector = "
                                                 "'starter_interrupt' AND condition = 'engaged'")[0] == 1, 20)
            assert shown["state"] == "ARMED"  # what the API said while the car was driving
            assert wait_until(lambda: client.get(f"/devices/{DEVICE_A}", headers=auth).json()
                              ["starter_interrupt"]["state"] == "ENGAGED", 10)
            shown = client.get(f"/devices/{DEVICE_A}", headers=auth).json()["starter_interrupt"]
            assert shown["evidence"]["ignition_on"] == 0.0 and shown["evidence"]["parked_s"] >= 5.0
            assert shown["last_command"]["reason"] == "contract 7: default notice served"
            audit = _row(conn, "SELECT user_name, detail FROM audit_log WHERE action = "
                               "'command.arm_starter_interrupt'")
            assert audit == ("risk-1", f"{armed}: contract 7: default notice served")
            released = send("release_starter_interrupt", "paid in full")
            assert wait_until(lambda: answered(released) is not None, 20)
            assert answered(released) == ("done", "released (was ENGAGED)")
            assert relay.read_text() == "0\n"
            assert wait_until(lambda: client.get(f"/devices/{DEVICE_A}", headers=auth).json()
                              ["starter_interrupt"]["state"] == "RELEASED", 20)
    finally:
        stop.set()
        thread.join(15)
        receiver.stop()
