"""Devices: list (filters, pagination, roles), detail (latest state, audited), register and provision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from protocol.messages import PowerState, Severity, Transition
from tests.cloud.api.conftest import NOW_NS, Api, S, event, fixes, register, status, store
from tests.cloud.api.test_app import is_problem

POLYGON = {"type": "Polygon", "coordinates": [[[13.0, 52.3], [13.8, 52.3], [13.8, 52.7], [13.0, 52.7],
                                               [13.0, 52.3]]]}


def fleet(api: Api) -> None:
    """veh-01..veh-05: 01 online, ALERT open, SLEEP; 02 offline two days, EMERGENCY escalated;
    03 suspended, never heard from; 04 online, its event cleared by the device; 05 nothing."""
    for n in range(1, 6):
        register(api.conn, f"veh-0{n}", assign_to="account-manager-1" if n in (1, 2) else None)
    api.conn.execute("UPDATE devices SET monitoring_state = 'suspended' WHERE device_id = 'veh-03'")
    old = NOW_NS - 2 * 86400 * S
    store(api.conn, [
        fixes("veh-02", 1, old), status("veh-02", 2, old, PowerState.DEEP_SLEEP),
        event("veh-02", 3, 21, old, Severity.WARNING),
        event("veh-02", 4, 21, old + S, Severity.EMERGENCY, transition=Transition.ESCALATED),
    ], received_ns=old + 2 * S)
    store(api.conn, [
        fixes("veh-01", 1, NOW_NS - 60 * S), status("veh-01", 2, NOW_NS - 30 * S),
        event("veh-01", 3, 11, NOW_NS - 50 * S, Severity.ALERT),
        fixes("veh-04", 1, NOW_NS - 10 * S), status("veh-04", 2, NOW_NS - 10 * S, PowerState.ACTIVE),
        event("veh-04", 3, 41, NOW_NS - 9 * S, Severity.EMERGENCY),
        event("veh-04", 4, 41, NOW_NS - 8 * S, Severity.EMERGENCY, transition=Transition.CLEARED),
    ])


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [d["device_id"] for d in response.json()["items"]]


def test_the_list_filters_by_state_online_seen_and_open_severity(api: Api) -> None:
    fleet(api)
    assert ids(api.get("/devices")) == ["veh-01", "veh-02", "veh-03", "veh-04", "veh-05"]
    assert ids(api.get("/devices", params={"online": "true"})) == ["veh-01", "veh-04"]
    assert ids(api.get("/devices", params={"online": "false"})) == ["veh-02", "veh-03", "veh-05"]
    assert ids(api.get("/devices", params={"state": "suspended"})) == ["veh-03"]
    assert ids(api.get("/devices", params={"power_state": "DEEP_SLEEP"})) == ["veh-02"]
    assert ids(api.get("/devices", params={"severity": "ALERT"})) == ["veh-01", "veh-02"]
    assert ids(api.get("/devices", params={"severity": "EMERGENCY"})) == ["veh-02"]  # 04's was cleared
    day_ago = "2000-01-01T00:00:00Z"
    assert ids(api.get("/devices", params={"seen_after": day_ago})) == ["veh-01", "veh-02", "veh-04"]
    first = api.get("/devices").json()["items"][0]
    assert first["open_events"] == 1 and first["open_max_severity"] == "ALERT" and first["online"]
    assert first["power_state"] == "SLEEP"
    is_problem(api.get("/devices", params={"severity": "BAD"}), 422)
    is_problem(api.get("/devices", params={"seen_after": "yesterday"}), 422)


def test_the_list_pages_by_cursor_without_gaps_or_repeats(api: Api) -> None:
    for n in range(23):
        register(api.conn, f"veh-{n:03d}")
    seen: list[str] = []
    page = api.get("/devices", params={"limit": 5}).json()
    while True:
        seen += [d["device_id"] for d in page["items"]]
        if not page["next_cursor"]:
            break
        register(api.conn, f"veh-{len(seen):03d}x")  # added while paging: after the cursor, still seen
        page = api.get("/devices", params={"limit": 5, "cursor": page["next_cursor"]}).json()
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {f"veh-{n:03d}" for n in range(23)} <= set(seen)
    is_problem(api.get("/devices", params={"limit": 0}), 422)
    is_problem(api.get("/devices", params={"limit": 501}), 422)


def test_each_role_sees_what_it_should_in_the_list(api: Api) -> None:
    fleet(api)
    assert len(ids(api.get("/devices", role="admin"))) == 5
    assert ids(api.get("/devices", role="account_manager")) == ["veh-01", "veh-02"]
    is_problem(api.get("/devices", role="auditor"), 403)
    refused = api.audit_rows(action="devices.list")
    assert [(r["user_name"], r["allowed"], r["status"]) for r in refused] == [("auditor-1", False, 403)]


def test_the_detail_shows_the_latest_state_and_is_audited(api: Api) -> None:
    fleet(api)
    body = api.get("/devices/veh-01").json()
    assert body["position"]["lat_deg"] == pytest.approx(52.5202) and 57 <= body["position"]["age_s"] <= 59
    assert body["status"]["power_state"] == "SLEEP" and body["status"]["supply_v"] == pytest.approx(12.4)
    assert body["status"]["backup_v"] == pytest.approx(3.9)
    assert body["status"]["energy_forecast_days"] == pytest.approx(61.5)
    assert body["status"]["firmware"] == "1.4.2" and body["status"]["config_version"] == 7
    assert body["ignition"] == {"on": False, "time": None, "source": "power_state"}
    opened = [(e["event_id"], e["severity"], e["state"]) for e in body["open_events"]]
    assert opened == [(11, "ALERT", "open")]
    assert body["online"] is True
    assert api.get("/devices/veh-04").json()["ignition"]["on"] is True
    assert api.get("/devices/veh-04").json()["open_events"] == []
    rows = api.audit_rows(action="device.detail", device_id="veh-01")
    assert [(r["user_name"], r["allowed"], r["client_addr"]) for r in rows] == [("risk-officer-1", True,
                                                                                  "testclient")]


def test_detail_refusals_are_refused_and_audited(api: Api) -> None:
    fleet(api)
    assert api.get("/devices/veh-01", role="account_manager").status_code == 200
    is_problem(api.get("/devices/veh-04", role="account_manager"), 403)
    is_problem(api.get("/devices/veh-01", role="auditor"), 403)
    is_problem(api.get("/devices/veh-99"), 404)
    is_problem(api.get("/devices/bad id!"), 422)
    rows = api.audit_rows(action="device.detail")
    assert [(r["device_id"], r["user_name"], r["allowed"], r["status"]) for r in rows] == [
        ("veh-01", "account-manager-1", True, 200), ("veh-04", "account-manager-1", False, 403),
        ("veh-01", "auditor-1", False, 403), ("veh-99", "risk-officer-1", False, 404)]


def test_an_account_manager_does_not_see_a_position_older_than_the_window(api: Api) -> None:
    register(api.conn, "veh-old", assign_to="account-manager-1")
    store(api.conn, [fixes("veh-old", 1, NOW_NS - 40 * 86400 * S)])
    assert api.get("/devices/veh-old", role="account_manager").json()["position"] is None
    position = api.get("/devices/veh-old", role="risk_officer").json()["position"]
    assert position["lat_deg"] == pytest.approx(52.5202)


def test_register_and_provision_a_device(api: Api) -> None:
    body = {"device_id": "veh-new", "vin": "wvwzzz1kzaw000042", "time_zone": "Europe/Berlin",
            "contract_region": "Berlin", "contract_polygon": POLYGON,
            "points_of_interest": [{"name": "home", "kind": "home", "lat_deg": 52.5, "lon_deg": 13.4}]}
    created = api.post("/devices", json=body)
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["vin"] == "WVWZZZ1KZAW000042" and device["time_zone"] == "Europe/Berlin"
    assert device["contract_polygon"] == POLYGON and device["monitoring_state"] == "active"
    assert device["points_of_interest"] == [{"name": "home", "kind": "home", "lat_deg": 52.5, "lon_deg": 13.4,
                                             "radius_m": 200.0}]
    is_problem(api.post("/devices", json=body), 409)
    changed = api.patch("/devices/veh-new", json={
        "monitoring_state": "suspended", "contract_polygon": None,
        "points_of_interest": [{"name": "work", "kind": "work", "lat_deg": 52.4, "lon_deg": 13.3,
                                "radius_m": 50}]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["monitoring_state"] == "suspended" and changed.json()["contract_polygon"] is None
    assert [p["name"] for p in changed.json()["points_of_interest"]] == ["work"]
    assert changed.json()["vin"] == "WVWZZZ1KZAW000042"  # untouched
    assert api.patch("/devices/veh-new", json={"time_zone": "Asia/Tokyo"}).json()["time_zone"] == "Asia/Tokyo"
    is_problem(api.patch("/devices/veh-nope", json={"time_zone": "UTC"}), 404)


def test_coordinates_are_kept_to_the_protocol_resolution(api: Api) -> None:
    """1e-7 degree, as on the wire: a subnormal double (5e-324, from the OpenAPI fuzz) is stored as
    0 instead of failing PostgreSQL's float arithmetic (haversine) with "underflow" later."""
    tiny = 5e-324
    ring = [[tiny, -tiny], [13.8, 52.3], [13.8, 52.123456789], [tiny, -tiny]]
    created = api.post("/devices", json={
        "device_id": "veh-tiny", "contract_polygon": {"type": "Polygon", "coordinates": [ring]},
        "points_of_interest": [{"name": "home", "lat_deg": -tiny, "lon_deg": 13.123456789, "radius_m": 1}]})
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["points_of_interest"][0] | {"kind": None} == {
        "name": "home", "kind": None, "lat_deg": 0.0, "lon_deg": 13.1234568, "radius_m": 1.0}
    assert device["contract_polygon"]["coordinates"] == [[[0.0, 0.0], [13.8, 52.3], [13.8, 52.1234568],
                                                          [0.0, 0.0]]]
    row = api.conn.execute("SELECT lienwatch_haversine_km(lat_deg, lon_deg, 1e-7, 13.1234568) * 1000 "
                           "FROM points_of_interest WHERE device_id = 'veh-tiny'").fetchone()
    assert row is not None and row[0] == pytest.approx(0.011, abs=0.002)


