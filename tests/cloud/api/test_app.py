"""The app itself: health, readiness, metrics, problem+json for every error, headers, CORS,
authentication (refusals audited), rate limits, keys and the audit log read."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.keys import create_key
from cloud.store.db import connect
from lienwatch.clock import ManualClock
from tests.cloud.api.conftest import NOW_NS, Api, config_for, register
from tests.cloud.conftest import STORAGE

PROBLEM = "application/problem+json"


def is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    assert "Traceback" not in response.text
    return body


def test_health_ready_and_metrics(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["schema_version"] >= 6
    assert ready.json()["storage"] == STORAGE
    api.get("/devices")
    text = api.client.get("/metrics").text
    assert 'lienwatch_api_requests_total{method="GET",route="/devices",status="200"} 1.0' in text


def test_readyz_says_when_the_schema_is_behind(fresh_db: str) -> None:
    from cloud.store.migrate import migrate

    migrate(fresh_db, mode="plain", until=5)
    with TestClient(create_app(config_for(fresh_db))) as client:
        body = is_problem(client.get("/readyz"), 503)
        assert "needs" in body["detail"] and "migrate" in body["detail"]


def test_readyz_says_when_the_database_is_unreachable() -> None:
    dsn = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    with TestClient(create_app(config_for(dsn))) as client:
        assert client.get("/healthz").status_code == 200
        is_problem(client.get("/readyz"), 503)


def test_every_error_is_problem_json_never_a_trace(api: Api) -> None:
    body = is_problem(api.get("/no/such/thing"), 404)
    assert "/openapi.json" in body["detail"]
    is_problem(api.client.delete("/healthz"), 405)
    body = is_problem(api.get("/devices", params={"limit": "many"}), 422)
    assert body["errors"][0]["field"] == "query.limit"
    is_problem(api.get("/devices", params={"cursor": "not a cursor!"}), 422)
    is_problem(api.post("/devices", role="admin", content=b"{not json",
                        headers={"content-type": "application/json"}), 422)


def test_nul_anywhere_in_a_request_is_refused_not_a_500(api: Api) -> None:
    """PostgreSQL text cannot hold U+0000; psycopg refuses it with a DataError, which would be a
    500 (the OpenAPI fuzz found it in GET /events). Path, query and JSON bodies are refused as 422."""
    register(api.conn, "gw-nul")
    for path, params in [("/events", {"detector": "tow\x00"}), ("/devices", {"cursor": "a\x00b"}),
                         ("/devices/gw-nul/track", {"from": "2026-01-01T00:00:00Z\x00"}),
                         ("/audit", {"user_name": "\x00"})]:
        body = is_problem(api.get(path, role="admin", params=params), 422)
        assert body["errors"][0]["field"] == "query" and "NUL" in body["detail"]
    body = is_problem(api.get("/devices/gw%00nul", role="admin"), 422)
    assert body["errors"][0]["field"] == "path"
    assert api.get("/devices/gw-nul", role="admin").status_code == 200
    bodies = [
        ("post", "/devices", {"device_id": "gw-nul-2", "vin": "WVWZZZ1JZXW00000\x00"}),
        ("patch", "/devices/gw-nul", {"time_zone": "Europe/Berlin\x00"}),
        ("patch", "/devices/gw-nul", {"points_of_interest": [{"name": "home\x00", "kind": "home",
                                                               "lat": 1.0, "lon": 2.0}]}),
        ("post", "/devices/gw-nul/events/1/acknowledge", {"comment": "seen\x00"}),
        ("post", "/devices/gw-nul/commands", {"kind": "locate", "params": {"note": "x\x00"}}),
    ]
    for method, path, payload in bodies:
        response = getattr(api, method)(path, role="admin", json=payload)
        assert response.status_code == 422, (path, payload, response.text)
        assert any("NUL" in e["message"] for e in is_problem(response, 422)["errors"]), (path, response.text)
    added = api.conn.execute("SELECT count(*) FROM devices WHERE device_id = %s", ("gw-nul-2",)).fetchone()
    assert added == (0,)
    is_problem(api.post("/keys", role="admin", json={"user_name": "bob\x00", "role": "auditor"}), 422)


@pytest.mark.parametrize("path, params", [
    ("/devices/gw-far/track", {"from": "0001-01-01T00:00:01Z", "to": "0001-01-01T01:00:01Z"}),
    ("/devices/gw-far/track", {"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}),
    ("/devices/gw-far/trips", {"from": "0001-01-01T00:00:00+14:00", "to": "2026-01-01T00:00:00Z"}),
    ("/devices/gw-far/stops", {"from": "2199-12-31T00:00:00Z", "to": "2200-01-02T00:00:00Z"}),
    ("/devices/gw-far/summaries", {"from": "0001-01-01", "to": "0001-01-03"}),
    ("/devices/gw-far/report", {"last_day": "9999-12-31"}),
    ("/devices/gw-far/report", {"last_day": "0001-01-01"}),
    ("/events", {"since": "0001-01-01T00:00:00Z"}),
    ("/events/counts", {"since": "9999-12-31T23:59:59-12:00"}),
    ("/devices", {"seen_before": "1969-12-31T23:59:59Z"}),
    ("/audit", {"until": "9999-01-01T00:00:00Z"}),
])
def test_instants_and_days_far_from_now_are_refused_not_a_500(api: Api, path: str,
                                                               params: dict[str, str]) -> None:
    """Year 1 or 9999 overflowed as soon as a range was widened by a day (the OpenAPI fuzz found
    it in the track): every instant and day a request names is bounded to 1970..2200."""
    register(api.conn, "gw-far")
    body = is_problem(api.get(path, role="admin", params=params), 422)
    assert any("out of range" in e["message"] and "1970-01-01 to 2200-01-01" in e["message"]
               for e in body["errors"]), body
    for edge in ({"from": "1970-01-01T00:00:00Z", "to": "1970-01-02T00:00:00Z"},
                 {"from": "2199-12-31T00:00:00Z", "to": "2200-01-01T00:00:00Z"}):
        assert api.get("/devices/gw-far/track", role="admin", params=edge).status_code == 200
    assert api.get("/devices/gw-far/summaries", role="admin",
                   params={"from": "2199-12-30", "to": "2200-01-01"}).status_code == 200


@pytest.mark.parametrize("path, parts", [
    ("/devices", ["gw\x00"]),
    ("/events", ["2026-01-01T00:00:00+00:00", "gw\x00", 1]),
    ("/events", ["0001-01-01T00:00:00+14:00", "gw-cur", 1]),
    ("/events", ["2026-01-01T00:00:00+00:00", "gw-cur", 2**63]),
    ("/devices/gw-cur/commands", ["9999-12-31T23:59:59-12:00", "cmd_1"]),
    ("/devices/gw-cur/commands", ["2026-01-01T00:00:00+00:00", "cmd\x00"]),
    ("/audit", ["0001-01-01T00:00:00+00:00", 5]),
])
def test_a_forged_cursor_is_refused_not_a_500(api: Api, path: str, parts: list[object]) -> None:
    """A cursor is base64url JSON: a NUL (as \\u0000) or a far instant inside it is a 422 too."""
    from cloud.api.pagination import encode_cursor

    register(api.conn, "gw-cur")
    body = is_problem(api.get(path, role="admin", params={"cursor": encode_cursor(*parts)}), 422)
    assert body["type"].endswith("invalid-cursor")


def test_an_unexpected_error_is_a_500_without_detail(migrated_db: str) -> None:
    app = create_app(config_for(migrated_db))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    body = is_problem(response, 500)
    assert "secret" not in response.text and body["type"].endswith("internal-error")


def test_security_headers_and_cors_are_configurable(migrated_db: str) -> None:
    config = config_for(migrated_db, cors={"allow_origins": ["https://console.example"]},
                        security_headers={"Strict-Transport-Security": "max-age=63072000",
                                          "X-Frame-Options": ""})
    with TestClient(create_app(config)) as client:
        response = client.get("/healthz", headers={"Origin": "https://console.example"})
        assert response.headers["access-control-allow-origin"] == "https://console.example"
        assert response.headers["strict-transport-security"] == "max-age=63072000"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "x-frame-options" not in response.headers
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options("/devices", headers={"Origin": "https://console.example",
                                                        "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 200
    with TestClient(create_app(config_for(migrated_db))) as client:
        response = client.get("/healthz", headers={"Origin": "https://console.example"})
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["x-frame-options"] == "DENY"


def test_no_or_a_bad_key_is_refused_and_audited(api: Api) -> None:
    body = is_problem(api.client.get("/devices"), 401)
    assert "Bearer" in body["detail"]
    assert api.client.get("/devices").headers["www-authenticate"].startswith("Bearer")
    admin = api.tokens["admin"]
    altered = admin[:-1] + ("B" if admin.endswith("A") else "A")  # one character changed, never the same key
    for token in ("lw_aaaaaaaaaaaa_" + "x" * 43, altered, "garbage", ""):
        is_problem(api.client.get("/devices/veh-1", headers={"Authorization": f"Bearer {token}"}), 401)
    refused = api.audit_rows(action="authenticate")
    assert len(refused) == 6 and not any(r["allowed"] for r in refused)
    assert {r["path"] for r in refused} == {"/devices", "/devices/veh-1"}
    assert all(r["client_addr"] == "testclient" and r["status"] == 401 for r in refused)


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    me = api.get("/me", role="risk_officer").json()
    assert me["role"] == "risk_officer"
    assert api.client.delete(f"/keys/{me['key_id']}", headers=api.auth("admin")).status_code == 204
    is_problem(api.get("/me", role="risk_officer"), 401)


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "shared-in-postgres"])
def test_rate_limit_per_key_with_retry_after(migrated_db: str, workers: int) -> None:
    clock = ManualClock(wall_ns=NOW_NS)
    app = create_app(config_for(migrated_db, rate_limit={"per_minute": 60, "burst": 3}, workers=workers),
                     clock=clock)
    with connect(migrated_db) as conn, TestClient(app) as client:
        _, one = create_key(conn, "one", "risk_officer")
        _, two = create_key(conn, "two", "risk_officer")
        for _ in range(3):
            assert client.get("/me", headers={"Authorization": f"Bearer {one}"}).status_code == 200
        limited = client.get("/me", headers={"Authorization": f"Bearer {one}"})
        is_problem(limited, 429)
        assert limited.headers["retry-after"] == "1"
        assert client.get("/me", headers={"Authorization": f"Bearer {two}"}).status_code == 200
        clock.advance(1.0)
        assert client.get("/me", headers={"Authorization": f"Bearer {one}"}).status_code == 200
        assert "lienwatch_api_rate_limited_total 1.0" in client.get("/metrics").text
        # Bad keys share a bucket per address: a flood is refused with 429, not audited row by row.
        codes = [client.get("/me", headers={"Authorization": "Bearer lw_nope"}).status_code for _ in range(6)]
        assert codes == [401, 401, 401, 429, 429, 429]
        assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'authenticate'").fetchone() == (3,)


def test_keys_are_managed_by_admins_only_and_stored_hashed(api: Api) -> None:
    created = api.post("/keys", role="admin", json={"user_name": "carol", "role": "account_manager"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert api.client.get("/me", headers={"Authorization": f"Bearer {token}"}).json()["user_name"] == "carol"
    stored = api.conn.execute("SELECT secret_sha256 FROM api_keys WHERE key_id = %s",
                              (created.json()["key_id"],)).fetchone()
    assert stored is not None and token.split("_", 2)[2].encode() not in bytes(stored[0])
    listed = api.get("/keys", role="admin").json()
    assert {k["user_name"] for k in listed} >= {"carol", "admin-1"} and all("token" not in k for k in listed)
    for role in ("risk_officer", "account_manager", "auditor"):
        is_problem(api.get("/keys", role=role), 403)
        is_problem(api.post("/keys", role=role, json={"user_name": "x", "role": "admin"}), 403)
    assert len(api.audit_rows(action="keys", allowed=False)) == 6
    is_problem(api.post("/keys", role="admin", json={"user_name": "carol", "role": "boss"}), 422)
    is_problem(api.post("/keys", role="admin", json={"user_name": " bad name", "role": "admin"}), 422)
    is_problem(api.client.delete("/keys/doesnotexist", headers=api.auth("admin")), 404)


def test_assignments_by_admin(api: Api) -> None:
    register(api.conn, "veh-a")
    put = api.client.put("/devices/veh-a/assignees/account-manager-1", headers=api.auth("admin"))
    assert put.status_code == 200 and put.json()["assigned_by"] == "admin-1"
    assert [a["device_id"] for a in api.get("/assignments", role="admin").json()] == ["veh-a"]
    is_problem(api.client.put("/devices/veh-zz/assignees/bob", headers=api.auth("admin")), 404)
    is_problem(api.client.put("/devices/veh-a/assignees/bob", headers=api.auth("risk_officer")), 403)
    assert api.client.delete("/devices/veh-a/assignees/account-manager-1",
                             headers=api.auth("admin")).status_code == 204
    again = api.client.delete("/devices/veh-a/assignees/account-manager-1", headers=api.auth("admin"))
    is_problem(again, 404)


def test_the_audit_log_is_for_auditors_and_pages(api: Api) -> None:
    register(api.conn, "veh-a")
    for _ in range(5):
        assert api.get("/devices/veh-a").status_code == 200
    page = api.get("/audit", role="auditor", params={"limit": 2, "device_id": "veh-a"}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        page = api.get("/audit", role="auditor", params={"limit": 2, "device_id": "veh-a",
                                                         "cursor": page["next_cursor"]}).json()
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == len(set(seen)) == 5
    assert api.get("/audit", role="admin").status_code == 200
    for role in ("risk_officer", "account_manager"):
        is_problem(api.get("/audit", role=role), 403)
    refused = api.get("/audit", role="auditor", params={"allowed": "false", "user_name": "risk-officer-1"})
    assert [i["action"] for i in refused.json()["items"]] == ["audit.read"]
    is_problem(api.get("/audit", role="auditor", params={"since": "2026-01-01T00:00:00"}), 422)  # naive time


def test_requests_wait_for_a_connection_when_the_pool_is_busy(migrated_db: str) -> None:
    """db_conn takes idle connections on the event loop and waits for a busy pool in a thread:
    eight concurrent requests on a one-connection pool all answer, and the pool ends idle."""
    import threading

    app = create_app(config_for(migrated_db, pool_min_size=1, pool_max_size=1),
                     clock=ManualClock(wall_ns=NOW_NS))
    with connect(migrated_db) as conn, TestClient(app) as client:
        _, token = create_key(conn, "risk-1", "risk_officer")
        register(conn, "gw-pool")
        statuses: list[int] = []

        def ask() -> None:
            for _ in range(5):
                answer = client.get("/devices/gw-pool", headers={"Authorization": f"Bearer {token}"})
                statuses.append(answer.status_code)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 40
        pool = app.state.lienwatch.pool
        stats = pool.get_stats()
        assert stats["pool_size"] == 1 and stats["pool_available"] == 1
        assert stats.get("requests_queued", 0) > 0  # some requests had to wait for the connection
