"""API keys and account-manager assignments (admin), and `/me` for any key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from cloud.api.auth import Caller, device_exists, get_caller, role_caller
from cloud.api.keys import USER_NAME, Role, create_key, list_keys, revoke_key
from cloud.api.problems import Problem
from cloud.api.routes.devices import DeviceId, Strict

router = APIRouter(tags=["keys"])
AdminCaller = Annotated[Caller, Depends(role_caller(Role.ADMIN, action="keys"))]
UserName = Annotated[str, Path(pattern=f"^{USER_NAME.pattern}$")]
RoleName = Literal["admin", "risk_officer", "account_manager", "auditor"]


class Me(BaseModel):
    key_id: str
    user_name: str
    role: RoleName


class KeyIn(Strict):
    user_name: str = Field(pattern=f"^{USER_NAME.pattern}$", examples=["alice"])
    role: RoleName


class KeyOut(BaseModel):
    key_id: str
    user_name: str
    role: RoleName
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class NewKey(KeyOut):
    token: str = Field(description="the bearer token; shown only in this answer")


class Assignment(BaseModel):
    user_name: str
    device_id: str
    assigned_at: datetime
    assigned_by: str


@router.get("/me", response_model=Me, summary="The calling key")
def me(caller: Annotated[Caller, Depends(get_caller)]) -> Me:
    p = caller.principal
    return Me(key_id=p.key_id, user_name=p.user_name, role=p.role.value)


@router.get("/keys", response_model=list[KeyOut], summary="Every API key (never a secret)")
def get_keys(caller: AdminCaller) -> list[KeyOut]:
    return [
        KeyOut(
            key_id=k.key_id,
            user_name=k.user_name,
            role=k.role.value,
            created_at=k.created_at,
            created_by=k.created_by,
            revoked_at=k.revoked_at,
        )
        for k in list_keys(caller.conn)
    ]


@router.post(
    "/keys", response_model=NewKey, status_code=201, summary="Create a key (its token is shown once)"
)
def add_key(body: KeyIn, caller: AdminCaller) -> NewKey:
    key, token = create_key(caller.conn, body.user_name, body.role, created_by=caller.principal.user_name)
    return NewKey(
        key_id=key.key_id,
        user_name=key.user_name,
        role=key.role.value,
        created_at=key.created_at,
        created_by=key.created_by,
        revoked_at=None,
        token=token,
    )


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke a key at once")
def delete_key(key_id: Annotated[str, Path(pattern=r"^[a-z0-9]{12}$")], caller: AdminCaller) -> Response:
    if not revoke_key(caller.conn, key_id):
        raise Problem(404, "Not Found", f"no API key {key_id}")
    return Response(status_code=204)


@router.get(
    "/assignments", response_model=list[Assignment], summary="Which account manager looks after which device"
)
def get_assignments(
    caller: AdminCaller,
    user_name: Annotated[str | None, Query(pattern=f"^{USER_NAME.pattern}$")] = None,
) -> list[Assignment]:
    rows = caller.conn.execute(
        "SELECT user_name, device_id, assigned_at, assigned_by FROM device_assignments "
        "WHERE %(user)s::text IS NULL OR user_name = %(user)s ORDER BY user_name, device_id LIMIT 10000",
        {"user": user_name},
    ).fetchall()
    return [Assignment(user_name=r[0], device_id=r[1], assigned_at=r[2], assigned_by=r[3]) for r in rows]


@router.put(
    "/devices/{device_id}/assignees/{user_name}",
    response_model=Assignment,
    summary="Assign a device to an account manager",
)
def assign(device_id: DeviceId, user_name: UserName, caller: AdminCaller) -> Assignment:
    if not device_exists(caller.conn, device_id):
        raise Problem(404, "Not Found", f"no device {device_id!r} is registered")
    row = caller.conn.execute(
        "INSERT INTO device_assignments (user_name, device_id, assigned_by) VALUES (%s, %s, %s) "
        "ON CONFLICT (user_name, device_id) DO UPDATE SET user_name = EXCLUDED.user_name "
        "RETURNING user_name, device_id, assigned_at, assigned_by",
        (user_name, device_id, caller.principal.user_name),
    ).fetchone()
    assert row is not None
    return Assignment(user_name=row[0], device_id=row[1], assigned_at=row[2], assigned_by=row[3])


@router.delete("/devices/{device_id}/assignees/{user_name}", status_code=204, summary="Remove an assignment")
def unassign(device_id: DeviceId, user_name: UserName, caller: AdminCaller) -> Response:
    row = caller.conn.execute(
        "DELETE FROM device_assignments WHERE user_name = %s AND device_id = %s RETURNING 1",
        (user_name, device_id),
    ).fetchone()
    if row is None:
        raise Problem(404, "Not Found", f"device {device_id!r} is not assigned to {user_name}")
    return Response(status_code=204)
