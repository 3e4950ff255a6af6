"""The console in headless Chromium against the real API (create_app) on a real PostgreSQL seeded
with a night tow (tests/console/scenario.py): what a risk officer, an account manager and an
auditor see and do. Screenshots of every page: build/test-artifacts/console/*.png.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from cloud.store.db import connect
from cloud.store.migrate import migrate
from hil.services import MosquittoBroker
from protocol.messages import Severity
from protocol.signing import generate_key, private_key_to_pem
from tests.console.browser import chromium, page_errors, screenshot, serving, text_of, wait_for
from tests.console.scenario import (
    HOME,
    OTHER_DEVICE,
    QUIET_DEVICE,
    TOW_DEVICE,
    YARD,
    NightTow,
    seed_night_tow,
    store_event,
)
from tests.console.tiles import TileServer

pytestmark = [pytest.mark.services, pytest.mark.slow]


@dataclass(frozen=True)
class Console:
    base: str
    dsn: str
    night: NightTow
    tokens: dict[str, str]  # user name -> bearer token
    paths: frozenset[str]  # what the API documents (its OpenAPI paths)


@pytest.fixture(scope="module")
def console(postgres_dsn: str, mosquitto: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[Console]:
    """The API with the console on a seeded database of its own, publishing commands to the
    session's broker; keys for one user per role."""
    from cloud.api.app import create_app
    from cloud.api.config import parse_config
    from cloud.api.keys import create_key

    name = f"console_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(postgres_dsn, dbname=name)
    try:
        migrate(dsn, mode="plain")
        with connect(dsn) as conn:
            night = seed_night_tow(conn)
            tokens = {user: create_key(conn, user, role)[1] for user, role in (
                ("rita", "risk_officer"), ("amy", "account_manager"), ("audrey", "auditor"))}
            conn.execute("INSERT INTO device_assignments (user_name, device_id) VALUES ('amy', %s)",
                         (TOW_DEVICE,))
        key_file = tmp_path_factory.mktemp("console-keys") / "command-key.pem"
        key_file.write_bytes(private_key_to_pem(generate_key()))
        app = create_app(parse_config({
            "database": {"dsn": dsn}, "api": {"command_signing_key_file": str(key_file)},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "insecure_plaintext": True,
                     "client_id": f"console-test-{name}"}}))
        with serving(app) as base:
            yield Console(base, dsn, night, tokens, frozenset(app.openapi()["paths"]))
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def _chromium() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(_chromium: Any) -> Iterator[Any]:
    """The module's Chromium, signed out; no page errors may be left when the test ends."""
    page_errors(_chromium)  # drain what an earlier test left
    yield _chromium
    assert page_errors(_chromium) == []


def sign_in(driver: Any, console: Console, user: str, page: str = "", base: str = "") -> None:
    base = base or console.base
    driver.get(f"{base}/console/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{base}/console/?as={user}#/login")  # another query string: a fresh page, not a hash change
    key = wait_for(driver, lambda d: d.find_elements("name", "api_key"), what="the sign-in form")[0]
    key.send_keys(console.tokens[user])
    driver.find_element("id", "sign-in").click()
    wait_for(driver, lambda d: user in d.find_element("id", "who").text, what=f"{user} signed in")
    if page:
        driver.get(f"{base}/console/#/{page}")


def elements(driver: Any, css: str, what: str) -> list[Any]:
    """Wait until `css` matches something; the matches."""
    found: list[Any] = wait_for(driver, lambda d: d.find_elements("css selector", css), what=what)
    return found


def rows(driver: Any, table: str) -> list[Any]:
    return list(driver.find_elements("css selector", f"#{table} tbody tr[data-device]"))


def test_inbox_puts_the_emergency_first_and_acknowledging_is_stored(console: Console, browser: Any) -> None:
    sign_in(browser, console, "rita")
    inbox = wait_for(browser, lambda d: [(r.get_attribute("data-device"), r.get_attribute("data-severity"),
                                          r.text) for r in rows(d, "inbox")], what="inbox rows")
    assert inbox[0][1] == "EMERGENCY"
    assert [device for device, *_ in inbox] == [TOW_DEVICE, OTHER_DEVICE]
    assert "distance_m:" in inbox[0][2] and "ignition_off_min:" in inbox[0][2]  # its evidence
    first = rows(browser, "inbox")[0]
    assert browser.title.startswith("(1) EMERGENCY")
    screenshot(browser, "10-inbox-risk-officer")
    first.find_element("name", "comment").send_keys("tow truck seen on camera, police called")
    first.find_element("css selector", "button[data-action=acknowledge]").click()
    wait_for(browser, lambda d: rows(d, "inbox")[0].get_attribute("data-state") == "acknowledged",
             what="the event acknowledged")
    screenshot(browser, "11-inbox-acknowledged")
    with connect(console.dsn) as conn:
        stored = conn.execute(
            "SELECT state, updated_by, note FROM event_lifecycle WHERE device_id = %s AND event_id = %s",
            (TOW_DEVICE, console.night.tow_event_id)).fetchone()
    assert stored == ("acknowledged", "rita", "tow truck seen on camera, police called")


