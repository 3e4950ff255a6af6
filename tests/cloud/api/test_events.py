"""Events: filters, pagination, counts by severity, lifecycle with user and comment, roles, audit."""

from __future__ import annotations

from typing import Any

from protocol.messages import Severity, Transition
from tests.cloud.api.conftest import NOW_NS, Api, S, event, register, store
from tests.cloud.api.test_app import is_problem


def alarms(api: Api) -> None:
    """veh-a (assigned to the account manager): 1 WARNING→EMERGENCY, 2 ALERT cleared, 3 tow ALERT;
    veh-b: 4 unplug WARNING, and 30 older jamming WARNINGs for paging."""
    register(api.conn, "veh-a", assign_to="account-manager-1")
    register(api.conn, "veh-b")
    store(api.conn, [
        event("veh-a", 1, 1, NOW_NS - 600 * S, Severity.WARNING, "jamming"),
        event("veh-a", 2, 1, NOW_NS - 590 * S, Severity.EMERGENCY, "jamming", Transition.ESCALATED),
        event("veh-a", 3, 2, NOW_NS - 500 * S, Severity.ALERT, "unplug"),
        event("veh-a", 4, 2, NOW_NS - 490 * S, Severity.ALERT, "unplug", Transition.CLEARED),
        event("veh-a", 5, 3, NOW_NS - 400 * S, Severity.ALERT, "tow"),
        event("veh-b", 1, 4, NOW_NS - 300 * S, Severity.WARNING, "unplug"),
        *(event("veh-b", 10 + n, 100 + n, NOW_NS - (5000 + n) * S, Severity.WARNING, "jamming")
          for n in range(30)),
    ])


def items(response: Any) -> list[tuple[str, int]]:
    assert response.status_code == 200, response.text
    return [(e["device_id"], e["event_id"]) for e in response.json()["items"]]


def test_filters_by_severity_detector_state_device_and_time(api: Api) -> None:
    alarms(api)
    assert items(api.get("/events", params={"severity": "EMERGENCY"})) == [("veh-a", 1)]
    newest_first = [("veh-a", 3), ("veh-a", 2), ("veh-a", 1)]
    assert items(api.get("/events", params={"severity": "ALERT"})) == newest_first
    assert items(api.get("/events", params={"detector": "unplug"})) == [("veh-b", 4), ("veh-a", 2)]
    assert items(api.get("/events", params={"state": "cleared"})) == [("veh-a", 2)]
    assert items(api.get("/events", params={"device_id": "veh-a"})) == newest_first
    window = {"since": "2000-01-01T00:00:00Z", "until": api.get("/events").json()["items"][1]["raised_at"]}
    assert items(api.get("/events", params={**window, "device_id": "veh-a"})) == [("veh-a", 2), ("veh-a", 1)]
    first = api.get("/events", params={"device_id": "veh-a", "detector": "jamming"}).json()["items"][0]
    assert first["severity"] == "EMERGENCY" and first["transitions"] == 2 and first["state"] == "open"
    assert first["evidence"] == {"distance_m": 120.0}
    for bad in ({"severity": "LOUD"}, {"state": "gone"}, {"device_id": "a b"}, {"since": "noon"},
                {"limit": 0}, {"cursor": "!!"}):
        is_problem(api.get("/events", params=bad), 422)


def test_pages_cover_every_event_once(api: Api) -> None:
    alarms(api)
    seen: list[tuple[str, int]] = []
    page = api.get("/events", params={"limit": 7}).json()
    while True:
        seen += [(e["device_id"], e["event_id"]) for e in page["items"]]
        if not page["next_cursor"]:
            break
        page = api.get("/events", params={"limit": 7, "cursor": page["next_cursor"]}).json()
    assert len(seen) == len(set(seen)) == 34


def test_counts_by_severity_for_the_dashboard(api: Api) -> None:
    alarms(api)
    assert api.get("/events/counts").json() == {"WARNING": 31, "ALERT": 1, "EMERGENCY": 1, "total": 33}
    counts = api.get("/events/counts", params={"state": ["cleared", "open"], "device_id": "veh-a"}).json()
    assert counts == {"WARNING": 0, "ALERT": 2, "EMERGENCY": 1, "total": 3}
    assert api.get("/events/counts", role="account_manager").json()["total"] == 2
    is_problem(api.get("/events/counts", role="auditor"), 403)


