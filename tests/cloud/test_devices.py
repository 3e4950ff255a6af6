"""`lienwatch cloud devices add|list|remove` against a real database."""

from __future__ import annotations

import json

import pytest

from cloud.store.devices import Device, check_device, normalise_fingerprint, parse_poi
from cloud.store.errors import DeviceError
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
    assert main(["cloud", "devices", "remove", "--dsn", migrated_db, "--id", "gw-0001"]) == 1
    capsys.readouterr()
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
])
def test_bad_registrations_are_refused_with_a_reason(
    migrated_db: str, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["cloud", "devices", "add", "--dsn", migrated_db, *extra]) == 2
    err = capsys.readouterr().err
    assert "DeviceError" in err and message in err


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
