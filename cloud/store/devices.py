"""The device registry: which gateways may send, and the facts about each one.

A device id is the common name of the gateway's client certificate; the broker uses it as the
client's identity (and ACL `%u`), the receiver requires it in the topic and in the payload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from cloud.store.db import Conn
from cloud.store.errors import DeviceError

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class PointOfInterest:
    """A place that matters for the loan (home, work, dealer), with a radius."""

    name: str
    lat_deg: float
    lon_deg: float
    radius_m: float = 200.0
    kind: str = "other"


@dataclass(frozen=True, slots=True)
class Device:
    """One registered gateway."""

    device_id: str
    vin: str | None = None
    cert_fingerprint: str | None = None
    time_zone: str = "UTC"
    contract_region: str = ""
    points_of_interest: tuple[PointOfInterest, ...] = field(default_factory=tuple)
    registered_at: datetime | None = None


def check_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID.match(device_id):
        raise DeviceError(
            f"device id {device_id!r} is invalid: 1-64 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit (it is the certificate's common name)"
        )
    return device_id


def normalise_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lower-case hex digits (colons/spaces removed)."""
    cleaned = re.sub(r"[\s:]", "", text).lower()
    if cleaned.startswith("sha256="):
        cleaned = cleaned[len("sha256="):]
    if not _HEX.match(cleaned):
        raise DeviceError(
            f"certificate fingerprint {text!r} is not a SHA-256 fingerprint "
            "(64 hex digits, e.g. from `openssl x509 -noout -fingerprint -sha256`)"
        )
    return cleaned


def check_device(device: Device) -> Device:
    """Validate and normalise a registration; raises `DeviceError` saying what is wrong."""
    check_device_id(device.device_id)
    vin = device.vin.strip().upper() if device.vin else None
    if vin is not None and not VIN.match(vin):
        raise DeviceError(f"VIN {device.vin!r} is invalid: 17 characters, digits and A-Z without I, O, Q")
    fingerprint = normalise_fingerprint(device.cert_fingerprint) if device.cert_fingerprint else None
    try:
        ZoneInfo(device.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise DeviceError(
            f"time zone {device.time_zone!r} is not an IANA zone (e.g. Europe/Berlin)"
        ) from None
    if len(device.contract_region) > 64:
        raise DeviceError("contract region is longer than 64 characters")
    for poi in device.points_of_interest:
        if not 1 <= len(poi.name) <= 64:
            raise DeviceError(f"point of interest name {poi.name!r} must be 1-64 characters")
        if not (-90 <= poi.lat_deg <= 90 and -180 <= poi.lon_deg <= 180):
            raise DeviceError(f"point of interest {poi.name!r}: latitude/longitude out of range")
        if not poi.radius_m > 0:
            raise DeviceError(f"point of interest {poi.name!r}: radius_m must be > 0")
    return Device(device.device_id, vin, fingerprint, device.time_zone, device.contract_region,
                  device.points_of_interest, device.registered_at)


def parse_poi(text: str) -> PointOfInterest:
    """`NAME:LAT,LON[,RADIUS_M[,KIND]]` (the CLI's --poi) to a point of interest."""
    name, sep, rest = text.partition(":")
    parts = rest.split(",")
    if not sep or len(parts) not in (2, 3, 4):
        raise DeviceError(f"--poi {text!r}: expected NAME:LAT,LON[,RADIUS_M[,KIND]]")
    try:
        lat, lon = float(parts[0]), float(parts[1])
        radius = float(parts[2]) if len(parts) > 2 else 200.0
    except ValueError:
        raise DeviceError(f"--poi {text!r}: latitude, longitude and radius must be numbers") from None
    return PointOfInterest(name, lat, lon, radius, parts[3] if len(parts) > 3 else "other")


def add_device(conn: Conn, device: Device) -> Device:
    """Register a device (with its points of interest) in one transaction."""
    device = check_device(device)
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO devices (device_id, vin, cert_fingerprint, time_zone, contract_region) "
                "VALUES (%s, %s, %s, %s, %s)",
                (device.device_id, device.vin, device.cert_fingerprint, device.time_zone,
                 device.contract_region),
            )
            for poi in device.points_of_interest:
                conn.execute(
                    "INSERT INTO points_of_interest (device_id, name, kind, lat_deg, lon_deg, radius_m) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (device.device_id, poi.name, poi.kind, poi.lat_deg, poi.lon_deg, poi.radius_m),
                )
    except psycopg.errors.UniqueViolation as error:
        what = (error.diag.constraint_name or "").replace("devices_", "").replace("_key", "")
        raise DeviceError(
            f"device {device.device_id!r} conflicts with a registered device ({what or 'key'} already used)"
        ) from None
    except psycopg.errors.CheckViolation as error:
        raise DeviceError(f"device {device.device_id!r} is invalid: {error.diag.message_primary}") from None
    return device


def remove_device(conn: Conn, device_id: str) -> bool:
    """Unregister a device (its stored data stays); returns whether it was registered."""
    check_device_id(device_id)
    with conn.transaction():
        row = conn.execute("DELETE FROM devices WHERE device_id = %s RETURNING 1", (device_id,)).fetchone()
    return row is not None


def list_devices(conn: Conn) -> list[Device]:
    """Every registered device with its points of interest, by id."""
    pois: dict[str, list[PointOfInterest]] = {}
    for device_id, name, kind, lat, lon, radius in conn.execute(
        "SELECT device_id, name, kind, lat_deg, lon_deg, radius_m FROM points_of_interest ORDER BY name"
    ):
        pois.setdefault(device_id, []).append(PointOfInterest(name, lat, lon, radius, kind))
    return [
        Device(device_id, vin, fingerprint, tz, region, tuple(pois.get(device_id, ())), registered)
        for device_id, vin, fingerprint, tz, region, registered in conn.execute(
            "SELECT device_id, vin, cert_fingerprint, time_zone, contract_region, registered_at "
            "FROM devices ORDER BY device_id"
        )
    ]


def registered_time_zones(conn: Conn) -> dict[str, str]:
    """Every registered device id with its time zone (the receiver's registry cache)."""
    rows = conn.execute("SELECT device_id, time_zone FROM devices")
    return {str(device_id): str(tz) for device_id, tz in rows}
