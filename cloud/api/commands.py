"""Downlink commands: build, sign, store, publish, and follow them to their outcome.

    pending ──publish (PUBACK)──► sent ──device ack──► accepted ─► done   (shown: acknowledged)
                                                   └─► rejected | failed          (shown: failed)
    pending | sent past expires_at ──► expired (a late ack still moves it on: the device acted)

Acks are written by the receiver (cloud/ingest/writer.py: command_acks and commands.state). The
signed wire bytes are kept with the command, so one the broker did not take (down, timed out)
is published again by the sweeper while it is still valid. New actions are one `ACTIONS` entry.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.api.context import ApiState
from cloud.api.publish import CommandPublisher
from cloud.store.db import COMMAND_SWEEP_LOCK, Conn, exclusive
from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import (
    ArmStarterInterrupt,
    ClearEvent,
    ClearGeofence,
    Command,
    CommandAction,
    Geofence,
    PaymentReminder,
    Reboot,
    ReleaseStarterInterrupt,
    ReminderPattern,
    RequestPosition,
    SetGeofence,
    StartDiagnosticSession,
    StopDiagnosticSession,
)
from protocol.signing import sign_command

log = logging.getLogger(__name__)
PHASES = {
    "pending": "pending",
    "sent": "sent",
    "accepted": "acknowledged",
    "done": "acknowledged",
    "rejected": "failed",
    "failed": "failed",
    "expired": "expired",
}
SWEEP_INTERVAL_S = 5.0


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NoParams(_Params):
    pass


class GeofenceParams(_Params):
    geofence_id: int = Field(ge=0, le=2**32 - 1)
    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    radius_m: float = Field(ge=0.1, le=10_000_000)


class ClearGeofenceParams(_Params):
    geofence_id: int | None = Field(default=None, ge=0, le=2**32 - 1)


class DiagnosticParams(_Params):
    duration_s: int = Field(ge=1, le=7 * 86400)


class ClearEventParams(_Params):
    event_id: int = Field(ge=0, le=2**63 - 1)


class ReasonParams(_Params):
    """Actuator actions (docs/actuators.md) need a reason: it is stored with the command and audited."""

    reason: str = Field(min_length=3, max_length=500, pattern=r"\S", description="why (audited)")


class PaymentReminderParams(ReasonParams):
    due_date: date = Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))
    pattern: Literal["gentle", "firm", "final"] = "gentle"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One command action the API offers: its parameters, the protocol action, who may send it."""

    params: type[_Params]
    build: Callable[[Any], CommandAction]
    roles: frozenset[str] = frozenset({"admin", "risk_officer"})
    audited: bool = False  # each one sent is an audit record with its reason (actuator actions)


ACTIONS: dict[str, ActionSpec] = {
    "request_position": ActionSpec(
        NoParams, lambda p: RequestPosition(), frozenset({"admin", "risk_officer", "account_manager"})
    ),
    "reboot": ActionSpec(NoParams, lambda p: Reboot()),
    "set_geofence": ActionSpec(
        GeofenceParams, lambda p: SetGeofence(Geofence(p.geofence_id, p.lat_deg, p.lon_deg, p.radius_m))
    ),
    "clear_geofence": ActionSpec(ClearGeofenceParams, lambda p: ClearGeofence(p.geofence_id)),
    "start_diagnostic_session": ActionSpec(DiagnosticParams, lambda p: StartDiagnosticSession(p.duration_s)),
    "stop_diagnostic_session": ActionSpec(NoParams, lambda p: StopDiagnosticSession()),
    "clear_event": ActionSpec(
        ClearEventParams,
        lambda p: ClearEvent(p.event_id),
        frozenset({"admin", "risk_officer", "account_manager"}),
    ),
    # protocol 1.2, docs/actuators.md: admin and risk_officer only, a reason each, audited
    "arm_starter_interrupt": ActionSpec(ReasonParams, lambda p: ArmStarterInterrupt(), audited=True),
    "release_starter_interrupt": ActionSpec(ReasonParams, lambda p: ReleaseStarterInterrupt(), audited=True),
    "payment_reminder": ActionSpec(
        PaymentReminderParams,
        lambda p: PaymentReminder(p.due_date.isoformat(), ReminderPattern[p.pattern.upper()]),
        audited=True,
    ),
}
INTERRUPT_ACTIONS = ("arm_starter_interrupt", "release_starter_interrupt")


class CommandInputError(ValueError):
    """The action or its parameters are not valid (the API answers 422)."""


