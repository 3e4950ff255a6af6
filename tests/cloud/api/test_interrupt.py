"""The API's starter-interrupt and payment-reminder actions: who may send them, the reason, the
audit record, the signed command, and the interrupt state on GET /devices/{id}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.keys import create_key
from cloud.store.db import connect
from edge.actuators.interrupt import StarterInterrupt
from edge.actuators.output import SysfsOutput
from lienwatch.clock import ManualClock
from protocol import decode
from protocol.messages import (
    ArmStarterInterrupt,
    Event,
    InterruptState,
    PaymentReminder,
    ReminderPattern,
    Severity,
    SignedCommand,
    Transition,
)
from protocol.override import hotp
from protocol.signing import generate_key, private_key_to_pem
from tests.cloud.api.conftest import NOW_NS, ROLES, Api, S, config_for, header, register, store

pytestmark = pytest.mark.services


@pytest.fixture
def api(migrated_db: str, tmp_path: Path) -> Iterator[Api]:
    key_file = tmp_path / "command.key"
    key_file.write_bytes(private_key_to_pem(generate_key()))
    clock = ManualClock(wall_ns=NOW_NS)
    app = create_app(config_for(migrated_db, command_signing_key_file=str(key_file)), clock=clock)
    with connect(migrated_db) as conn, TestClient(app) as client:
        harness = Api(client, clock, conn, migrated_db)
        for role in ROLES:
            _, harness.tokens[role] = create_key(conn, f"{role.replace('_', '-')}-1", role)
        register(conn, "veh-1", assign_to="account-manager-1")
        yield harness


def _send(api: Api, action: str, role: str = "risk_officer", **params: object) -> Any:
    return api.post("/devices/veh-1/commands", role, json={"action": action, "params": params})


@pytest.mark.parametrize("action", ["arm_starter_interrupt", "release_starter_interrupt", "payment_reminder"])
@pytest.mark.parametrize("role", ["account_manager", "auditor"])
def test_only_admin_and_risk_officer_may_send_actuator_actions(api: Api, action: str, role: str) -> None:
    params = {"reason": "contract 42 in default", "due_date": "2026-12-20"}
    if action != "payment_reminder":
        params.pop("due_date")
    answer = _send(api, action, role, **params)
    assert answer.status_code == 403
    refused = api.audit_rows(allowed=False)  # the refusal is audited (by role, or by action)
    assert refused and refused[-1]["status"] == 403 and refused[-1]["role"] == role
    assert api.conn.execute("SELECT count(*) FROM commands").fetchone() == (0,)


@pytest.mark.parametrize("params", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501},
                                    {"reason": "ok reason", "extra": 1}, {"reason": 42}])
def test_an_actuator_action_needs_a_reason(api: Api, params: dict[str, object]) -> None:
    answer = api.post("/devices/veh-1/commands", json={"action": "arm_starter_interrupt", "params": params})
    assert answer.status_code == 422, answer.text
    assert api.conn.execute("SELECT count(*) FROM commands").fetchone() == (0,)


@pytest.mark.parametrize("role", ["admin", "risk_officer"])
def test_arm_is_signed_stored_with_its_reason_and_audited(api: Api, role: str) -> None:
    answer = _send(api, "arm_starter_interrupt", role, reason="contract 42: three payments missed")
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["params"] == {"reason": "contract 42: three payments missed"}
    row = api.conn.execute("SELECT payload, nonce FROM commands WHERE command_id = %s",
                           (created["command_id"],)).fetchone()
    assert row is not None
    payload, nonce = row
    signed = decode(bytes(payload))
    assert isinstance(signed, SignedCommand) and signed.command.action == ArmStarterInterrupt()
    assert signed.command.nonce == bytes(nonce) and signed.command.target_device_id == "veh-1"
    audited = api.audit_rows(action="command.arm_starter_interrupt")
    assert len(audited) == 1 and audited[0]["allowed"] and audited[0]["role"] == role
    assert audited[0]["detail"] == f"{created['command_id']}: contract 42: three payments missed"


def test_payment_reminder_parameters(api: Api) -> None:
    for bad in ({"due_date": "2026-02-30"}, {"due_date": "tomorrow"}, {"due_date": "1999-01-01"},
                {"due_date": "2026-12-20", "pattern": "loud"}, {}):
        assert _send(api, "payment_reminder", reason="due soon", **bad).status_code == 422
    answer = _send(api, "payment_reminder", reason="instalment 7 due", due_date="2026-12-20", pattern="firm")
    assert answer.status_code == 201, answer.text
    row = api.conn.execute("SELECT payload FROM commands").fetchone()
    assert row is not None
    signed = decode(bytes(row[0]))
    assert isinstance(signed, SignedCommand)
    assert signed.command.action == PaymentReminder("2026-12-20", ReminderPattern.FIRM)


def _interrupt_event(seq: int, at_ns: int, state: InterruptState, condition: str) -> Event:
    return Event(header("veh-1", seq, at_ns), 1000 + seq, Severity.WARNING, "starter_interrupt", at_ns,
                 {"state": float(state), "ignition_on": 0.0, "can_speed_kmh": 0.0, "parked_s": 31.0},
                 detail=f"{condition} (test)", transition=Transition.CLEARED, raised_ns=at_ns,
                 condition=condition)


def test_device_detail_shows_the_interrupt_state(api: Api) -> None:
    detail = api.get("/devices/veh-1").json()
    assert detail["starter_interrupt"] == {"state": "UNKNOWN", "since": None, "condition": None,
                                           "detail": None, "evidence": None, "last_command": None}
    created = _send(api, "arm_starter_interrupt", reason="default notice 3").json()
    store(api.conn, [_interrupt_event(1, NOW_NS - 60 * S, InterruptState.ARMED, "armed"),
                     _interrupt_event(2, NOW_NS - 5 * S, InterruptState.ENGAGED, "engaged")])
    shown = api.get("/devices/veh-1", "account_manager").json()["starter_interrupt"]
    assert shown["state"] == "ENGAGED" and shown["condition"] == "engaged"
    assert shown["evidence"]["parked_s"] == 31.0
    last = shown["last_command"]
    assert last["command_id"] == created["command_id"] and last["reason"] == "default notice 3"
    assert last["action"] == "arm_starter_interrupt" and last["created_by"] == "risk-officer-1"
    # the interrupt records are history, not open alerts
    assert api.get("/devices/veh-1").json()["open_events"] == []


# --- emergency override codes --------------------------------------------------------------------


def test_override_codes_are_handed_out_in_order_audited_and_match_the_device(
        api: Api, tmp_path: Path) -> None:
    assert api.post("/devices/veh-1/override-codes", json={"reason": "medical emergency"}).status_code == 409
    for role in ("risk_officer", "account_manager", "auditor"):
        assert api.post("/devices/veh-1/override-secret", role).status_code == 403
    made = api.post("/devices/veh-1/override-secret", "admin")
    assert made.status_code == 201
    secret = bytes.fromhex(made.json()["secret_hex"])
    for role in ("account_manager", "auditor"):
        refused = api.post("/devices/veh-1/override-codes", role, json={"reason": "please"})
        assert refused.status_code == 403
    assert api.post("/devices/veh-1/override-codes", json={}).status_code == 422
    codes = [api.post("/devices/veh-1/override-codes", json={"reason": f"call {i}"}).json() for i in range(2)]
    assert [c["counter"] for c in codes] == [0, 1]
    assert [c["code"] for c in codes] == [hotp(secret, 0), hotp(secret, 1)]
    audited = api.audit_rows(action="override.code", allowed=True)
    assert [a["detail"] for a in audited] == ["code #0: call 0", "code #1: call 1"]
    assert all(codes[0]["code"] not in a["detail"] for a in audited)  # the code itself is not logged
    # the device, given the same secret, accepts the first code offline
    clock = ManualClock()
    relay = tmp_path / "relay"
    relay.write_text("0\n")
    machine = StarterInterrupt(SysfsOutput(relay), clock, tmp_path, override_secret=secret)
    machine.arm()
    assert machine.enter_code(codes[0]["code"]).state is InterruptState.OVERRIDDEN