@pytest.mark.parametrize("change", [
    {"device_id": "Veh-Upper"},
    {"vin": "IOQ12345678901234"},
    {"time_zone": "Mars/Olympus"},
    {"contract_polygon": {"type": "Polygon", "coordinates": [[[13.0, 52.3], [13.8, 52.3], [13.0, 52.3]]]}},
    {"contract_polygon": {"type": "Polygon", "coordinates": [[[13.0, 52.3], [13.8, 52.3], [13.8, 52.7],
                                                              [13.0, 52.7]]]}},
    {"contract_polygon": {"type": "Polygon", "coordinates": [[[200.0, 52.3], [13.8, 52.3], [13.8, 52.7],
                                                              [200.0, 52.3]]]}},
    {"contract_polygon": {"type": "Point", "coordinates": [13.0, 52.3]}},
    {"points_of_interest": [{"name": "home", "kind": "castle", "lat_deg": 1, "lon_deg": 1}]},
    {"points_of_interest": [{"name": "home", "lat_deg": 91, "lon_deg": 1}]},
    {"points_of_interest": [{"name": "home", "lat_deg": 1, "lon_deg": 1, "radius_m": 5e-324}]},
    {"points_of_interest": [{"name": "home", "lat_deg": 1, "lon_deg": 1, "radius_m": 0.5}]},
    {"points_of_interest": [{"name": "a", "lat_deg": 1, "lon_deg": 1},
                            {"name": "A", "lat_deg": 1, "lon_deg": 1}]},
    {"surprise": True},
])
def test_registration_refuses_bad_input(api: Api, change: dict[str, Any]) -> None:
    body = {"device_id": "veh-bad", **change}
    is_problem(api.post("/devices", json=body), 422)
    assert api.conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_only_admins_and_risk_officers_register(api: Api) -> None:
    for role in ("account_manager", "auditor"):
        is_problem(api.post("/devices", role=role, json={"device_id": f"veh-{role[:3]}"}), 403)
    assert [r["user_name"] for r in api.audit_rows(action="device.register")] == ["account-manager-1",
                                                                                   "auditor-1"]
    assert api.post("/devices", role="admin", json={"device_id": "veh-admin"}).status_code == 201


