"""Track playback, trips and stops of one device (cloud/analytics); every read is audited.

An account manager reaches back no further than `api.account_manager_track_days` (auth.py
refuses an older `from`, audited) and sees no event detail on the track.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.track import MAX_TOLERANCE_M, playback_json
from cloud.analytics.trips import TripRules, trips_and_stops
from cloud.api.auth import Caller, get_caller, require_device_access
from cloud.api.keys import Role
from cloud.api.problems import Problem
from cloud.api.reads import read_endpoint
from cloud.api.responses import JSON
from cloud.api.routes.devices import DeviceId
from cloud.api.times import Instant

router = APIRouter(prefix="/devices", tags=["tracks"])
GEOJSON = "application/geo+json"
From = Annotated[Instant, Query(alias="from", description="start of the range (inclusive), ISO 8601 "
                                                                 "with a zone")]
To = Annotated[Instant, Query(alias="to", description="end of the range (exclusive)")]


class Place(BaseModel):
    lat_deg: float
    lon_deg: float


class TripOut(BaseModel):
    start: datetime
    end: datetime
    duration_s: float
    distance_m: float
    start_place: Place
    end_place: Place
    max_speed_kmh: float | None
    avg_speed_kmh: float | None


class StopOut(BaseModel):
    start: datetime
    end: datetime
    duration_s: float
    place: Place
    point_of_interest: str | None
    point_of_interest_kind: str | None
    data_gap: bool
    last: bool


class TripsOut(BaseModel):
    motion_from: str
    trips: list[TripOut]


class StopsOut(BaseModel):
    motion_from: str
    stops: list[StopOut]


def _unprocessable(error: AnalyticsError) -> Problem:
    return Problem(422, "Unprocessable Content", str(error), kind="invalid-request")


@router.get(
    "/{device_id}/track",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}, "description": "a GeoJSON FeatureCollection (RFC 7946): "
                     "a LineString (kind track), Points of kind fix (time, speed_kmh), no_fix (last known "
                     "position, from, to) and, with events=true, event"}},
    summary="Track playback as GeoJSON, simplified on request (audited)",
)
@read_endpoint
def get_track(
    device_id: DeviceId,
    caller: Annotated[Caller, Depends(get_caller)],
    start: From,
    end: To,
    tolerance_m: Annotated[float | None, Query(ge=0, le=MAX_TOLERANCE_M, allow_inf_nan=False,
                                               description="simplify: no fix farther than this from the "
                                                           "line (metres)")] = None,
    events: Annotated[bool, Query(description="add the events of the range as points")] = False,
) -> Response:
    require_device_access(caller, device_id, action="track", location=True, range_from=start, range_to=end)
    try:
        body = playback_json(caller.conn, device_id, start, end, tolerance_m=tolerance_m, events=events,
                             event_detail=caller.principal.role is not Role.ACCOUNT_MANAGER)
    except AnalyticsError as error:
        raise _unprocessable(error) from None
    return Response(body, media_type=GEOJSON)


def _rules(trip_min_m: float | None, trip_min_s: float | None, stop_min_s: float | None,
           gap_s: float | None, moving_kmh: float | None, use_ignition: bool) -> TripRules:
    given: dict[str, Any] = {k: v for k, v in (
        ("trip_min_m", trip_min_m), ("trip_min_s", trip_min_s), ("stop_min_s", stop_min_s),
        ("gap_s", gap_s), ("moving_kmh", moving_kmh)) if v is not None}
    try:
        return TripRules(**given, use_ignition=use_ignition)
    except AnalyticsError as error:
        raise _unprocessable(error) from None


Number = Annotated[float | None, Query(ge=0, allow_inf_nan=False)]


def _motion(caller: Caller, device_id: str, start: datetime, end: datetime, rules: TripRules,
            action: str) -> dict[str, Any]:
    require_device_access(caller, device_id, action=action, location=True, range_from=start, range_to=end)
    try:
        return trips_and_stops(caller.conn, device_id, start, end, rules, stops=action == "stops").as_json()
    except AnalyticsError as error:
        raise _unprocessable(error) from None


@router.get("/{device_id}/trips", response_class=JSONResponse, responses={200: {"model": TripsOut}},
            summary="Trips from positions and ignition (audited); defaults 500 m, 300 s, gap 1 h")
@read_endpoint
def get_trips(
    device_id: DeviceId, caller: Annotated[Caller, Depends(get_caller)], start: From, end: To,
    trip_min_m: Number = None, trip_min_s: Number = None, stop_min_s: Number = None, gap_s: Number = None,
    moving_kmh: Number = None, use_ignition: bool = True,
) -> Response:
    rules = _rules(trip_min_m, trip_min_s, stop_min_s, gap_s, moving_kmh, use_ignition)
    body = _motion(caller, device_id, start, end, rules, "trips")
    return Response(orjson.dumps({"motion_from": body["motion_from"], "trips": body["trips"]}),
                    media_type=JSON)


@router.get("/{device_id}/stops", response_class=JSONResponse, responses={200: {"model": StopsOut}},
            summary="Stops between trips, where and how long (audited); a stop lasts >= 300 s")
@read_endpoint
def get_stops(
    device_id: DeviceId, caller: Annotated[Caller, Depends(get_caller)], start: From, end: To,
    trip_min_m: Number = None, trip_min_s: Number = None, stop_min_s: Number = None, gap_s: Number = None,
    moving_kmh: Number = None, use_ignition: bool = True,
) -> Response:
    rules = _rules(trip_min_m, trip_min_s, stop_min_s, gap_s, moving_kmh, use_ignition)
    body = _motion(caller, device_id, start, end, rules, "stops")
    return Response(orjson.dumps({"motion_from": body["motion_from"], "stops": body["stops"]}),
                    media_type=JSON)
