"""Handlers of `lienwatch cloud migrate` and `lienwatch cloud devices add|list|remove`."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from cloud import enroll, pki
from cloud.store.db import Conn, connect, describe
from cloud.store.devices import (
    Device,
    add_device,
    check_device,
    check_known_id,
    list_devices,
    parse_poi,
    remove_device,
    set_cert_fingerprint,
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
    csr = getattr(args, "csr", None)
    if args.devices_command == "add":
        if csr and args.cert_fingerprint:
            raise DeviceError("--cert-fingerprint and --csr exclude each other (the signed certificate's "
                              "fingerprint is registered)")
        device = check_device(Device(
            device_id=args.id, vin=args.vin, cert_fingerprint=args.cert_fingerprint,
            time_zone=args.time_zone, contract_region=args.region,
            points_of_interest=tuple(parse_poi(text) for text in args.poi),
        ))
    elif args.devices_command in ("remove", "replace"):
        check_known_id(args.id)
    if csr:
        if not args.ca_dir or not args.cert_out:
            raise DeviceError("--csr needs --ca-dir (the device CA) and --cert-out (the signed certificate)")
        enroll.check_csr(Path(csr), args.id)
    with connect(args.dsn, application_name="lienwatch-devices") as conn:
        check_schema(conn)
        if args.devices_command == "add":
            if csr:
                return _add_with_csr(conn, device, args)
            device = add_device(conn, device)
            print(f"registered device {device.device_id} in {describe(conn)}")
            return 0
        if args.devices_command == "replace":
            return _replace(conn, args)
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


def _add_with_csr(conn: Conn, device: Device, args: argparse.Namespace) -> int:
    if any(d.device_id.lower() == device.device_id for d in list_devices(conn)):
        raise DeviceError(f"device {device.device_id!r} is already registered: a new tracker for it is "
                          "`lienwatch cloud devices replace`")
    issued = enroll.sign_csr(Path(args.ca_dir), Path(args.csr), device.device_id, Path(args.cert_out),
                             days=args.cert_days)
    try:
        device = add_device(conn, replace(device, cert_fingerprint=issued.fingerprint))
    except Exception:  # not registered: the certificate must not stay valid
        pki.revoke(Path(args.ca_dir), issued.serial, reason="cessationOfOperation")
        raise
    print(f"signed {issued.cert} (serial {issued.serial}, SHA-256 {issued.fingerprint}) with {args.ca_dir}")
    print(f"registered device {device.device_id} (VIN {device.vin or '-'}, {device.time_zone}) "
          f"in {describe(conn)}")
    return 0


def _replace(conn: Conn, args: argparse.Namespace) -> int:
    if not any(d.device_id == args.id for d in list_devices(conn)):
        raise DeviceError(f"device {args.id!r} is not registered in {describe(conn)}: `add` it")
    issued = enroll.sign_csr(Path(args.ca_dir), Path(args.csr), args.id, Path(args.cert_out),
                             days=args.cert_days)
    set_cert_fingerprint(conn, args.id, issued.fingerprint)
    revoked, crl = enroll.revoke_others(Path(args.ca_dir), args.id, issued.serial)
    print(f"signed {issued.cert} (serial {issued.serial}, SHA-256 {issued.fingerprint}) for {args.id}")
    print(f"revoked {len(revoked)} older certificate(s) of {args.id} ({', '.join(revoked) or 'none'}, "
          f"superseded); CRL {crl.path} signed: reload the broker (SIGHUP) so the old tracker is refused")
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
