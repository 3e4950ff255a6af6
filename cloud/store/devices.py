"""The device registry: which gateways may send, and the facts about each one.

A device id is the common name of the gateway's client certificate; the broker uses it as the
client's identity (and ACL `%u`), the receiver requires it in the topic and in the payload.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import available_timezones

import psycopg

from cloud.store.db import Conn
from cloud.store.errors import DeviceError
from lienwatch.fmt import number

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_HEX = re.compile(r"[0-9a-f]{64}")
# Identities lienwatch's own services hold under the devices' CA (deploy/mosquitto/acl: the
# receiver is `lienwatch-ingest`; the broker's certificate is `localhost`). A device registered
# under one of them would get a certificate with that service's rights on the broker.
RESERVED_ID = re.compile(r"lienwatch(?:[._-].*)?|localhost", re.IGNORECASE)
POI_KINDS = ("home", "work", "dealer", "other")
MAX_POI_RADIUS_M = 100_000.0
# No GNSS fix is better than a metre; radius_m is a REAL column, which cannot hold every tiny double.
MIN_POI_RADIUS_M = 1.0
MAX_POIS = 100
_TEXT_MAX = 64


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


def check_device_id(device_id: object) -> str:
    """A device id in its one canonical form: 1-64 characters of a-z 0-9 . _ -, starting with a
    letter or digit, not a reserved service identity. Upper case is refused, not folded: the id
    must equal the certificate's common name, which the broker compares case-sensitively."""
    if isinstance(device_id, str) and RESERVED_ID.fullmatch(device_id):
        raise DeviceError(
            f"device id {device_id!r} is reserved for lienwatch's own services (e.g. the receiver's "
            "broker identity lienwatch-ingest): a device certificate with it would get that "
            "service's rights on the broker"
        )
    lower = device_id.lower() if isinstance(device_id, str) else ""
    if DEVICE_ID.fullmatch(lower) and device_id != lower:
        raise DeviceError(
            f"device id {device_id!r} has upper-case letters: device ids are lower case "
            f"({lower!r}), and the certificate's common name must be the same"
        )
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        raise DeviceError(
            f"device id {device_id!r} is invalid: 1-64 characters of a-z 0-9 . _ -, "
            "starting with a letter or digit (it is the certificate's common name)"
        )
    return device_id


def check_known_id(device_id: object) -> str:
    """An id to look up or remove: the canonical form, or an upper-case id registered before
    ids were canonical."""
    if isinstance(device_id, str) and DEVICE_ID.fullmatch(device_id.lower()):
        return device_id
    return check_device_id(device_id)