def build_command(
    action: str, params: dict[str, Any], device_id: str, now: datetime, ttl: timedelta
) -> tuple[Command, dict[str, Any]]:
    """The protocol Command for `action` with checked `params`, and the params as stored."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise CommandInputError(f"unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
    try:
        checked = spec.params.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "params"
        raise CommandInputError(f"{action}: params.{where}: {first.get('msg')}") from None
    issued_ns = int(now.timestamp() * 1e9)
    command = Command(
        device_id,
        secrets.token_bytes(16),
        issued_ns,
        issued_ns + int(ttl.total_seconds() * 1e9),
        spec.build(checked),
    )
    return command, checked.model_dump(mode="json")


_COLUMNS = (
    "command_id, device_id, kind, body, created_at, created_by, expires_at, sent_at, state, acked_at, "
    "ack_detail"
)


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "command_id": r[0],
        "device_id": r[1],
        "action": r[2],
        "params": r[3],
        "created_at": r[4],
        "created_by": r[5],
        "expires_at": r[6],
        "sent_at": r[7],
        "state": r[8],
        "phase": PHASES[r[8]],
        "acked_at": r[9],
        "ack_detail": r[10],
    }


def create(
    state: ApiState,
    conn: Conn,
    device_id: str,
    action: str,
    params: dict[str, Any],
    ttl: timedelta,
    user_name: str,
    now: datetime,
) -> dict[str, Any]:
    """Sign, store (pending) and publish a command; returns it as stored after publishing."""
    assert state.signing_key is not None
    command, stored = build_command(action, params, device_id, now, ttl)
    try:
        payload = codec.encode(sign_command(command, state.signing_key))
    except ProtocolError as error:
        raise CommandInputError(f"{action}: {error}") from None
    command_id = "cmd_" + secrets.token_hex(8)
    conn.execute(
        "INSERT INTO commands (command_id, device_id, nonce, kind, body, created_at, expires_at, created_by, "
        "payload) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
        (
            command_id,
            device_id,
            command.nonce,
            action,
            _json(stored),
            now,
            datetime.fromtimestamp(command.expires_ns / 1e9, UTC),
            user_name,
            payload,
        ),
    )
    publish_one(state, conn, command_id, device_id, payload)
    found = get(conn, command_id)
    assert found is not None
    return found


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def publish_one(state: ApiState, conn: Conn, command_id: str, device_id: str, payload: bytes) -> bool:
    """Hand one stored command to the broker; `sent` once it acknowledged (else it stays pending)."""
    publisher: CommandPublisher | None = state.publisher
    if publisher is None or not publisher.publish(device_id, payload):
        state.metrics.commands.labels("pending").inc()
        return False
    now = datetime.fromtimestamp(state.clock.wall_ns() / 1e9, UTC)
    conn.execute(
        "UPDATE commands SET state = 'sent', sent_at = %s WHERE command_id = %s AND state = 'pending'",
        (now, command_id),
    )
    state.metrics.commands.labels("sent").inc()
    return True


def expire(conn: Conn, now: datetime) -> int:
    """Mark pending/sent commands past their expiry as expired; returns how many."""
    cur = conn.execute(
        "UPDATE commands SET state = 'expired' WHERE state IN ('pending', 'sent') AND expires_at <= %s",
        (now,),
    )
    return cur.rowcount


def get(conn: Conn, command_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM commands WHERE command_id = %s", (command_id,)).fetchone()
    return None if row is None else _row(row)


def list_for_device(
    conn: Conn, device_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"device_id": device_id, "limit": limit}
    where = "device_id = %(device_id)s"
    if after is not None:
        where += " AND (created_at, command_id) < (%(a_time)s, %(a_id)s)"
        params.update(a_time=after[0], a_id=after[1])
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE {where} "
        "ORDER BY created_at DESC, command_id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    return [_row(r) for r in rows]


def sweep(state: ApiState, conn: Conn) -> tuple[int, int]:
    """Expire what is past its expiry, publish again what is still pending; (expired, sent)."""
    now = datetime.fromtimestamp(state.clock.wall_ns() / 1e9, UTC)
    expired = expire(conn, now)
    sent = 0
    if state.publisher is not None and state.publisher.connected.is_set():
        for command_id, device_id, payload in conn.execute(
            "SELECT command_id, device_id, payload FROM commands WHERE state = 'pending' AND expires_at > %s "
            "AND payload IS NOT NULL ORDER BY created_at LIMIT 100",
            (now,),
        ).fetchall():
            sent += publish_one(state, conn, command_id, device_id, bytes(payload))
    return expired, sent


def start_publishing(state: ApiState) -> Callable[[], None]:
    """With `[mqtt]`: connect the publisher and start the sweeper thread; returns what stops both."""
    if state.config.mqtt is None:
        return lambda: None
    suffix = f"-{os.getpid()}" if state.config.api.workers > 1 else ""
    publisher = CommandPublisher(state.config.mqtt, state.config.api.publish_timeout_s,
                                 client_id_suffix=suffix)
    publisher.start()
    state.publisher = publisher
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(SWEEP_INTERVAL_S):
            pool = state.pool
            if pool is None:
                continue
            try:
                # One API process at a time sweeps (`[api] workers`): none publishes a command twice.
                with pool.connection(timeout=5.0) as conn, exclusive(conn, COMMAND_SWEEP_LOCK) as held:
                    if held:
                        sweep(state, conn)
            except Exception as error:
                log.warning("command sweep failed: %s", error)

    thread = threading.Thread(target=run, name="api-command-sweeper", daemon=True)
    thread.start()

    def stop_all() -> None:
        stop.set()
        thread.join(timeout=10)
        publisher.stop()
        state.publisher = None

    return stop_all
