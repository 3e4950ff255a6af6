"""Emergency override codes (docs/actuators.md): the per-device secret, and one code at a time.

A borrower whose car is immobilised calls the lender; a risk officer (or an admin) hands out the
next one-time code with a reason, audited. The device checks it offline (protocol/override.py):
it releases the starter interrupt for `actuators.override.duration_s`, a limited number of times.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from cloud.api.auth import Caller, require_device_access, role_caller
from cloud.api.keys import Role
from cloud.api.problems import Problem
from cloud.api.routes.devices import DeviceId, Strict
from cloud.store.interrupt import next_override_code, set_override_secret

router = APIRouter(prefix="/devices/{device_id}", tags=["starter interrupt"])


class SecretOut(BaseModel):
    device_id: str
    secret_hex: str = Field(description="install on the device as actuators.override.secret_file; shown once")


class CodeIn(Strict):
    reason: str = Field(min_length=3, max_length=500, pattern=r"\S", description="why (audited)")


class CodeOut(BaseModel):
    device_id: str
    code: str = Field(description="8 digits; the borrower types it on the device (works once)")
    counter: int = Field(description="the code's number (HOTP counter)")


@router.post("/override-secret", response_model=SecretOut, status_code=201,
             summary="Make a new emergency-code secret for a device (admin; replaces the old one)")
def new_secret(
    device_id: DeviceId,
    caller: Annotated[Caller, Depends(role_caller(Role.ADMIN, action="override.secret"))],
) -> SecretOut:
    require_device_access(caller, device_id, action="override.secret")
    secret = secrets.token_bytes(32)
    set_override_secret(caller.conn, device_id, secret)
    caller.audit("override.secret", allowed=True, status=201, device_id=device_id,
                 detail="new emergency-code secret (counter restarts at 0)")
    return SecretOut(device_id=device_id, secret_hex=secret.hex())


@router.post("/override-codes", response_model=CodeOut, status_code=201,
             summary="Hand out the next emergency code of a device (admin, risk_officer; audited)")
def new_code(
    device_id: DeviceId,
    body: CodeIn,
    caller: Annotated[Caller, Depends(role_caller(Role.ADMIN, Role.RISK_OFFICER, action="override.code"))],
) -> CodeOut:
    require_device_access(caller, device_id, action="override.code")
    issued = next_override_code(caller.conn, device_id)
    if issued is None:
        raise Problem(409, "Conflict", f"device {device_id!r} has no emergency-code secret "
                                       "(POST /devices/{id}/override-secret)", kind="no-override-secret")
    counter, code = issued
    caller.audit("override.code", allowed=True, status=201, device_id=device_id,
                 detail=f"code #{counter}: {body.reason}")
    return CodeOut(device_id=device_id, code=code, counter=counter)
