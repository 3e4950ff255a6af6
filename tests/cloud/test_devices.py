"""`lienwatch cloud devices add|list|remove` against a real database."""

from __future__ import annotations

import json

import pytest

from cloud.store.db import Conn
from cloud.store.devices import (
    Device,
    PointOfInterest,
    add_device,
    check_device,
    check_device_id,
    normalise_fingerprint,
    parse_poi,
    remove_device,
)
from cloud.store.errors import DeviceError
from hil.services import DEPLOY_DIR
from lienwatch.cli import main

FP = "AB:" * 31 + "CD"


def test_add_list_remove_round_trip(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, "--id", "gw-0001",
                 "--vin", "wvwzzz1kzaw000001", "--cert-fingerprint", FP, "--time-zone", "Europe/Berlin",
                 "--region", "DE-BY", "--poi", "home:48.137,11.575,150,home"]) == 0
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, "--id", "gw-0002"]) == 0
    capsys.readouterr()
    assert main(["cloud", "devices", "list", "--dsn", migrated_db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["device_id"] for d in listed] == ["gw-0001", "gw-0002"]
    first = listed[0]
    assert first["vin"] == "WVWZZZ1KZAW000001"
    assert first["cert_fingerprint"] == "ab" * 31 + "cd"
    assert first["time_zone"] == "Europe/Berlin" and first["contract_region"] == "DE-BY"
    assert first["points_of_interest"] == [
        {"name": "home", "kind": "home", "lat_deg": 48.137, "lon_deg": 11.575, "radius_m": 150.0}]
    assert main(["cloud", "devices", "list", "--dsn", migrated_db]) == 0
    assert "2 device(s)" in capsys.readouterr().out
    assert main(["cloud", "devices", "remove", "--dsn", migrated_db, "--id", "gw-0001"]) == 0
    capsys.readouterr()
    assert main(["cloud", "devices", "remove", "--dsn", migrated_db, "--id", "gw-0001"]) == 2
    assert "DeviceError" in capsys.readouterr().err
    main(["cloud", "devices", "list", "--dsn", migrated_db, "--json"])
    assert [d["device_id"] for d in json.loads(capsys.readouterr().out)] == ["gw-0002"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--id", "gw/1"], "device id"),
    (["--id", "+"], "device id"),
    (["--id", "x" * 65], "device id"),
    (["--id", "ok", "--vin", "IOQ45678901234567"], "VIN"),
    (["--id", "ok", "--vin", "SHORT"], "VIN"),
    (["--id", "ok", "--cert-fingerprint", "xyz"], "fingerprint"),
    (["--id", "ok", "--time-zone", "Mars/Olympus"], "time zone"),
    (["--id", "ok", "--poi", "home:91,0"], "out of range"),
    (["--id", "ok", "--poi", "garbage"], "NAME:LAT,LON"),
    (["--id", "ok", "--poi", "home:a,b"], "numbers"),
    # numbers that are not finite or out of range, unknown kinds, bad names
    (["--id", "ok", "--poi", "h:1,2,1e308"], "radius_m is out of range"),
    (["--id", "ok", "--poi", "h:1,2,inf"], "finite"),
    (["--id", "ok", "--poi", "h:1,2,-inf"], "finite"),
    (["--id", "ok", "--poi", "h:1,2,nan"], "finite"),
    (["--id", "ok", "--poi", "h:nan,2"], "finite"),
    (["--id", "ok", "--poi", "h:1,inf"], "finite"),
    (["--id", "ok", "--poi", "h:1,2,0"], "radius_m is out of range"),
    (["--id", "ok", "--poi", "h:1,2,1e-400"], "radius_m is out of range"),
    (["--id", "ok", "--poi", "h:1,2,5e-324"], "radius_m is out of range"),
    (["--id", "ok", "--poi", "h:1,2,0.5"], "radius_m is out of range"),
    (["--id", "ok", "--poi", "h:1,2,-5"], "radius_m is out of range"),
    (["--id", "ok", "--poi", "h:1,180.5"], "longitude is out of range"),
    (["--id", "ok", "--poi", "h:1,2,100,castle"], "kind 'castle' is unknown"),
    (["--id", "ok", "--poi", "h:1,2,100,"], "kind '' is unknown"),
    (["--id", "ok", "--poi", ":1,2"], "name"),
    (["--id", "ok", "--poi", "a\x07b:1,2"], "name"),
    (["--id", "ok", "--poi", "h:1,2", "--poi", "H:3,4"], "distinct names"),
    # device ids: one canonical (lower-case) form, reserved service identities
    (["--id", "GW-0001"], "lower case ('gw-0001')"),
    (["--id", "gw-0001\n"], "device id"),
    (["--id=-gw"], "device id"),
    (["--id", ""], "device id"),
    (["--id", "gw\u00e9"], "device id"),
    (["--id", "lienwatch-ingest"], "reserved"),
    (["--id", "LIENWATCH-INGEST"], "reserved"),
    (["--id", "lienwatch-ingest-2"], "reserved"),
    (["--id", "localhost"], "reserved"),
    # the other fields: time zones this host alone has, control characters, bad VINs
    (["--id", "ok", "--time-zone", "localtime"], "time zone"),
    (["--id", "ok", "--time-zone", "europe/berlin"], "time zone"),
    (["--id", "ok", "--time-zone", "../../etc/passwd"], "time zone"),
    (["--id", "ok", "--region", "DE\nBY"], "contract region"),
    (["--id", "ok", "--region", "x" * 65], "contract region"),
    (["--id", "ok", "--vin", "1HGCM826 3A004352"], "VIN"),
    (["--id", "ok", "--vin", "1HGCM82633A0043521"], "VIN"),
])
def test_bad_registrations_are_refused_with_a_reason(
    migrated_db: str, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, *extra]) == 2
    err = capsys.readouterr().err
    assert "DeviceError" in err and message in err