@pytest.mark.parametrize("at", [datetime(2026, 12, 3, 15, 12, 41, tzinfo=UTC),
                                datetime(2026, 12, 3, 15, 12, 41, 123456, tzinfo=UTC),
                                datetime(2026, 12, 3, 15, 12, 41, 500, tzinfo=timezone(timedelta(hours=2)))])
def test_the_list_page_is_written_as_its_model_would_be(at: datetime) -> None:
    """devices.page_json (orjson) writes byte for byte what DevicePage.model_dump_json writes."""
    from cloud.api.routes.devices import DevicePage, DeviceSummary, page_json

    rows: list[dict[str, Any]] = [
        {"device_id": "veh-1", "vin": "WVWZZZ1KZAW000042", "time_zone": "Europe/Berlin",
         "contract_region": "DE-BE", "monitoring_state": "active", "registered_at": at,
         "last_seen_at": None, "online": False, "power_state": "SLEEP", "open_events": 2,
         "open_max_severity": "EMERGENCY"},
        {"device_id": "veh-2", "vin": None, "time_zone": "UTC", "contract_region": "",
         "monitoring_state": "retired", "registered_at": at, "last_seen_at": at, "online": True,
         "power_state": None, "open_events": 0, "open_max_severity": None}]
    for cursor in (None, "abc"):
        model = DevicePage(items=[DeviceSummary(**r) for r in rows], next_cursor=cursor)
        assert page_json(rows, cursor) == model.model_dump_json().encode()
