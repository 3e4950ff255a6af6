"""A server-side watcher's event goes through the API's event workflow like a device's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.watchers.config import parse_watchers_config
from cloud.watchers.job import run_once
from tests.cloud.api.conftest import NOW_NS, Api, register

NOW = datetime.fromtimestamp(NOW_NS / 1e9, UTC)


def test_an_offline_event_is_listed_acknowledged_and_cleared(api: Api) -> None:
    register(api.conn, "veh-w")
    api.conn.execute("UPDATE devices SET registered_at = %s", (NOW - timedelta(days=10),))
    api.conn.execute("INSERT INTO device_latest (device_id, last_received_at) VALUES ('veh-w', %s)",
                     (NOW - timedelta(hours=50),))
    watch = parse_watchers_config({"enabled": True})
    assert run_once(api.conn, watch, NOW).raised["offline"] == ["veh-w"]
    listed = api.get("/events", params={"device_id": "veh-w"}).json()["items"]
    assert [(e["detector"], e["state"]) for e in listed] == [("server.offline", "open")]
    event_id = listed[0]["event_id"]
    assert event_id < 0
    assert api.get(f"/devices/veh-w/events/{event_id}").status_code == 200
    acked = api.post(f"/devices/veh-w/events/{event_id}/acknowledge", json={"comment": "calling the owner"})
    assert acked.status_code == 200, acked.text
    api.conn.execute("UPDATE device_latest SET last_received_at = %s", (NOW,))
    assert run_once(api.conn, watch, NOW + timedelta(minutes=5)).cleared["offline"] == ["veh-w"]
    detail = api.get(f"/devices/veh-w/events/{event_id}").json()
    assert detail["state"] == "resolved"
