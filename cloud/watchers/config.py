"""The `[watchers]` TOML table: which watchers run, how often, and their thresholds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from cloud.store.devices import DEVICE_ID
from lienwatch.errors import ConfigError

SEVERITIES = ("WARNING", "ALERT", "EMERGENCY")


@dataclass(frozen=True)
class OfflineConfig:
    enabled: bool = True
    after_h: float = 48.0  # the seeds' "tracker position stale for 48 h"
    severity: str = "ALERT"
    devices: dict[str, float] = field(default_factory=dict)  # device id -> its own after_h

    def after_h_for(self, device_id: str) -> float:
        return self.devices.get(device_id, self.after_h)


@dataclass(frozen=True)
class HeartbeatConfig:
    enabled: bool = True
    after_h: float = 26.0  # a parked agent sends a status at least daily
    severity: str = "WARNING"


@dataclass(frozen=True)
class NightParkingConfig:
    enabled: bool = True
    nights: int = 14  # how many recent nights are looked at
    min_nights: int = 5  # fewer nights with a position: no verdict (nothing raised or cleared)
    night_hour: int = 3  # the local hour at which each night's parking place is taken
    away_m: float = 500.0  # farther than the home's radius plus this is "not at home"
    cluster_m: float = 500.0  # nights within this of their median place are "the same place"
    min_share: float = 0.6  # raised when this share of the nights is at one other place
    severity: str = "WARNING"


@dataclass(frozen=True)
class WatchersConfig:
    enabled: bool = False
    interval_s: float = 300.0
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    night_parking: NightParkingConfig = field(default_factory=NightParkingConfig)


_RANGES: dict[str, tuple[float, float]] = {
    "interval_s": (1.0, 86_400.0), "after_h": (0.01, 24.0 * 365), "nights": (1, 60), "min_nights": (1, 60),
    "night_hour": (0, 23), "away_m": (0.0, 100_000.0), "cluster_m": (1.0, 100_000.0),
    "min_share": (0.01, 1.0),
}


def _table(cls: type[Any], data: object, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{where}.{name}"
        default = getattr(cls(), name)
        if name in ("offline", "heartbeat", "night_parking"):
            values[name] = _table(type(default), value, key)
        elif name == "devices":
            values[name] = _overrides(value, key)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false (got {value!r})")
            values[name] = value
        elif name == "severity":
            if value not in SEVERITIES:
                raise ConfigError(f"{key} must be one of {', '.join(SEVERITIES)} (got {value!r})")
            values[name] = value
        else:
            values[name] = _number(value, key, type(default) is int, *_RANGES[name])
    config = cls(**values)
    if isinstance(config, NightParkingConfig) and config.min_nights > config.nights:
        raise ConfigError(f"{where}.min_nights must be <= {where}.nights")
    return config


def _number(value: object, key: str, integer: bool, low: float, high: float) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, int | float) and math.isfinite(value)
    if isinstance(value, bool) or not ok or not low <= value <= high:  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key} must be {kind} from {low:g} to {high:g} (got {value!r})")
    return value if integer else float(value)  # type: ignore[return-value, arg-type]


def _overrides(value: object, key: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table of device id = hours")
    out: dict[str, float] = {}
    for device_id, hours in value.items():
        if not DEVICE_ID.fullmatch(device_id):
            raise ConfigError(f"{key}: {device_id!r} is not a device id")
        out[device_id] = float(_number(hours, f"{key}.{device_id}", False, *_RANGES["after_h"]))
    return out


def parse_watchers_config(data: object) -> WatchersConfig:
    """A `WatchersConfig` from the parsed `[watchers]` table (None: the defaults, not running)."""
    config: WatchersConfig = _table(WatchersConfig, data, "watchers")
    return config