def test_lifecycle_open_acknowledged_resolved_with_user_and_comment(api: Api) -> None:
    alarms(api)
    base = "/devices/veh-a/events/3"
    acked = api.post(f"{base}/acknowledge", json={"comment": "calling the borrower"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acknowledged" and acked.json()["state_changed_by"] == "risk-officer-1"
    is_problem(api.post(f"{base}/acknowledge", json={}), 409)
    resolved = api.post(f"{base}/resolve", role="account_manager", json={"comment": "car is at the dealer"})
    assert resolved.json()["state"] == "resolved"
    assert [(a["action"], a["user_name"], a["comment"]) for a in resolved.json()["actions"]] == [
        ("acknowledge", "risk-officer-1", "calling the borrower"),
        ("resolve", "account-manager-1", "car is at the dealer")]
    is_problem(api.post(f"{base}/resolve", json={}), 409)
    is_problem(api.post("/devices/veh-a/events/2/acknowledge", json={}), 409)  # cleared by the device
    is_problem(api.post("/devices/veh-a/events/999/resolve", json={}), 404)
    is_problem(api.post(f"{base}/resolve", json={"comment": "x" * 1001}), 422)
    is_problem(api.post(f"{base}/resolve", json={"note": "typo"}), 422)
    assert items(api.get("/events", params={"state": "resolved"})) == [("veh-a", 3)]


def test_an_event_detail_has_its_transitions_and_is_audited(api: Api) -> None:
    alarms(api)
    detail = api.get("/devices/veh-a/events/1").json()
    assert [(h["transition"], h["severity"]) for h in detail["history"]] == [("raised", "WARNING"),
                                                                            ("escalated", "EMERGENCY")]
    is_problem(api.get("/devices/veh-a/events/77"), 404)
    is_problem(api.get("/devices/veh-a/events/-1"), 404)  # negative: a server watcher's id (none here)
    is_problem(api.get(f"/devices/veh-a/events/{2**63}"), 422)
    assert [r["allowed"] for r in api.audit_rows(action="event.detail")] == [True, True, True]  # then 404s


def test_roles_see_what_they_should_and_refusals_are_audited(api: Api) -> None:
    alarms(api)
    managed = api.get("/events", role="account_manager").json()["items"]
    assert {e["device_id"] for e in managed} == {"veh-a"} and len(managed) == 3
    assert all(e["evidence"] is None and e["detail"] is None for e in managed)  # no cabin/door detail
    assert api.get("/devices/veh-a/events/1", role="account_manager").json()["evidence"] is None
    is_problem(api.get("/events", role="account_manager", params={"device_id": "veh-b"}), 403)
    is_problem(api.post("/devices/veh-b/events/4/acknowledge", role="account_manager", json={}), 403)
    is_problem(api.get("/events", role="auditor"), 403)
    refused = [(r["action"], r["user_name"], r["device_id"]) for r in api.audit_rows(allowed=False)]
    assert refused == [("events.list", "account-manager-1", "veh-b"),
                       ("event.acknowledge", "account-manager-1", "veh-b"), ("events", "auditor-1", None)]
    listed = api.audit_rows(action="events.list", allowed=True)
    assert [r["user_name"] for r in listed] == ["account-manager-1"]


def test_a_record_sent_raised_and_cleared_at_once_is_listed_as_cleared(api: Api) -> None:
    from protocol.messages import InterruptState
    from tests.cloud.api.test_interrupt import _interrupt_event

    register(api.conn, "veh-1")
    store(api.conn, [_interrupt_event(1, NOW_NS - 60 * S, InterruptState.ARMED, "armed")])
    listed = api.get("/events", params={"device_id": "veh-1"}).json()["items"]
    assert [(e["event_id"], e["detector"], e["state"], e["transitions"]) for e in listed] == [
        (1001, "starter_interrupt", "cleared", 1)]
    assert items(api.get("/events", params={"state": "cleared"})) == [("veh-1", 1001)]
    assert api.get("/events/counts").json()["total"] == 0  # a record, not an open alert


def test_pages_stay_stable_with_ties_in_time(api: Api) -> None:
    for n in range(6):
        register(api.conn, f"veh-t{n}")
    store(api.conn, [event(f"veh-t{n}", k, k, NOW_NS - 100 * S) for n in range(6) for k in (1, 2)])
    seen: list[tuple[str, int]] = []
    page = api.get("/events", params={"limit": 5}).json()
    while True:
        seen += [(e["device_id"], e["event_id"]) for e in page["items"]]
        if not page["next_cursor"]:
            break
        page = api.get("/events", params={"limit": 5, "cursor": page["next_cursor"]}).json()
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 12


def test_the_list_reads_its_page_by_index(api: Api) -> None:
    register(api.conn, "veh-x")
    store(api.conn, [event("veh-x", n, n, NOW_NS - n * S) for n in range(1, 200)])
    api.conn.execute("ANALYZE event_lifecycle")
    plan = "\n".join(r[0] for r in api.conn.execute(
        "EXPLAIN SELECT * FROM event_lifecycle lc ORDER BY lc.event_time DESC, lc.device_id DESC, "
        "lc.event_id DESC LIMIT 100").fetchall())
    assert "Index Scan Backward using" in plan and "Sort" not in plan, plan