def test_bad_input_is_refused_before_the_database_is_contacted(capsys: pytest.CaptureFixture[str]) -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    assert main(["cloud", "devices", "add", "--dsn", unreachable, "--id", "ok", "--poi", "h:1,2,inf"]) == 2
    assert "DeviceError" in capsys.readouterr().err


def test_out_of_range_numbers_read_as_people_write_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DeviceError, match=r"\(got 1,099,511,627,776\)") as caught:
        parse_poi("h:1,2,1099511627776")
    assert "e+" not in str(caught.value) and "<= 100,000" in str(caught.value)


def test_the_registry_itself_enforces_the_id_class(db: Conn) -> None:
    """Not only the CLI: `add_device` refuses non-canonical and reserved ids, and an id that
    differs only in case from one registered earlier (before ids were canonical)."""
    for bad in ("GW-0001", "lienwatch-ingest", "gw 1"):
        with pytest.raises(DeviceError):
            add_device(db, Device(bad))
    db.execute("INSERT INTO devices (device_id) VALUES ('GW-0002')")  # registered by an old version
    with pytest.raises(DeviceError, match="case-insensitive"):
        add_device(db, Device("gw-0002"))
    assert remove_device(db, "GW-0002")  # old ids can still be removed
    add_device(db, Device("gw-0002"))
    with pytest.raises(DeviceError, match="point of interest"):
        add_device(db, Device("gw-0003", points_of_interest=(PointOfInterest("h", 1, 2, float("inf")),)))
    with pytest.raises(DeviceError, match="finite"):
        check_device(Device("gw-0003", points_of_interest=(PointOfInterest("h", True, 2),)))  # type: ignore[arg-type]


def test_every_service_identity_of_the_broker_acls_is_reserved() -> None:
    """Each `user NAME` of deploy/mosquitto/acl* is a service with rights over all devices."""
    services = [line.split()[1] for acl in sorted((DEPLOY_DIR / "mosquitto").glob("acl*"))
                for line in acl.read_text().splitlines() if line.startswith("user ")]
    assert "lienwatch-ingest" in services
    for name in services:
        with pytest.raises(DeviceError, match="reserved"):
            check_device_id(name)


def test_duplicate_id_or_vin_is_refused(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    vin = "1HGCM82633A004352"
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, "--id", "a", "--vin", vin]) == 0
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, "--id", "a"]) == 2
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, "--id", "b", "--vin", vin]) == 2
    assert "vin already used" in capsys.readouterr().err


def test_devices_on_an_unmigrated_database_says_to_migrate(
    fresh_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cloud", "devices", "list", "--dsn", fresh_db]) == 2
    assert "cloud migrate" in capsys.readouterr().err


def test_validation_normalises() -> None:
    assert normalise_fingerprint("SHA256=" + "A" * 64) == "a" * 64
    device = check_device(Device("gw.1_x-2", vin=" 1hgcm82633a004352 ", time_zone="Asia/Shanghai"))
    assert device.vin == "1HGCM82633A004352"
    assert parse_poi("dealer:1.5,2.5").radius_m == 200.0
    with pytest.raises(DeviceError):
        check_device(Device("ok", time_zone=""))
