"""Commands through the real broker: signed, published to the device's topic, followed from
pending to sent to acknowledged / failed / expired; roles, validation, a broker that is away."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api import commands as command_service
from cloud.api.app import create_app
from cloud.api.config import parse_config
from cloud.api.keys import create_key
from cloud.store.db import connect
from hil.services import MosquittoBroker, free_port
from lienwatch.clock import ManualClock
from protocol import codec
from protocol.messages import RequestPosition, SetGeofence, SignedCommand
from protocol.signing import ReplayCache, generate_key, private_key_to_pem, verify_command
from protocol.topics import command_topic
from tests.cloud.api.conftest import NOW_NS, ROLES, Api, S, ack, register, store
from tests.cloud.api.test_app import is_problem

KEY = generate_key()


class Device:
    """A subscriber on one device's command topic (what the agent's uplink does)."""

    def __init__(self, port: int, device_id: str) -> None:
        self.received: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(command_topic(device_id), qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.received.put(bytes(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def next(self) -> SignedCommand:
        message = codec.decode(self.received.get(timeout=10))
        assert isinstance(message, SignedCommand)
        return message

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def app_config(dsn: str, key_file: Path, port: int, **api: Any) -> Any:
    return parse_config({"database": {"dsn": dsn},
                         "api": {"command_signing_key_file": str(key_file), "publish_timeout_s": 2.0, **api},
                         "mqtt": {"host": "127.0.0.1", "port": port, "insecure_plaintext": True,
                                  "client_id": f"api-{port}-{NOW_NS % 10**6}"}})


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "command-key.pem"
    path.write_bytes(private_key_to_pem(KEY))
    return path


@pytest.fixture
def live(migrated_db: str, mosquitto: MosquittoBroker, key_file: Path) -> Iterator[Api]:
    clock = ManualClock(wall_ns=NOW_NS)
    app = create_app(app_config(migrated_db, key_file, mosquitto.port), clock=clock)
    with connect(migrated_db) as conn, TestClient(app) as client:
        harness = Api(client, clock, conn, migrated_db)
        for role in ROLES:
            _, harness.tokens[role] = create_key(conn, f"{role.replace('_', '-')}-1", role)
        register(conn, "veh-c", assign_to="account-manager-1")
        register(conn, "veh-d")
        yield harness


def test_a_command_is_signed_published_and_followed_to_its_ack(live: Api, mosquitto: MosquittoBroker) -> None:
    device = Device(mosquitto.port, "veh-c")
    try:
        made = live.post("/devices/veh-c/commands", json={
            "action": "set_geofence", "params": {"geofence_id": 7, "lat_deg": 52.5, "lon_deg": 13.4,
                                                 "radius_m": 500}})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["state"] == "sent" and body["phase"] == "sent" and body["created_by"] == "risk-officer-1"
        signed = device.next()
    finally:
        device.close()
    command = verify_command(signed, [KEY.public_key()], device_id="veh-c", now_ns=NOW_NS,
                             replay_cache=ReplayCache())
    assert isinstance(command.action, SetGeofence) and command.action.geofence.radius_m == pytest.approx(500)
    assert command.expires_ns - command.issued_ns == 3600 * S  # api.command_ttl_s
    store(live.conn, [ack("veh-c", 1, NOW_NS + S, command.nonce)])
    got = live.get(f"/devices/veh-c/commands/{body['command_id']}").json()
    assert got["state"] == "done" and got["phase"] == "acknowledged" and got["acked_at"]


def test_a_failed_ack_and_expiry(live: Api, mosquitto: MosquittoBroker) -> None:
    device = Device(mosquitto.port, "veh-d")
    try:
        failing = live.post("/devices/veh-d/commands", json={"action": "reboot"}).json()
        nonce = device.next().command.nonce
        short = live.post("/devices/veh-d/commands", json={"action": "request_position", "ttl_s": 10}).json()
        device.next()
    finally:
        device.close()
    store(live.conn, [ack("veh-d", 1, NOW_NS + S, nonce, ok=False)])
    live.clock.advance(11)
    listed = {c["command_id"]: c["phase"] for c in live.get("/devices/veh-d/commands").json()["items"]}
    assert listed == {failing["command_id"]: "failed", short["command_id"]: "expired"}


def test_pages_of_a_devices_commands(live: Api) -> None:
    for _ in range(5):
        assert live.post("/devices/veh-d/commands", json={"action": "request_position"}).status_code == 201
        live.clock.advance(1)
    page = live.get("/devices/veh-d/commands", params={"limit": 2}).json()
    seen = [c["command_id"] for c in page["items"]]
    while page["next_cursor"]:
        page = live.get("/devices/veh-d/commands", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [c["command_id"] for c in page["items"]]
    assert len(seen) == len(set(seen)) == 5


def test_roles_and_validation(live: Api) -> None:
    ok = live.post("/devices/veh-c/commands", role="account_manager", json={"action": "request_position"})
    assert ok.status_code == 201
    is_problem(live.post("/devices/veh-c/commands", role="account_manager", json={"action": "reboot"}), 403)
    is_problem(live.post("/devices/veh-d/commands", role="account_manager",
                         json={"action": "request_position"}), 403)
    is_problem(live.post("/devices/veh-c/commands", role="auditor", json={"action": "request_position"}), 403)
    refused = [(r["action"], r["user_name"]) for r in live.audit_rows(allowed=False)]
    assert refused == [("command.create", "account-manager-1"), ("command.create", "account-manager-1"),
                       ("commands", "auditor-1")]
    for bad in ({"action": "self_destruct"}, {"action": "start_diagnostic_session", "params": {}},
                {"action": "start_diagnostic_session", "params": {"duration_s": 0}},
                {"action": "reboot", "params": {"force": True}}, {"action": "reboot", "ttl_s": 8 * 86400},
                {"action": "set_geofence", "params": {"geofence_id": 1, "lat_deg": 95, "lon_deg": 0,
                                                       "radius_m": 10}}):
        is_problem(live.post("/devices/veh-c/commands", json=bad), 422)
    is_problem(live.post("/devices/veh-zz/commands", json={"action": "reboot"}), 404)
    is_problem(live.get("/devices/veh-c/commands/cmd_0000000000000000"), 404)
    is_problem(live.get("/devices/veh-c/commands/nope"), 422)
    assert live.conn.execute("SELECT count(*) FROM commands").fetchone() == (1,)


def test_without_a_broker_a_command_stays_pending_and_is_sent_later(
        migrated_db: str, key_file: Path, broker_factory: Any) -> None:
    port = free_port()
    clock = ManualClock(wall_ns=NOW_NS)
    app = create_app(app_config(migrated_db, key_file, port, publish_timeout_s=0.3), clock=clock)
    with connect(migrated_db) as conn, TestClient(app) as client:
        _, token = create_key(conn, "ro", "risk_officer")
        register(conn, "veh-p")
        made = client.post("/devices/veh-p/commands", json={"action": "request_position"},
                           headers={"Authorization": f"Bearer {token}"})
        assert made.status_code == 201 and made.json()["state"] == "pending"
        broker = broker_factory(port=port)
        device = Device(broker.port, "veh-p")
        try:
            state = app.state.lienwatch
            assert state.publisher.connected.wait(15)
            assert command_service.sweep(state, conn) == (0, 1)
            assert isinstance(device.next().command.action, RequestPosition)
        finally:
            device.close()
        row = conn.execute("SELECT state FROM commands").fetchone()
        assert row == ("sent",)


def test_no_signing_key_means_no_commands(api: Api) -> None:
    register(api.conn, "veh-n")
    body = is_problem(api.post("/devices/veh-n/commands", json={"action": "reboot"}), 503)
    assert "command_signing_key_file" in body["detail"]
