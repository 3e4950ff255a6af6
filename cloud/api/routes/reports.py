"""Reports of one device: daily summaries over a range, the 30-day vehicle report (JSON, CSV)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.reports import (
    MAX_SUMMARY_DAYS,
    REPORT_DAYS,
    daily_summaries,
    report_csv,
    time_zone_of,
    vehicle_report,
)
from cloud.api.auth import Caller, get_caller, require_device_access
from cloud.api.problems import Problem
from cloud.api.routes.devices import DeviceId
from cloud.api.times import Day

router = APIRouter(prefix="/devices", tags=["reports"])


def _unprocessable(error: AnalyticsError) -> Problem:
    return Problem(422, "Unprocessable Content", str(error), kind="invalid-request")


@router.get("/{device_id}/summaries", response_class=JSONResponse,
            summary=f"Daily summaries for local days from..to (at most {MAX_SUMMARY_DAYS})")
def get_summaries(
    device_id: DeviceId, caller: Annotated[Caller, Depends(get_caller)],
    first: Annotated[Day, Query(alias="from", description="first local day, YYYY-MM-DD")],
    last: Annotated[Day, Query(alias="to", description="last local day (inclusive)")],
) -> JSONResponse:
    require_device_access(caller, device_id, action="summaries")
    try:
        rows = daily_summaries(caller.conn, device_id, first, last)
    except AnalyticsError as error:
        raise _unprocessable(error) from None
    return JSONResponse({"device_id": device_id, "days": rows})


@router.get(
    "/{device_id}/report",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}},
                     "description": "the vehicle report; format=csv gives one part (days, stationary or "
                                    "events) as CSV"}},
    summary="The vehicle report of the last `days` local days up to last_day (stationary places: audited)",
)
def get_report(
    device_id: DeviceId, caller: Annotated[Caller, Depends(get_caller)],
    last_day: Annotated[Day | None, Query(description="last local day (default: today there)")] = None,
    days: Annotated[int, Query(ge=1, le=92)] = REPORT_DAYS,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    part: Annotated[Literal["days", "stationary", "events"], Query(description="CSV part")] = "days",
) -> Response:
    time_zone = time_zone_of(caller.conn, device_id) or "UTC"
    zone = ZoneInfo(time_zone)
    if last_day is None:
        last_day = caller.now().astimezone(zone).date()
    start = datetime.combine(last_day - timedelta(days=days - 1), time(0), zone)
    end = datetime.combine(last_day + timedelta(days=1), time(0), zone)
    require_device_access(caller, device_id, action="report", location=True, range_from=start, range_to=end)
    try:
        report: dict[str, Any] = vehicle_report(caller.conn, device_id, last_day, days=days,
                                                time_zone=time_zone)
        if format == "csv":
            name = f"{device_id}-{report['first_day']}-{report['last_day']}-{part}.csv"
            return Response(report_csv(report, part), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    except AnalyticsError as error:
        raise _unprocessable(error) from None
    return JSONResponse(report)
