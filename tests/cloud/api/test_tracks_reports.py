"""Track, trips, stops, summaries and report endpoints: answers, roles, audit, garbage refused."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.cloud.api.conftest import NOW_NS, Api, event, register, store
from tests.cloud.seed import Scenario, write

NOW = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
DAY_AGO = NOW - timedelta(days=1)


def seed(api: Api, device_id: str = "veh-1", *, assign_to: str | None = None) -> Scenario:
    register(api.conn, device_id, assign_to=assign_to)
    s = Scenario(DAY_AGO, 52.5, 13.4).park(600).drive_north(900, 36).park(1200)
    write(api.conn, device_id, s)
    return s


def q(start: datetime, end: datetime, **more: Any) -> dict[str, Any]:
    return {"from": start.isoformat(), "to": end.isoformat(), **more}


def test_track_is_geojson_simplified_and_audited(api: Api) -> None:
    s = seed(api)
    params = q(DAY_AGO, NOW)
    raw = api.get("/devices/veh-1/track", params=params)
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/geo+json"
    assert raw.json()["properties"]["fixes"] == len(s.fixes)
    small = api.get("/devices/veh-1/track", params={**params, "tolerance_m": 10, "events": "true"})
    assert small.status_code == 200
    assert 2 <= small.json()["properties"]["points"] < len(s.fixes) / 10
    rows = api.audit_rows(action="track", device_id="veh-1")
    assert len(rows) == 2 and all(r["allowed"] and r["status"] == 200 for r in rows)
    assert rows[0]["range_from"] == DAY_AGO and rows[0]["range_to"] == NOW
    assert rows[0]["user_name"] == "risk-officer-1" and rows[0]["path"] == "/devices/veh-1/track"


def test_events_on_the_track_carry_detail_except_for_account_managers(api: Api) -> None:
    seed(api, "veh-mine", assign_to="account-manager-1")
    at_ns = NOW_NS - 3600 * 10**9
    store(api.conn, [event("veh-mine", 1, 77, at_ns)])
    api.conn.execute("UPDATE events SET detail = 'driver door opened, cabin camera on' WHERE event_id = 77")
    params = q(DAY_AGO, NOW, events="true", tolerance_m=10)
    for role, detail in (("risk_officer", "driver door opened, cabin camera on"), ("account_manager", None)):
        answer = api.get("/devices/veh-mine/track", role, params=params)
        assert answer.status_code == 200, answer.text
        shown = [f["properties"] for f in answer.json()["features"] if f["properties"]["kind"] == "event"]
        assert [(p["event_id"], p["detector"], p["detail"]) for p in shown] == [(77, "tow", detail)]


def test_trips_and_stops_endpoints(api: Api) -> None:
    seed(api)
    trips = api.get("/devices/veh-1/trips", params=q(DAY_AGO, NOW))
    assert trips.status_code == 200, trips.text
    body = trips.json()
    assert body["motion_from"] == "speed" and len(body["trips"]) == 1
    assert body["trips"][0]["distance_m"] == pytest.approx(9000, rel=0.02)
    stops = api.get("/devices/veh-1/stops", params=q(DAY_AGO, NOW)).json()["stops"]
    assert [round(s["duration_s"] / 60) for s in stops] == [10, 20]
    # Overridden rules: a 10 km minimum leaves no trip, and one stop over the whole day.
    none = api.get("/devices/veh-1/trips", params=q(DAY_AGO, NOW, trip_min_m=10_000)).json()
    assert none["trips"] == []
    assert {r["action"] for r in api.audit_rows(device_id="veh-1")} == {"trips", "stops"}


def test_roles_and_the_account_managers_window(api: Api) -> None:
    seed(api, "veh-mine", assign_to="account-manager-1")
    seed(api, "veh-other")
    old = NOW - timedelta(days=45)
    assert api.get("/devices/veh-mine/track", "account_manager", params=q(DAY_AGO, NOW)).status_code == 200
    refused = api.get("/devices/veh-mine/track", "account_manager", params=q(old, NOW))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    other = api.get("/devices/veh-other/trips", "account_manager", params=q(DAY_AGO, NOW))
    assert other.status_code == 403
    assert api.get("/devices/veh-mine/stops", "auditor", params=q(DAY_AGO, NOW)).status_code == 403
    assert api.get("/devices/veh-mine/track", "admin", params=q(old, NOW)).status_code == 200
    refusals = [r for r in api.audit_rows() if not r["allowed"]]
    assert {(r["action"], r["device_id"], r["role"]) for r in refusals} == {
        ("track", "veh-mine", "account_manager"), ("trips", "veh-other", "account_manager"),
        ("stops", "veh-mine", "auditor")}
    assert api.get("/devices/veh-none/track", params=q(DAY_AGO, NOW)).status_code == 404


@pytest.mark.parametrize("path,params", [
    ("/devices/veh-1/track", {"from": "yesterday", "to": "now"}),
    ("/devices/veh-1/track", {"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00"}),  # no zone
    ("/devices/veh-1/track", {"to": "2026-01-02T00:00:00Z"}),
    ("/devices/veh-1/track", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("/devices/veh-1/track", {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("/devices/veh-1/track", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                              "tolerance_m": "nan"}),
    ("/devices/veh-1/track", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                              "tolerance_m": "-3"}),
    ("/devices/veh-1/track", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                              "events": "perhaps"}),
    ("/devices/veh-1/trips", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                              "gap_s": "0"}),
    ("/devices/veh-1/stops", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                              "moving_kmh": "inf"}),
    ("/devices/veh-1/summaries", {"from": "2026-02-30", "to": "2026-03-01"}),
    ("/devices/veh-1/summaries", {"from": "2026-03-02", "to": "2026-03-01"}),
    ("/devices/veh-1/report", {"days": "0"}),
    ("/devices/veh-1/report", {"format": "pdf"}),
    ("/devices/veh-1/report", {"format": "csv", "part": "all"}),
])
def test_garbage_parameters_are_refused_as_problems(api: Api, path: str, params: dict[str, str]) -> None:
    register(api.conn, "veh-1")
    answer = api.get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 422 and answer.json()["detail"]


def test_summaries_and_report_json_csv(api: Api) -> None:
    seed(api)
    today = NOW.date()
    summaries = api.get("/devices/veh-1/summaries",
                        params={"from": (today - timedelta(days=3)).isoformat(), "to": today.isoformat()})
    assert summaries.status_code == 200 and summaries.json()["device_id"] == "veh-1"
    report = api.get("/devices/veh-1/report")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["last_day"] == today.isoformat() and len(body["days"]) == 30
    assert body["totals"]["trips"] == 1
    as_csv = api.get("/devices/veh-1/report", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [row["day"] for row in table] == [d["day"] for d in body["days"]]
    assert api.audit_rows(action="report")[0]["allowed"]
    assert api.get("/devices/veh-1/report", "auditor").status_code == 403
