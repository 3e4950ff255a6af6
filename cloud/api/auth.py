"""Who is calling, and what they may see: bearer keys, roles, device access, auditing refusals.

Route handlers take `caller: Caller = Depends(get_caller)` (or `Depends(role_caller(...))` to
admit some roles only); `require_device_access(caller, device_id, ...)` before reading a device's
data. Every refusal is answered as problem+json AND written to the audit log; a granted read of
location data (`location=True`) is audited too.

    admin            everything, keys and assignments included
    risk_officer     every device: data, events, commands
    account_manager  assigned devices only (device_assignments), raw positions only within
                     api.account_manager_track_days, no cabin/door detail (event evidence)
    auditor          the audit log only
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from cloud.api import audit
from cloud.api.context import ApiState, api_state, db_conn
from cloud.api.keys import Role, authenticate
from cloud.api.problems import Problem
from cloud.api.ratelimit import SharedRateLimiter
from cloud.store.db import Conn

ALL_DEVICES = frozenset({Role.ADMIN, Role.RISK_OFFICER})
DEVICE_ROLES = frozenset({Role.ADMIN, Role.RISK_OFFICER, Role.ACCOUNT_MANAGER})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: which key, whose, with which role."""

    key_id: str
    user_name: str
    role: Role

    @property
    def sees_all_devices(self) -> bool:
        return self.role in ALL_DEVICES


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's principal with its connection and where it came from (for audit records)."""

    principal: Principal
    conn: Conn
    state: ApiState
    client_addr: str
    method: str
    path: str

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.state.clock.wall_ns() / 1e9, UTC)

    def audit(
        self,
        action: str,
        *,
        allowed: bool,
        status: int,
        device_id: str | None = None,
        range_from: datetime | None = None,
        range_to: datetime | None = None,
        detail: str = "",
    ) -> None:
        """Write one audit record for this request."""
        p = self.principal
        audit.write(
            self.conn,
            audit.AuditRecord(
                time=self.now(),
                action=action,
                allowed=allowed,
                status=status,
                key_id=p.key_id,
                user_name=p.user_name,
                role=p.role.value,
                device_id=device_id,
                range_from=range_from,
                range_to=range_to,
                client_addr=self.client_addr,
                method=self.method,
                path=self.path,
                detail=detail,
            ),
        )
        self.state.metrics.audit_records.labels("true" if allowed else "false").inc()

    def refuse(
        self,
        action: str,
        status: int,
        title: str,
        detail: str,
        *,
        device_id: str | None = None,
        range_from: datetime | None = None,
        range_to: datetime | None = None,
    ) -> Problem:
        """Audit a refusal and return the Problem to raise."""
        self.audit(
            action,
            allowed=False,
            status=status,
            device_id=device_id,
            range_from=range_from,
            range_to=range_to,
            detail=detail,
        )
        return Problem(status, title, detail)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def get_principal(request: Request, conn: Annotated[Conn, Depends(db_conn)]) -> Principal:
    """The caller's principal from `Authorization: Bearer lw_...`; 401 (audited) or 429 otherwise."""
    state = api_state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    limiter, wait_s = state.limiter, None
    if not token:
        key = None
    elif isinstance(limiter, SharedRateLimiter):  # the key and its token in one round trip
        key, wait_s = limiter.authenticate_and_take(conn, token)
    else:
        key = authenticate(conn, token)
    if key is None:
        detail = (
            "no API key: send `Authorization: Bearer lw_...`"
            if not header
            else "the API key is unknown, malformed or revoked"
        )
        # Failed authentications share one bucket per client address, so a flood of bad keys is
        # refused with 429 (counted, not audited row by row) instead of filling the audit log.
        wait_s = state.limiter.take(f"address:{_client(request)}", conn)
        if wait_s:
            state.metrics.rate_limited.inc()
            raise Problem(429, "Too Many Requests", f"too many failed authentications from this address; "
                          f"retry in {wait_s} s", kind="rate-limited", headers={"Retry-After": str(wait_s)})
        audit.write(
            conn,
            audit.AuditRecord(
                time=datetime.fromtimestamp(state.clock.wall_ns() / 1e9, UTC),
                action="authenticate",
                allowed=False,
                status=401,
                client_addr=_client(request),
                method=request.method,
                path=request.url.path,
                detail=detail,
            ),
        )
        state.metrics.audit_records.labels("false").inc()
        raise Problem(
            401,
            "Unauthorized",
            detail,
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="lienwatch"'},
        )
    if wait_s is None:
        wait_s = limiter.take(key.key_id, conn)
    if wait_s:
        state.metrics.rate_limited.inc()
        raise Problem(
            429,
            "Too Many Requests",
            f"this key may make {state.config.rate_limit.per_minute} requests a minute "
            f"(bursts of {state.config.rate_limit.burst}); retry in {wait_s} s",
            kind="rate-limited",
            headers={"Retry-After": str(wait_s)},
        )
    principal = Principal(key.key_id, key.user_name, key.role)
    request.state.principal = principal
    return principal