def _track_url(console: Console) -> str:
    start = console.night.tow_start - timedelta(hours=1)
    end = console.night.tow_end + timedelta(hours=1)
    return f"track/{TOW_DEVICE}?from={int(start.timestamp() * 1000)}&to={int(end.timestamp() * 1000)}"


TRACK = "/devices/{device_id}/track"


def test_playback_reaches_the_tows_last_position(console: Console, browser: Any) -> None:
    sign_in(browser, console, "rita", _track_url(console))
    if TRACK not in console.paths:  # the API of issue 16 without its analytics routes yet
        panel = text_of(browser, "[data-unavailable='Map and playback']", "the map's unavailable panel",
                        has=(f"does not offer GET /devices/{TOW_DEVICE}/track",))
        assert f"does not offer GET /devices/{TOW_DEVICE}/track" in panel
        screenshot(browser, "20-track-endpoint-missing")
        return
    readout = wait_for(browser, lambda d: d.find_element("id", "readout").get_attribute("data-t") and
                       d.find_element("id", "readout"), what="the playback readout")
    assert int(readout.get_attribute("data-no-fix")) >= 1
    screenshot(browser, "20-track-before-playback")
    browser.find_element("css selector", "#speed option[value='7200']").click()
    browser.find_element("id", "play").click()
    wait_for(browser, lambda d: d.find_element("id", "readout").get_attribute("data-at-end") == "true",
             timeout_s=30, what="playback at the end")
    lat = float(readout.get_attribute("data-lat"))
    lon = float(readout.get_attribute("data-lon"))
    assert (round(lat, 4), round(lon, 4)) == (round(YARD[0], 4), round(YARD[1], 4))
    assert browser.find_element("id", "play").text == "Play"
    screenshot(browser, "21-track-playback-at-the-yard")


def test_map_draws_the_configured_tiles_under_the_track(console: Console, browser: Any) -> None:
    from cloud.api.app import create_app
    from cloud.api.config import parse_config

    if TRACK not in console.paths:
        pytest.skip(f"the API does not document {TRACK} yet (no track to draw tiles under)")
    tiles = TileServer()
    with serving(tiles.app) as tile_base:
        config = parse_config({"database": {"dsn": console.dsn}, "console": {
            "tile_url": tile_base + "/{z}/{x}/{y}.png", "tile_attribution": "test tiles"}})
        with serving(create_app(config)) as base:
            sign_in(browser, console, "rita", _track_url(console), base=base)
            wait_for(browser, lambda d: d.find_element("id", "readout").get_attribute("data-t"),
                     what="the track")
            wait_for(browser, lambda d: tiles.requested, what="tile requests")
            z = tiles.requested[0][0]
            home = (int((HOME[1] + 180) / 360 * 2**z),
                    int((1 - math.asinh(math.tan(math.radians(HOME[0]))) / math.pi) / 2 * 2**z))
            assert (z, *home) in tiles.requested  # the tile under the car (follow mode centres it)
            screenshot(browser, "22-track-with-tiles")


def test_device_page_shows_state_forecast_and_commands(console: Console, browser: Any) -> None:
    sign_in(browser, console, "rita", f"device/{TOW_DEVICE}")
    state = text_of(browser, "#device-state", "the device state", has=("12.41 V",))
    assert "12.41 V" in state and "4.02 V" in state and "1.4.2" in state
    assert "starter interrupt — (never reported)" in state.replace("\n", " ")
    assert browser.find_elements("css selector", "#forecast-chart path[data-series=forecast]")
    assert "87.5 days" in text_of(browser, "#forecast-verdict", "the forecast", has=("87.5 days",))
    assert "EMERGENCY" in text_of(browser, "#device-events", "the device's events", has=("EMERGENCY",))
    commands = elements(browser, "#device-commands button[data-command]", "command buttons")
    assert {c.get_attribute("data-command") for c in commands} == {
        "request_position", "set_geofence", "payment_reminder", "arm_starter_interrupt",
        "release_starter_interrupt"}
    screenshot(browser, "30-device-page")
    browser.find_element("css selector", "button[data-command=request_position]").click()
    sent = text_of(browser, "#device-commands tr[data-command]", "the command in the list",
                   has=("request_position",))
    assert "request_position" in sent and "rita" in sent
    with connect(console.dsn) as conn:
        stored = conn.execute("SELECT kind, created_by, state FROM commands WHERE device_id = %s",
                              (TOW_DEVICE,)).fetchall()
    assert len(stored) == 1 and stored[0][:2] == ("request_position", "rita")
    assert stored[0][2] in {"pending", "sent"}  # published to the broker; the car is not listening
    screenshot(browser, "31-device-command-sent")


