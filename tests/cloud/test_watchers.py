"""Server-side watchers on a real database with an injected clock: raised once, cleared once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.store.db import Conn, connect
from cloud.store.devices import Device, PointOfInterest, add_device
from cloud.watchers.config import WatchersConfig, parse_watchers_config
from cloud.watchers.job import WatcherJob, run_once
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from tests.cloud.seed import Fix, write_fixes

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def config(**watchers: Any) -> WatchersConfig:
    return parse_watchers_config({"enabled": True, **watchers})


def seen(db: Conn, device_id: str, at: datetime, lat: float = 48.1, lon: float = 11.5) -> None:
    db.execute("INSERT INTO device_latest (device_id, last_received_at, last_message_at, lat_deg, lon_deg) "
               "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET "
               "last_received_at = EXCLUDED.last_received_at", (device_id, at, at, lat, lon))


def server_events(db: Conn, device_id: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT detector, transition, event_id, severity, boot_id, time, detail FROM events "
                      "WHERE device_id = %s ORDER BY time, seq", (device_id,)).fetchall()


def lifecycle(db: Conn, device_id: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT state, updated_by FROM event_lifecycle WHERE device_id = %s",
                      (device_id,)).fetchall()


def register(db: Conn, device_id: str, registered_at: datetime = T0 - timedelta(days=30),
             home: tuple[float, float] | None = None) -> None:
    pois = (PointOfInterest("home", *home, 200.0, "home"),) if home else ()
    add_device(db, Device(device_id, time_zone="Europe/Berlin", points_of_interest=pois))
    db.execute("UPDATE devices SET registered_at = %s WHERE device_id = %s", (registered_at, device_id))


def test_offline_is_raised_once_and_cleared_when_the_device_is_back(db: Conn) -> None:
    register(db, "gw-off")
    register(db, "gw-strict")
    register(db, "gw-never", registered_at=T0 - timedelta(hours=1))
    seen(db, "gw-off", T0)
    seen(db, "gw-strict", T0)
    watch = config(heartbeat={"enabled": False}, night_parking={"enabled": False},
                   offline={"devices": {"gw-strict": 12.0}})
    assert run_once(db, watch, T0 + timedelta(hours=11)).raised["offline"] == []
    assert run_once(db, watch, T0 + timedelta(hours=13)).raised["offline"] == ["gw-strict"]
    later = T0 + timedelta(hours=49)
    assert run_once(db, watch, later).raised["offline"] == ["gw-never", "gw-off"]
    assert run_once(db, watch, later + timedelta(hours=1)).raised["offline"] == []  # raised once
    (raised,) = server_events(db, "gw-off")
    detector, transition, event_id, severity, boot_id, at, detail = raised
    assert (detector, transition, severity, boot_id, at) == ("server.offline", "raised", "ALERT", -1, later)
    assert event_id < 0 and "offline for 49.0 h (limit 48 h)" in detail
    assert lifecycle(db, "gw-off") == [("open", None)]
    back = later + timedelta(hours=2)
    seen(db, "gw-off", back)
    result = run_once(db, watch, back)
    assert result.cleared["offline"] == ["gw-off"] and result.raised["offline"] == []
    assert run_once(db, watch, back + timedelta(minutes=5)).cleared["offline"] == []  # cleared once
    cleared = server_events(db, "gw-off")[1]
    assert cleared[:3] == ("server.offline", "cleared", event_id) and cleared[5] == back
    assert lifecycle(db, "gw-off") == [("resolved", "server")]
    current = db.execute("SELECT state, transitions FROM event_current WHERE device_id = 'gw-off'").fetchall()
    assert current == [("cleared", 2)]
    # Silent again: a new event (a new id), not the old one reopened.
    assert run_once(db, watch, back + timedelta(hours=49)).raised["offline"] == ["gw-off"]
    ids = {row[2] for row in server_events(db, "gw-off")}
    assert len(ids) == 2


def test_heartbeat_missing_while_the_device_sends(db: Conn) -> None:
    register(db, "gw-hb")
    from cloud.store.partitions import PartitionKeeper

    PartitionKeeper().ensure(db, "device_status", T0.date() - timedelta(days=3), T0.date())
    db.execute("INSERT INTO device_status (device_id, time, boot_id, seq, clock_quality) "
               "VALUES ('gw-hb', %s, 1, 1, 3)", (T0 - timedelta(hours=30),))
    watch = config(offline={"enabled": False}, night_parking={"enabled": False})
    seen(db, "gw-hb", T0 - timedelta(hours=1))
    assert run_once(db, watch, T0).raised["heartbeat"] == ["gw-hb"]
    (event,) = server_events(db, "gw-hb")
    assert event[0] == "server.heartbeat" and event[3] == "WARNING"
    db.execute("INSERT INTO device_status (device_id, time, boot_id, seq, clock_quality) "
               "VALUES ('gw-hb', %s, 1, 2, 3)", (T0 + timedelta(minutes=5),))
    assert run_once(db, watch, T0 + timedelta(minutes=10)).cleared["heartbeat"] == ["gw-hb"]


def nights(db: Conn, device_id: str, first: datetime, places: list[tuple[float, float]]) -> None:
    """One fix at 02:30 Berlin time (01:30 UTC in March) per night, at each place in turn."""
    write_fixes(db, device_id, [Fix(first + timedelta(days=i), lat, lon, 0.0) for i, (lat, lon) in
                                enumerate(places)])


def test_habitual_night_place_away_from_home(db: Conn) -> None:
    home, elsewhere = (48.1, 11.5), (48.15, 11.56)  # about 7 km apart
    register(db, "gw-night", home=home)
    watch = config(offline={"enabled": False}, heartbeat={"enabled": False})
    first_night = datetime(2026, 3, 1, 1, 30, tzinfo=UTC)
    nights(db, "gw-night", first_night, [elsewhere] * 3)
    three = first_night + timedelta(days=2, hours=2)
    assert run_once(db, watch, three).raised["night_parking"] == []  # 3 nights: no verdict yet
    nights(db, "gw-night", first_night + timedelta(days=3), [elsewhere, home, elsewhere, elsewhere])
    week = first_night + timedelta(days=6, hours=2)
    assert run_once(db, watch, week).raised["night_parking"] == ["gw-night"]  # 6 of 7 nights away
    (event,) = server_events(db, "gw-night")
    assert event[0] == "server.night_parking" and "6 of 7 nights" in event[6]
    evidence = db.execute("SELECT evidence FROM events WHERE device_id = 'gw-night'").fetchone()
    assert evidence is not None and 6000 < evidence[0]["from_home_m"] < 8000
    # Two weeks at home: the share of nights away falls below 0.6 and the event clears.
    nights(db, "gw-night", first_night + timedelta(days=7), [home] * 14)
    result = run_once(db, watch, first_night + timedelta(days=20, hours=2))
    assert result.cleared["night_parking"] == ["gw-night"]


def test_the_job_runs_on_the_injected_clock(migrated_db: str) -> None:
    with connect(migrated_db) as db:
        register(db, "gw-job")
        seen(db, "gw-job", T0)
    clock = ManualClock(wall_ns=int((T0 + timedelta(hours=47)).timestamp() * 1e9))
    job = WatcherJob(config(), lambda: connect(migrated_db), clock)
    first = job.tick()
    assert first is not None and first.raised["offline"] == []
    clock.advance(2 * 3600)
    second = job.tick()
    assert second is not None and second.raised["offline"] == ["gw-job"]


@pytest.mark.parametrize("table,message", [
    ({"interval": 5}, "unknown key 'interval'"),
    ({"interval_s": 0}, "interval_s"),
    ({"offline": {"after_h": "two days"}}, "watchers.offline.after_h"),
    ({"offline": {"severity": "PANIC"}}, "severity"),
    ({"offline": {"devices": {"NOT AN ID": 3}}}, "device id"),
    ({"offline": {"devices": {"gw-1": -3}}}, "watchers.offline.devices.gw-1"),
    ({"night_parking": {"nights": 3, "min_nights": 5}}, "min_nights"),
    ({"night_parking": {"night_hour": 24}}, "night_hour"),
    ({"heartbeat": {"enabled": "yes"}}, "true or false"),
    ({"heartbeat": []}, "must be a table"),
])
def test_bad_watcher_config_is_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_watchers_config(table)


def test_defaults() -> None:
    defaults = parse_watchers_config(None)
    assert not defaults.enabled and defaults.offline.after_h == 48.0
    assert config(offline={"devices": {"gw-1": 6}}).offline.after_h_for("gw-1") == 6.0


def test_the_api_process_runs_the_watchers_from_its_config(migrated_db: str) -> None:
    import time as real_time

    from fastapi.testclient import TestClient

    from cloud.api.app import create_app
    from cloud.api.config import parse_config

    with connect(migrated_db) as db:
        register(db, "gw-api")
        seen(db, "gw-api", T0)
        app_config = parse_config({"database": {"dsn": migrated_db},
                                   "watchers": {"enabled": True, "interval_s": 3600}})
        clock = ManualClock(wall_ns=int((T0 + timedelta(hours=50)).timestamp() * 1e9))
        with TestClient(create_app(app_config, clock=clock)):
            deadline = real_time.monotonic() + 20
            while not server_events(db, "gw-api") and real_time.monotonic() < deadline:
                real_time.sleep(0.05)  # the job's first tick runs at start, on its own thread
        assert [e[:2] for e in server_events(db, "gw-api")] == [("server.offline", "raised")]
    with pytest.raises(ConfigError, match="watchers"):
        parse_config({"database": {"dsn": migrated_db}, "watchers": {"every": 1}})


def test_the_receiver_config_takes_a_watchers_table() -> None:
    from cloud.config import parse_config as parse_receiver_config

    base = {"database": {"dsn": "postgresql://u@db.example/lienwatch"},
            "mqtt": {"client_id": "r1", "insecure_plaintext": True}}
    assert not parse_receiver_config(base).watchers.enabled
    config = parse_receiver_config({**base, "watchers": {"enabled": True, "offline": {"after_h": 24}}})
    assert config.watchers.enabled and config.watchers.offline.after_h == 24.0
    with pytest.raises(ConfigError, match=r"watchers\.offline"):
        parse_receiver_config({**base, "watchers": {"offline": {"after": 24}}})