async def get_caller(
    request: Request,
    principal: Annotated[Principal, Depends(get_principal)],
    conn: Annotated[Conn, Depends(db_conn)],
) -> Caller:
    """The `Caller` of a request (authenticated, within its rate limit); async: it does no I/O."""
    return Caller(principal, conn, api_state(request), _client(request), request.method, request.url.path)


def role_caller(*roles: Role, action: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting only `roles`; any other role gets 403, audited as `action`."""
    allowed = frozenset(roles)

    async def dependency(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if caller.principal.role not in allowed:
            raise await run_in_threadpool(  # the refusal is audited: SQL, off the event loop
                caller.refuse,
                action,
                403,
                "Forbidden",
                f"the role {caller.principal.role.value} may not do this "
                f"(allowed: {', '.join(sorted(r.value for r in allowed))})",
            )
        return caller

    return dependency


def is_assigned(conn: Conn, user_name: str, device_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM device_assignments WHERE user_name = %s AND device_id = %s", (user_name, device_id)
    ).fetchone()
    return row is not None


def device_exists(conn: Conn, device_id: str) -> bool:
    return conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,)).fetchone() is not None


def require_device_access(
    caller: Caller,
    device_id: str,
    *,
    action: str,
    location: bool = False,
    range_from: datetime | None = None,
    range_to: datetime | None = None,
) -> None:
    """Refuse (403, audited) unless the caller may see `device_id`; 404 if it is not registered.

    `location=True` marks a read of position or track data: it is audited when granted too, and an
    account manager may not reach back before the raw-track window (`range_from` older → 403).
    """
    principal = caller.principal
    where: dict[str, Any] = {"device_id": device_id, "range_from": range_from, "range_to": range_to}
    if principal.role not in DEVICE_ROLES:
        raise caller.refuse(
            action, 403, "Forbidden", f"the role {principal.role.value} sees no device data", **where
        )
    if principal.role is Role.ACCOUNT_MANAGER:
        if not is_assigned(caller.conn, principal.user_name, device_id):
            raise caller.refuse(
                action,
                403,
                "Forbidden",
                f"device {device_id!r} is not assigned to {principal.user_name}",
                **where,
            )
        if location and range_from is not None:
            window = timedelta(days=caller.state.config.api.account_manager_track_days)
            if range_from < caller.now() - window:
                raise caller.refuse(
                    action,
                    403,
                    "Forbidden",
                    f"an account manager sees raw positions of the last {window.days} days only; "
                    "ask a risk officer for older data",
                    **where,
                )
    if not device_exists(caller.conn, device_id):
        raise caller.refuse(action, 404, "Not Found", f"no device {device_id!r} is registered", **where)
    if location:
        caller.audit(action, allowed=True, status=200, **where)


def raw_track_start(caller: Caller) -> datetime | None:
    """The oldest position this caller may read (None: no limit)."""
    if caller.principal.role is Role.ACCOUNT_MANAGER:
        return caller.now() - timedelta(days=caller.state.config.api.account_manager_track_days)
    return None
