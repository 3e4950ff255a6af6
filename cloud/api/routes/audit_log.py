"""The audit log, for auditors (and admins): who read which device's location, and refusals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from cloud.api import audit
from cloud.api.auth import Caller, role_caller
from cloud.api.keys import USER_NAME, Role
from cloud.api.pagination import decode_cursor, encode_cursor
from cloud.api.routes.devices import DEVICE_ID_PATTERN
from cloud.api.times import Instant

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    time: datetime
    key_id: str | None
    user_name: str | None
    role: str | None
    action: str
    device_id: str | None
    range_from: datetime | None
    range_to: datetime | None
    allowed: bool
    status: int
    client_addr: str
    method: str
    path: str
    detail: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


@router.get("/audit", response_model=AuditPage, summary="Audit records, newest first (auditor, admin)")
def read_audit(
    caller: Annotated[Caller, Depends(role_caller(Role.AUDITOR, Role.ADMIN, action="audit.read"))],
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    user_name: Annotated[str | None, Query(pattern=f"^{USER_NAME.pattern}$")] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    allowed: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> AuditPage:
    after = decode_cursor(cursor, datetime, int) if cursor else None
    rows = audit.read(
        caller.conn,
        audit.AuditQuery(
            since=since,
            until=until,
            user_name=user_name,
            device_id=device_id,
            allowed=allowed,
            after=after,
            limit=limit + 1,
        ),
    )
    page = rows[:limit]
    return AuditPage(
        items=[AuditEntry(**r) for r in page],
        next_cursor=encode_cursor(page[-1]["time"], page[-1]["id"]) if len(rows) > limit else None,
    )
