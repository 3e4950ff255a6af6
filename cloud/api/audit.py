"""The audit trail: who read which device's location, over what range, when, and from where.

Every read of position or track data writes one `audit_log` row, and so does every refused
request (401, 403, out-of-window), whatever it asked for. The row is written before the answer
leaves: if it cannot be written, the request fails (a read nobody can account for is not served).
The table is time-partitioned (plain mode: partitions made ahead by the receiver and, when
missing, on demand here) and expires with the `audit` data class (cloud/store/retention.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from cloud.store.db import Conn
from cloud.store.partitions import PartitionKeeper

_KEEPER = PartitionKeeper()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited request."""

    time: datetime
    action: str  # what was asked: "device.position", "track", "events.list", "authenticate", ...
    allowed: bool
    status: int  # the HTTP status answered
    key_id: str | None = None
    user_name: str | None = None
    role: str | None = None
    device_id: str | None = None
    range_from: datetime | None = None
    range_to: datetime | None = None
    client_addr: str = ""
    method: str = ""
    path: str = ""
    detail: str = ""


_INSERT = """INSERT INTO audit_log (time, key_id, user_name, role, action, device_id, range_from, range_to,
                                    allowed, status, client_addr, method, path, detail)
              VALUES (%(time)s, %(key_id)s, %(user_name)s, %(role)s, %(action)s, %(device_id)s,
                      %(range_from)s, %(range_to)s, %(allowed)s, %(status)s, %(client_addr)s,
                      %(method)s, %(path)s, %(detail)s)"""


def write(conn: Conn, record: AuditRecord) -> None:
    """Append `record`; a missing partition (plain mode) is created and the insert retried once.

    On an autocommit connection outside a transaction (a request's) the INSERT is its own
    transaction: one round trip, not three (BEGIN, INSERT, COMMIT). Inside a caller's transaction
    it runs in a savepoint, so that a missing partition does not abort the caller's work."""
    params: dict[str, Any] = {name: getattr(record, name) for name in AuditRecord.__slots__}
    params["path"] = params["path"][:512]
    params["detail"] = params["detail"][:512]
    alone = conn.autocommit and conn.info.transaction_status is TransactionStatus.IDLE
    try:
        if alone:
            conn.execute(_INSERT, params)
        else:
            with conn.transaction():
                conn.execute(_INSERT, params)
    except psycopg.errors.CheckViolation as error:
        if "no partition" not in str(error):
            raise
        day = record.time.astimezone(UTC).date()
        _KEEPER.forget(f"audit_log_p{day.replace(day=1):%Y%m%d}")
        _KEEPER.ensure(conn, "audit_log", day, day)
        with conn.transaction():
            conn.execute(_INSERT, params)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the audit-log read (all optional)."""

    since: datetime | None = None
    until: datetime | None = None
    user_name: str | None = None
    device_id: str | None = None
    allowed: bool | None = None
    after: tuple[datetime, int] | None = None  # cursor: (time, id) of the last row seen
    limit: int = 100


def read(conn: Conn, query: AuditQuery) -> list[dict[str, Any]]:
    """Audit rows matching `query`, newest first (at most `limit`)."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {"limit": query.limit}
    for column, value in (
        ("user_name", query.user_name),
        ("device_id", query.device_id),
        ("allowed", query.allowed),
    ):
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if query.since is not None:
        where.append("time >= %(since)s")
        params["since"] = query.since
    if query.until is not None:
        where.append("time < %(until)s")
        params["until"] = query.until
    if query.after is not None:
        where.append("(time, id) < (%(after_time)s, %(after_id)s)")
        params["after_time"], params["after_id"] = query.after
    cursor = conn.execute(
        "SELECT id, time, key_id, user_name, role, action, device_id, range_from, range_to, allowed, status, "
        f"client_addr, method, path, detail FROM audit_log WHERE {' AND '.join(where)} "
        "ORDER BY time DESC, id DESC LIMIT %(limit)s",
        params,
    )
    names = [d.name for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