def test_account_manager_sees_only_the_assigned_car(console: Console, browser: Any) -> None:
    sign_in(browser, console, "amy", "devices")
    listed = wait_for(browser, lambda d: rows(d, "devices"), what="the devices list")
    assert [r.get_attribute("data-device") for r in listed] == [TOW_DEVICE]
    screenshot(browser, "40-devices-account-manager")
    browser.get(f"{console.base}/console/#/inbox")
    inbox = wait_for(browser, lambda d: [(r.get_attribute("data-device"), r.text) for r in rows(d, "inbox")],
                     what="inbox rows")
    assert {device for device, _ in inbox} == {TOW_DEVICE}
    assert "not shown to your role" in inbox[0][1]  # no evidence (cabin/door detail) for this role
    screenshot(browser, "41-inbox-account-manager")
    browser.get(f"{console.base}/console/#/device/{OTHER_DEVICE}")
    refused = text_of(browser, "[data-unavailable=Device]", "the refused device page")
    assert "may not see" in refused or "Not found" in refused
    browser.get(f"{console.base}/console/#/device/{TOW_DEVICE}")
    commands = elements(browser, "#device-commands button[data-command]", "command buttons")
    assert [c.get_attribute("data-command") for c in commands] == ["request_position"]  # no geofence
    nav = {a.get_attribute("data-page") for a in browser.find_elements("css selector", "#nav a")}
    assert "audit" not in nav


def test_auditor_sees_only_the_audit_log(console: Console, browser: Any) -> None:
    read = httpx.get(f"{console.base}/events", headers={"Authorization": f"Bearer {console.tokens['rita']}"})
    assert read.status_code == 200  # a location read the audit log must show
    sign_in(browser, console, "audrey")
    table = wait_for(browser, lambda d: [r.text for r in d.find_elements("css selector", "#audit tbody tr")],
                     what="audit rows")
    assert any("rita" in text for text in table)
    nav = [a.get_attribute("data-page") for a in browser.find_elements("css selector", "#nav a")]
    assert nav == ["audit"]
    screenshot(browser, "50-audit-log-auditor")
    browser.get(f"{console.base}/console/#/inbox")
    elements(browser, "[data-unavailable='Not offered']", "the inbox not offered to an auditor")


def test_fleet_health_lists_the_silent_car(console: Console, browser: Any) -> None:
    # gw-other was last heard 10-34 h ago, by the time of day (scenario.tow_night), gw-quiet 3 days ago
    sign_in(browser, console, "rita", "fleet?offline_h=48")
    offline = elements(browser, "#fleet-offline tbody tr[data-device]", "offline devices")
    assert [r.get_attribute("data-device") for r in offline] == [QUIET_DEVICE]
    low = browser.find_elements("css selector", "#fleet-lowBattery tbody tr[data-device]")
    backlog = browser.find_elements("css selector", "#fleet-backlog tbody tr[data-device]")
    assert [r.get_attribute("data-device") for r in low] == [QUIET_DEVICE]
    assert [r.get_attribute("data-device") for r in backlog] == [QUIET_DEVICE]
    clock = browser.find_elements("css selector", "#fleet-clock tbody tr[data-device]")
    assert [r.get_attribute("data-device") for r in clock] == [QUIET_DEVICE]  # on its RTC only
    screenshot(browser, "60-fleet-health")


def test_inbox_shows_a_new_emergency_without_a_reload(console: Console, browser: Any) -> None:
    """Runs last: it adds an event the other tests do not expect."""
    sign_in(browser, console, "rita")
    wait_for(browser, lambda d: rows(d, "inbox"), what="inbox rows")
    with connect(console.dsn) as conn:
        at = datetime.now(UTC) - timedelta(minutes=1)
        store_event(conn, OTHER_DEVICE, 9002, Severity.EMERGENCY, "jamming", at, {"cn0_drop_db": 14.0}, seq=1)

    def new_on_top(driver: Any) -> Any:
        first = rows(driver, "inbox")[0]
        return (first.get_attribute("data-severity"), first.text) \
            if first.get_attribute("data-event") == "9002" else None

    severity, text = wait_for(browser, new_on_top, timeout_s=15,
                              what="the new EMERGENCY at the top after the next poll")
    assert severity == "EMERGENCY" and "jamming" in text
    assert browser.title.startswith("(2) EMERGENCY")
    screenshot(browser, "12-inbox-new-emergency-live")