def normalise_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lower-case hex digits (colons/spaces removed)."""
    cleaned = re.sub(r"[\s:]", "", text).lower()
    if cleaned.startswith("sha256="):
        cleaned = cleaned[len("sha256="):]
    if not _HEX.fullmatch(cleaned):
        raise DeviceError(
            f"certificate fingerprint {text!r} is not a SHA-256 fingerprint "
            "(64 hex digits, e.g. from `openssl x509 -noout -fingerprint -sha256`)"
        )
    return cleaned


@functools.cache
def _time_zones() -> frozenset[str]:
    """IANA zone names, without the host-dependent entries some zoneinfo trees carry."""
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def _check_text(value: object, what: str, *, min_len: int = 0) -> str:
    if (not isinstance(value, str) or not min_len <= len(value) <= _TEXT_MAX or not value.isprintable()
            or value != value.strip()):
        raise DeviceError(f"{what} {value!r} must be {min_len}-{_TEXT_MAX} printable characters "
                          "without leading or trailing spaces")
    return value


def _check_number(value: object, what: str, low: float, high: float, *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DeviceError(f"{what} must be a finite number (got {value!r})")
    if not (low < value if open_low else low <= value) or not value <= high:
        lower = f"> {number(low)}" if open_low else f">= {number(low)}"
        raise DeviceError(f"{what} is out of range: must be {lower} and <= {number(high)} "
                          f"(got {number(value)})")
    return float(value)


def to_coordinate_resolution(degrees: float) -> float:
    """`degrees` kept to 1e-7 degree (about 1 cm), the protocol's resolution (docs/protocol.md),
    -0.0 as 0.0: a subnormal double such as 5e-324 would make PostgreSQL's float arithmetic fail
    with "underflow"."""
    return round(degrees, 7) + 0.0


def check_poi(poi: PointOfInterest) -> PointOfInterest:
    """Validate a point of interest: name, kind, finite coordinates (kept to 1e-7 degree) and a
    radius of 1 m to 100 km."""
    name = _check_text(poi.name, "point of interest name", min_len=1)
    where = f"point of interest {name!r}"
    if poi.kind not in POI_KINDS:
        raise DeviceError(f"{where}: kind {poi.kind!r} is unknown (known: {', '.join(POI_KINDS)})")
    return PointOfInterest(
        name,
        to_coordinate_resolution(_check_number(poi.lat_deg, f"{where}: latitude", -90, 90)),
        to_coordinate_resolution(_check_number(poi.lon_deg, f"{where}: longitude", -180, 180)),
        _check_number(poi.radius_m, f"{where}: radius_m", MIN_POI_RADIUS_M, MAX_POI_RADIUS_M),
        poi.kind,
    )


def check_device(device: Device) -> Device:
    """Validate and normalise a registration; raises `DeviceError` saying what is wrong."""
    check_device_id(device.device_id)
    if device.vin is not None and not isinstance(device.vin, str):
        raise DeviceError(f"VIN {device.vin!r} must be text")
    vin = device.vin.strip().upper() if device.vin and device.vin.strip() else None
    if vin is not None and not VIN.fullmatch(vin):
        raise DeviceError(f"VIN {device.vin!r} is invalid: 17 characters, digits and A-Z without I, O, Q")
    fingerprint = normalise_fingerprint(device.cert_fingerprint) if device.cert_fingerprint else None
    if not isinstance(device.time_zone, str) or device.time_zone not in _time_zones():
        raise DeviceError(
            f"time zone {device.time_zone!r} is not an IANA zone name (e.g. Europe/Berlin)"
        )
    region = _check_text(device.contract_region, "contract region")
    if len(device.points_of_interest) > MAX_POIS:
        raise DeviceError(f"a device has at most {MAX_POIS} points of interest")
    pois = tuple(check_poi(poi) for poi in device.points_of_interest)
    names = [poi.name.casefold() for poi in pois]
    if len(set(names)) != len(names):
        raise DeviceError("points of interest need distinct names (case-insensitive)")
    return Device(device.device_id, vin, fingerprint, device.time_zone, region, pois, device.registered_at)


def parse_poi(text: str) -> PointOfInterest:
    """`NAME:LAT,LON[,RADIUS_M[,KIND]]` (the CLI's --poi) to a point of interest (validated)."""
    name, sep, rest = text.partition(":")
    parts = rest.split(",")
    if not sep or len(parts) not in (2, 3, 4):
        raise DeviceError(f"--poi {text!r}: expected NAME:LAT,LON[,RADIUS_M[,KIND]]")
    try:
        lat, lon = float(parts[0]), float(parts[1])
        radius = float(parts[2]) if len(parts) > 2 and parts[2].strip() else 200.0
    except ValueError:
        raise DeviceError(f"--poi {text!r}: latitude, longitude and radius must be numbers") from None
    return check_poi(PointOfInterest(name, lat, lon, radius, parts[3].strip() if len(parts) > 3 else "other"))


def add_device(conn: Conn, device: Device) -> Device:
    """Register a device (with its points of interest) in one transaction."""
    device = check_device(device)
    try:
        with conn.transaction():
            row = conn.execute("SELECT device_id FROM devices WHERE lower(device_id) = %s",
                               (device.device_id,)).fetchone()
            if row is not None:
                raise DeviceError(f"device {device.device_id!r} conflicts with registered device {row[0]!r} "
                                  "(device ids are case-insensitive)")
            conn.execute("SELECT now() AT TIME ZONE %s", (device.time_zone,))
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
    except (psycopg.errors.CheckViolation, psycopg.errors.InvalidParameterValue) as error:
        raise DeviceError(f"device {device.device_id!r} is invalid: {error.diag.message_primary}") from None
    return device


def remove_device(conn: Conn, device_id: str) -> bool:
    """Unregister a device (its stored data stays); returns whether it was registered."""
    check_known_id(device_id)
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


def set_cert_fingerprint(conn: Conn, device_id: str, fingerprint: str) -> bool:
    """Record a device's new certificate (field replacement); returns whether it is registered."""
    check_known_id(device_id)
    cleaned = normalise_fingerprint(fingerprint)
    with conn.transaction():
        row = conn.execute("UPDATE devices SET cert_fingerprint = %s WHERE device_id = %s RETURNING 1",
                           (cleaned, device_id)).fetchone()
    return row is not None
