"""What the detectors know about the vehicle and its contract: the agent config's `[vehicle]` table.

    [vehicle]
    vin = "WVWZZZ1JZXW000001"          # provisioned VIN ("" = not provisioned)
    time_zone = "Europe/Zurich"        # for time-of-day rules (night = 22:00-06:00 local)
    contract_region = [[47.0, 8.0], [47.0, 9.0], [48.0, 9.0], [48.0, 8.0]]   # [lat, lon] polygon

    [[vehicle.places]]                 # points of interest, each with a class and a radius
    name = "Autohof Nord"
    class = "used_car_market"          # used_car_market | pawn | impound | auction | port | border | other
    lat = 47.41
    lon = 8.55
    radius_m = 300.0

Circular geofences also arrive by the signed SetGeofence command; `GeofenceStore` keeps them in
the state directory so they survive restarts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.detect.persist import write_json
from lienwatch.errors import ConfigError
from protocol.messages import Geofence

log = logging.getLogger("lienwatch.detect")

PLACE_CLASSES = ("used_car_market", "pawn", "impound", "auction", "port", "border", "other")
RISKY_CLASSES = frozenset({"used_car_market", "pawn", "impound", "auction", "port", "border"})
_VEHICLE_KEYS = ("vin", "time_zone", "contract_region", "places")
_PLACE_KEYS = ("name", "class", "lat", "lon", "radius_m")


@dataclass(frozen=True, slots=True)
class Place:
    """A point of interest: a class (`PLACE_CLASSES`) and a circle around (lat, lon)."""

    name: str
    place_class: str
    lat_deg: float
    lon_deg: float
    radius_m: float


@dataclass(frozen=True)
class VehicleProfile:
    """The `[vehicle]` table, validated."""

    vin: str = ""
    time_zone: str = "UTC"
    contract_region: tuple[tuple[float, float], ...] = ()  # (lat, lon) polygon, () = none
    places: tuple[Place, ...] = ()
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"), compare=False, repr=False)

    def in_contract_region(self, lat_deg: float, lon_deg: float) -> bool | None:
        """Whether a position lies in the contract region (None when no region is set)."""
        if not self.contract_region:
            return None
        return point_in_polygon(self.contract_region, lat_deg, lon_deg)


def parse_vehicle(table: object) -> VehicleProfile:
    """A `VehicleProfile` from the `[vehicle]` table; ConfigError naming the bad key."""
    if table is None:
        return VehicleProfile()
    if not isinstance(table, Mapping):
        raise ConfigError("vehicle must be a table ([vehicle])")
    for key in table:
        if key not in _VEHICLE_KEYS:
            raise ConfigError(f"vehicle: unknown key {key!r} (known: {', '.join(_VEHICLE_KEYS)})")
    vin = table.get("vin", "")
    if not isinstance(vin, str) or (vin and not (vin.isalnum() and len(vin) <= 17)):
        raise ConfigError(f"vehicle.vin must be up to 17 letters and digits, got {vin!r}")
    time_zone = table.get("time_zone", "UTC")
    if not isinstance(time_zone, str) or not time_zone:
        raise ConfigError(f"vehicle.time_zone must be an IANA zone name (Europe/Zurich), got {time_zone!r}")
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"vehicle.time_zone: unknown time zone {time_zone!r} (an IANA name)") from None
    region = table.get("contract_region", [])
    if not isinstance(region, list) or (region and len(region) < 3):
        raise ConfigError("vehicle.contract_region must be a list of at least 3 [lat, lon] points")
    polygon = tuple(_lat_lon(point, f"vehicle.contract_region[{i}]") for i, point in enumerate(region))
    places = table.get("places", [])
    if not isinstance(places, list):
        raise ConfigError("vehicle.places must be an array of tables ([[vehicle.places]])")
    return VehicleProfile(vin.upper(), time_zone, polygon,
                          tuple(_place(p, f"vehicle.places[{i}]") for i, p in enumerate(places)), zone)


def _number(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{what} must be a number in {low:g}..{high:g}, got {value!r}")
    return float(value)


def _lat_lon(point: object, what: str) -> tuple[float, float]:
    if not isinstance(point, list) or len(point) != 2:
        raise ConfigError(f"{what} must be [lat, lon], got {point!r}")
    return _number(point[0], f"{what} latitude", -90, 90), _number(point[1], f"{what} longitude", -180, 180)


def _place(table: object, what: str) -> Place:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{what} must be a table")
    for key in table:
        if key not in _PLACE_KEYS:
            raise ConfigError(f"{what}: unknown key {key!r} (known: {', '.join(_PLACE_KEYS)})")
    name = table.get("name", "")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what}.name must be a non-empty string")
    place_class = table.get("class")
    if place_class not in PLACE_CLASSES:
        raise ConfigError(f"{what}.class must be one of {', '.join(PLACE_CLASSES)}, got {place_class!r}")
    for key in ("lat", "lon", "radius_m"):
        if key not in table:
            raise ConfigError(f"{what}.{key} is required")
    return Place(name, str(place_class), _number(table["lat"], f"{what}.lat", -90, 90),
                 _number(table["lon"], f"{what}.lon", -180, 180),
                 _number(table["radius_m"], f"{what}.radius_m", 1, 100_000))


def point_in_polygon(polygon: Sequence[tuple[float, float]], lat_deg: float, lon_deg: float) -> bool:
    """Even-odd ray casting on (lat, lon) as a plane: exact enough for regions far from the poles
    and the antimeridian. Plain Python on purpose: one test per GNSS fix on a polygon of a few
    dozen points costs microseconds, far below the tick."""
    inside = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        yi, xi = polygon[i]
        yj, xj = polygon[j]
        if (yi > lat_deg) != (yj > lat_deg) and lon_deg < (xj - xi) * (lat_deg - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


class GeofenceStore:
    """Circular geofences set by signed commands, persisted in the state directory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fences: dict[int, Geofence] = self._load()

    def set(self, fence: Geofence) -> None:
        self.fences[fence.geofence_id] = fence
        self._save()

    def clear(self, geofence_id: int | None) -> int:
        """Remove one geofence (or all with None); returns how many were removed."""
        if geofence_id is None:
            removed = len(self.fences)
            self.fences.clear()
        else:
            removed = 1 if self.fences.pop(geofence_id, None) is not None else 0
        self._save()
        return removed

    def _load(self) -> dict[int, Geofence]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data: list[dict[str, Any]] = json.loads(self.path.read_text())["geofences"]
            fences = (Geofence(int(f["id"]), float(f["lat_deg"]), float(f["lon_deg"]), float(f["radius_m"]))
                      for f in data)
            return {f.geofence_id: f for f in fences}
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.error("geofences unreadable; starting without them", extra={"detail": str(error)})
            return {}

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"geofences": [{"id": f.geofence_id, "lat_deg": f.lat_deg, "lon_deg": f.lon_deg,
                               "radius_m": f.radius_m} for f in self.fences.values()]}
        write_json(self.path, data)
