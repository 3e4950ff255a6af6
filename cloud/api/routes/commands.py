"""Commands: send a signed command to a device, follow it to its outcome."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from cloud.api import commands
from cloud.api.auth import DEVICE_ROLES, Caller, require_device_access, role_caller
from cloud.api.pagination import decode_cursor, encode_cursor
from cloud.api.problems import Problem
from cloud.api.routes.devices import DeviceId, Strict

router = APIRouter(tags=["commands"])
DeviceCaller = Annotated[Caller, Depends(role_caller(*DEVICE_ROLES, action="commands"))]
CommandId = Annotated[str, Path(pattern=r"^cmd_[0-9a-f]{16}$")]


class CommandIn(Strict):
    action: str = Field(
        max_length=64,
        description=f"one of: {', '.join(sorted(commands.ACTIONS))}",
        examples=["request_position"],
    )
    params: dict[str, Any] = Field(default_factory=dict, description="the action's parameters")
    ttl_s: int | None = Field(
        default=None, ge=10, le=7 * 86400, description="lifetime (default: api.command_ttl_s)"
    )


class CommandOut(BaseModel):
    command_id: str
    device_id: str
    action: str
    params: Any
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    sent_at: datetime | None
    state: Literal["pending", "sent", "accepted", "done", "rejected", "failed", "expired"]
    phase: Literal["pending", "sent", "acknowledged", "failed", "expired"]
    acked_at: datetime | None
    ack_detail: str | None


class CommandPage(BaseModel):
    items: list[CommandOut]
    next_cursor: str | None


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandOut,
    status_code=201,
    summary="Sign, store and publish a command (state pending until the broker took it)",
)
def create_command(device_id: DeviceId, body: CommandIn, caller: DeviceCaller) -> CommandOut:
    spec = commands.ACTIONS.get(body.action)
    if spec is not None and caller.principal.role.value not in spec.roles:
        raise caller.refuse(
            "command.create",
            403,
            "Forbidden",
            f"the role {caller.principal.role.value} may not send {body.action}",
            device_id=device_id,
        )
    require_device_access(caller, device_id, action="command.create")
    state = caller.state
    if state.signing_key is None:
        raise Problem(
            503,
            "Service Unavailable",
            "no command signing key is configured (api.command_signing_key_file)",
            kind="commands-unavailable",
        )
    ttl = timedelta(seconds=body.ttl_s or state.config.api.command_ttl_s)
    try:
        created = commands.create(
            state,
            caller.conn,
            device_id,
            body.action,
            body.params,
            ttl,
            caller.principal.user_name,
            caller.now(),
        )
    except commands.CommandInputError as error:
        raise Problem(422, "Unprocessable Content", str(error), kind="invalid-command") from None
    if spec is not None and spec.audited:  # actuator actions: who, what and why (docs/actuators.md)
        caller.audit(f"command.{body.action}", allowed=True, status=201, device_id=device_id,
                     detail=f"{created['command_id']}: {body.params.get('reason', '')}")
    return CommandOut(**created)


@router.get(
    "/devices/{device_id}/commands", response_model=CommandPage, summary="A device's commands, newest first"
)
def list_commands(
    device_id: DeviceId,
    caller: DeviceCaller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> CommandPage:
    require_device_access(caller, device_id, action="commands.list")
    after = decode_cursor(cursor, datetime, str) if cursor else None
    commands.expire(caller.conn, caller.now())
    rows = commands.list_for_device(caller.conn, device_id, after, limit + 1)
    page = rows[:limit]
    return CommandPage(
        items=[CommandOut(**r) for r in page],
        next_cursor=encode_cursor(page[-1]["created_at"], page[-1]["command_id"])
        if len(rows) > limit
        else None,
    )


@router.get("/devices/{device_id}/commands/{command_id}", response_model=CommandOut, summary="One command")
def get_command(device_id: DeviceId, command_id: CommandId, caller: DeviceCaller) -> CommandOut:
    require_device_access(caller, device_id, action="command.get")
    commands.expire(caller.conn, caller.now())
    found = commands.get(caller.conn, command_id)
    if found is None or found["device_id"] != device_id:
        raise Problem(404, "Not Found", f"device {device_id!r} has no command {command_id}")
    return CommandOut(**found)
