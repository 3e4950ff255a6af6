"""Handlers of `lienwatch cloud migrate` and `lienwatch cloud devices add|list|remove`."""

from __future__ import annotations

import argparse
import json

from cloud.store.db import connect, describe
from cloud.store.devices import (
    Device,
    add_device,
    check_device,
    check_known_id,
    list_devices,
    parse_poi,
    remove_device,
)
from cloud.store.errors import DeviceError
from cloud.store.migrate import check_schema, migrate


def run_migrate(args: argparse.Namespace) -> int:
    result = migrate(args.dsn, mode=args.storage)
    if result.applied:
        names = ", ".join(f"{v:04d}" for v in result.applied)
        print(f"applied migrations {names} to {result.where}; schema version {result.current_version} "
              f"({result.mode} storage)")
    else:
        print(f"schema of {result.where} is up to date at version {result.current_version} "
              f"({result.mode} storage)")
    return 0


def run_devices(args: argparse.Namespace) -> int:
    # Every argument is checked before the database is contacted.
    if args.devices_command == "add":
        device = check_device(Device(
            device_id=args.id, vin=args.vin, cert_fingerprint=args.cert_fingerprint,
            time_zone=args.time_zone, contract_region=args.region,
            points_of_interest=tuple(parse_poi(text) for text in args.poi),
        ))
    elif args.devices_command == "remove":
        check_known_id(args.id)
    with connect(args.dsn, application_name="lienwatch-devices") as conn:
        check_schema(conn)
        if args.devices_command == "add":
            device = add_device(conn, device)
            print(f"registered device {device.device_id} in {describe(conn)}")
            return 0
        if args.devices_command == "remove":
            if not remove_device(conn, args.id):
                raise DeviceError(f"device {args.id!r} is not registered in {describe(conn)}")
            print(f"removed device {args.id} from {describe(conn)} (its stored data is kept)")
            return 0
        devices = list_devices(conn)
    if args.json:
        print(json.dumps([_as_json(d) for d in devices], indent=2))
        return 0
    print(f"{'DEVICE':<24} {'VIN':<17} {'TIME ZONE':<20} {'REGION':<10} FINGERPRINT")
    for d in devices:
        fingerprint = (d.cert_fingerprint or "-")[:16]
        print(f"{d.device_id:<24} {d.vin or '-':<17} {d.time_zone:<20} {d.contract_region or '-':<10} "
              f"{fingerprint}")
    print(f"{len(devices)} device(s)")
    return 0


def _as_json(device: Device) -> dict[str, object]:
    return {
        "device_id": device.device_id, "vin": device.vin, "cert_fingerprint": device.cert_fingerprint,
        "time_zone": device.time_zone, "contract_region": device.contract_region,
        "registered_at": device.registered_at.isoformat() if device.registered_at else None,
        "points_of_interest": [
            {"name": p.name, "kind": p.kind, "lat_deg": p.lat_deg, "lon_deg": p.lon_deg,
             "radius_m": p.radius_m}
            for p in device.points_of_interest
        ],
    }
