"""Events: list and count for the dashboard, one event's history, acknowledge and resolve.

Events carry where they happened, so every list or detail read is audited as a location read.
Account managers see only their devices' events, without evidence or detail (cabin and door
detail is not theirs to see), and without positions older than their window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from cloud.api.auth import DEVICE_ROLES, Caller, raw_track_start, require_device_access, role_caller
from cloud.api.keys import Role
from cloud.api.pagination import decode_cursor, encode_cursor
from cloud.api.problems import Problem
from cloud.api.reads import read_endpoint
from cloud.api.responses import json_answer
from cloud.api.routes.devices import DEVICE_ID_PATTERN, DeviceId, Severity, Strict
from cloud.api.times import Instant
from cloud.store import alerts

router = APIRouter(tags=["events"])
State = Literal["open", "acknowledged", "resolved", "cleared", "dismissed"]
# Devices number their events 0..2^63-1; server-side watchers (cloud/watchers) use negative ids.
EventId = Annotated[int, Path(ge=-(2**63 - 1), le=2**63 - 1)]
DeviceCaller = Annotated[Caller, Depends(role_caller(*DEVICE_ROLES, action="events"))]


class EventOut(BaseModel):
    device_id: str
    event_id: int
    raised_at: datetime
    severity: Severity
    detector: str
    condition: str
    state: State
    state_changed_at: datetime
    state_changed_by: str | None
    note: str | None
    lat_deg: float | None
    lon_deg: float | None
    speed_kmh: float | None
    evidence: Any = Field(description="the detector's evidence (omitted for account managers)")
    detail: str | None = Field(description="omitted for account managers")
    last_transition_at: datetime
    transitions: int


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class Transition(BaseModel):
    time: datetime
    transition: str
    severity: Severity
    detail: str | None


class Action(BaseModel):
    time: datetime
    action: str
    user_name: str
    comment: str


class EventDetail(EventOut):
    history: list[Transition]
    actions: list[Action]


class Counts(BaseModel):
    WARNING: int
    ALERT: int
    EMERGENCY: int
    total: int


class ActionIn(Strict):
    comment: str = Field(default="", max_length=1000)


def _shown(caller: Caller, event: dict[str, Any]) -> dict[str, Any]:
    if caller.principal.role is not Role.ACCOUNT_MANAGER:
        return event
    start = raw_track_start(caller)
    hide_position = start is not None and event["raised_at"] < start
    return {
        **event,
        "evidence": None,
        "detail": None,
        **({"lat_deg": None, "lon_deg": None, "speed_kmh": None} if hide_position else {}),
        **({"history": [{**h, "detail": None} for h in event["history"]]} if "history" in event else {}),
    }


def _filter(caller: Caller, **kwargs: Any) -> alerts.EventFilter:
    principal = caller.principal
    return alerts.EventFilter(
        assigned_to=None if principal.sees_all_devices else principal.user_name, **kwargs
    )


@router.get("/events", response_model=EventPage, summary="List events (newest first; audited)")
@read_endpoint
def list_events(
    caller: DeviceCaller,
    severity: Annotated[Severity | None, Query(description="at least this severity")] = None,
    detector: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[State | None, Query()] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    since: Annotated[Instant | None, Query(description="raised at or after")] = None,
    until: Annotated[Instant | None, Query(description="raised before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    if device_id is not None:
        require_device_access(caller, device_id, action="events.list")
    after = decode_cursor(cursor, datetime, str, int) if cursor else None
    limit = min(limit, caller.state.config.api.max_page_size)
    rows = alerts.list_events(
        caller.conn,
        _filter(
            caller,
            severity=severity,
            detector=detector,
            state=state,
            device_id=device_id,
            since=since,
            until=until,
            after=after,
            limit=limit + 1,
        ),
    )
    caller.audit(
        "events.list", allowed=True, status=200, device_id=device_id, range_from=since, range_to=until
    )
    page = rows[:limit]
    last = page[-1] if page else None
    return json_answer(EventPage(
        items=[EventOut(**_shown(caller, row)) for row in page],
        next_cursor=encode_cursor(last["raised_at"], last["device_id"], last["event_id"])
        if last is not None and len(rows) > limit
        else None,
    ))


@router.get(
    "/events/counts", response_model=Counts, summary="Events by severity (default: open + acknowledged)"
)
def count_events(
    caller: DeviceCaller,
    state: Annotated[list[State] | None, Query()] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    since: Annotated[Instant | None, Query()] = None,
) -> Response:
    if device_id is not None:
        require_device_access(caller, device_id, action="events.counts")
    states = tuple(state) if state else ("open", "acknowledged")
    counts = alerts.count_events(caller.conn, _filter(caller, device_id=device_id, since=since), states)
    return json_answer(Counts(**counts, total=sum(counts.values())))


@router.get(
    "/devices/{device_id}/events/{event_id}",
    response_model=EventDetail,
    summary="One event with its transitions and operators' actions (audited)",
)
def get_event(device_id: DeviceId, event_id: EventId, caller: DeviceCaller) -> EventDetail:
    require_device_access(caller, device_id, action="event.detail", location=True)
    event = alerts.get_event(caller.conn, device_id, event_id)
    if event is None:
        raise Problem(404, "Not Found", f"device {device_id!r} has no event {event_id}")
    return EventDetail(**_shown(caller, event))


def _act(action: str, device_id: str, event_id: int, body: ActionIn, caller: Caller) -> EventDetail:
    require_device_access(caller, device_id, action=f"event.{action}")
    try:
        found = alerts.transition(
            caller.conn, device_id, event_id, action, caller.principal.user_name, body.comment, caller.now()
        )
    except alerts.TransitionError as error:
        raise Problem(409, "Conflict", str(error), kind="event-state") from None
    if not found:
        raise Problem(404, "Not Found", f"device {device_id!r} has no event {event_id}")
    return get_event(device_id, event_id, caller)


@router.post(
    "/devices/{device_id}/events/{event_id}/acknowledge",
    response_model=EventDetail,
    summary="Acknowledge an open event (who and why are kept)",
)
def acknowledge(device_id: DeviceId, event_id: EventId, body: ActionIn, caller: DeviceCaller) -> EventDetail:
    return _act("acknowledge", device_id, event_id, body, caller)


@router.post(
    "/devices/{device_id}/events/{event_id}/resolve",
    response_model=EventDetail,
    summary="Resolve an open or acknowledged event",
)
def resolve(device_id: DeviceId, event_id: EventId, body: ActionIn, caller: DeviceCaller) -> EventDetail:
    return _act("resolve", device_id, event_id, body, caller)
