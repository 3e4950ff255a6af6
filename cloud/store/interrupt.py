"""The starter interrupt as the cloud knows it: the device's last word, and the last command sent.

The device reports every change as an event of detector `starter_interrupt` whose feature `state`
is the `InterruptState` afterwards (docs/actuators.md); the latest such event is the state. The
latest arm/release command says what the lender asked for and whether the device has answered.
"""

from __future__ import annotations

from typing import Any

from cloud.store.db import Conn
from protocol.messages import InterruptState
from protocol.override import hotp

INTERRUPT_KINDS = ("arm_starter_interrupt", "release_starter_interrupt")


def interrupt_state(conn: Conn, device_id: str) -> dict[str, Any]:
    """{state, since, condition, detail, evidence, last_command} for one device ("UNKNOWN" if never told)."""
    row = conn.execute(
        "SELECT time, condition, detail, evidence FROM events "
        "WHERE device_id = %s AND detector = 'starter_interrupt' AND evidence ? 'state' "
        "ORDER BY time DESC, seq DESC LIMIT 1",
        (device_id,),
    ).fetchone()
    state, since, condition, detail, evidence = "UNKNOWN", None, None, None, None
    if row is not None:
        since, condition, detail, evidence = row
        code = evidence.get("state")
        if isinstance(code, int | float) and int(code) in InterruptState._value2member_map_:
            state = InterruptState(int(code)).name
    command = conn.execute(
        "SELECT command_id, kind, state, created_at, created_by, body->>'reason', acked_at, ack_detail "
        "FROM commands WHERE device_id = %s AND kind = ANY(%s) "
        "ORDER BY created_at DESC, command_id DESC LIMIT 1",
        (device_id, list(INTERRUPT_KINDS)),
    ).fetchone()
    last = None
    if command is not None:
        names = ("command_id", "action", "state", "created_at", "created_by", "reason", "acked_at",
                 "ack_detail")
        last = dict(zip(names, command, strict=True))
    return {"state": state, "since": since, "condition": condition, "detail": detail,
            "evidence": evidence, "last_command": last}


def set_override_secret(conn: Conn, device_id: str, secret: bytes) -> None:
    """Store (or replace, restarting the counter at 0) a device's emergency-code secret."""
    conn.execute(
        "INSERT INTO override_secrets (device_id, secret) VALUES (%s, %s) ON CONFLICT (device_id) "
        "DO UPDATE SET secret = excluded.secret, next_counter = 0, created_at = now()",
        (device_id, secret),
    )


def next_override_code(conn: Conn, device_id: str) -> tuple[int, str] | None:
    """(counter, code) of the next emergency code, the counter advanced; None without a secret."""
    row = conn.execute(
        "UPDATE override_secrets SET next_counter = next_counter + 1 WHERE device_id = %s "
        "RETURNING secret, next_counter - 1",
        (device_id,),
    ).fetchone()
    if row is None:
        return None
    counter = int(row[1])
    return counter, hotp(bytes(row[0]), counter)
