"""The agent's configuration: one TOML file, a schema beside this code, typed errors.

Every key the agent reads is declared in `SCHEMA` (dotted name, type, default, check, help), so
`deploy/agent.example.toml` can be checked against it by a test and an unknown key (a typo) is an
error, not silently ignored. `[[sources]]` and `[[detectors]]` tables are validated by their own
registries (edge.sources, edge.detect) when the agent builds them.

Remote configuration (a signed SetConfig command) changes only keys marked `remote=True`; those
overrides live in the state directory (`remote_config.json`), never in /etc (read-only under the
systemd unit's ProtectSystem=strict), and are applied on top of the file on every start.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.detect.vehicle import VehicleProfile, parse_vehicle
from lienwatch.errors import ConfigError
from lienwatch.fmt import number
from lienwatch.tomlfile import parse_toml
from protocol.fields import DEVICE_ID_RE

Scalar = bool | int | float | str
Check = Callable[[Any], str | None]  # returns what is wrong, or None


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _range(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be in {number(low)}..{number(high)}"
    return check


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def _device_id(value: Any) -> str | None:
    return None if DEVICE_ID_RE.fullmatch(value) else "must be 1..64 characters of A-Z a-z 0-9 . _ -"


def _non_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def _path(value: Any) -> str | None:
    """A file or directory name; whether it is usable is checked at start (edge.agent.preflight)."""
    if not value:
        return "must name a file or directory"
    return "must not contain control characters" if any(ord(c) < 0x20 for c in value) else None


def _optional_path(value: Any) -> str | None:
    return None if value == "" else _path(value)


def _no_control_characters(value: Any) -> str | None:
    return "must not contain control characters" if any(ord(c) < 0x20 for c in value) else None


def _output_spec(value: Any) -> str | None:
    """"" or sysfs:PATH or gpiod:CHIP:LINE (whether the line exists is checked at start)."""
    kind, _, rest = value.partition(":")
    if value == "" or (kind == "sysfs" and _path(rest) is None):
        return None
    chip, _, line = rest.rpartition(":")
    if kind == "gpiod" and chip and line.isdigit():
        return None
    return "must be \"\", sysfs:PATH or gpiod:CHIP:LINE"


def _one_of_int(*choices: int) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"
    return check


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: dotted name, type, default (None = required), check, help, remote."""

    name: str
    type: type
    default: Scalar | None
    help: str
    check: Check | None = None
    remote: bool = False


SCHEMA: tuple[Key, ...] = (
    Key("device.id", str, None, "device id = the CN of the device certificate = the MQTT username",
        _device_id),
    Key("agent.state_dir", str, "/var/lib/lienwatch/agent",
        "persistent state: the outbox, remote config, nonces (on flash)", _path),
    Key("agent.status_file", str, "/run/lienwatch/status.json",
        "status for `lienwatch edge status`, rewritten every few seconds (keep it on tmpfs)", _path),
    Key("agent.status_interval_s", float, 2.0, "how often the status file is rewritten", _positive),
    Key("agent.tick_s", float, 0.1, "run-loop period: drain samples, run detectors, pump the uplink",
        _range(0.005, 5)),
    Key("agent.log_level", str, "info", "debug | info | warning | error",
        _one_of("debug", "info", "warning", "error"), remote=True),
    Key("agent.sample_inbox", int, 65536,
        "samples held between sources and the run loop; overflow is counted, never blocking", _positive),
    Key("uplink.mqtt.host", str, None, "broker host name (must match its certificate)", _non_empty),
    Key("uplink.mqtt.port", int, 8883, "broker TLS port", _range(1, 65535)),
    Key("uplink.mqtt.ca_file", str, "/etc/lienwatch/pki/ca.crt",
        "the ONE CA the broker certificate must chain to (pinned)", _path),
    Key("uplink.mqtt.cert_file", str, "/etc/lienwatch/pki/device.crt", "this device's certificate",
        _path),
    Key("uplink.mqtt.key_file", str, "/etc/lienwatch/pki/device.key", "this device's private key",
        _path),
    Key("uplink.mqtt.keepalive_s", int, 240,
        "MQTT keepalive: below common cellular NAT idle timeouts (~5 min), few radio wake-ups",
        _range(10, 1200)),
    Key("uplink.mqtt.session_expiry_s", int, 604800,
        "how long the broker keeps our session (and queued commands) while we are offline",
        _range(0, 2**32 - 1)),
    Key("uplink.mqtt.inflight_window", int, 16, "QoS 1 publishes awaiting PUBACK at once", _range(1, 1000)),
    Key("uplink.mqtt.reconnect_min_s", float, 1.0, "first reconnect delay (then ×2, full jitter)",
        _positive),
    Key("uplink.mqtt.reconnect_max_s", float, 60.0,
        "longest reconnect delay: a car back in coverage sends within a minute (ALERT/EMERGENCY: at once)",
        _range(0.01, 3600)),
    Key("uplink.mqtt.connect_timeout_s", float, 30.0, "TCP+TLS+CONNACK deadline", _positive),
    Key("uplink.mqtt.will_delay_s", int, 60,
        "the broker publishes our last will (offline event) this long after a lost connection",
        _range(0, 86400)),
    Key("uplink.receipts.mode", str, "auto",
        "auto: keep records until the cloud's stored receipt once one was seen (PUBACK before) | "
        "required: always | off: PUBACK only", _one_of("auto", "required", "off")),
    Key("uplink.receipts.timeout_s", float, 120.0,
        "a record the broker acknowledged is sent again if its stored receipt is this late",
        _range(5, 86400)),
    Key("uplink.receipts.max_unconfirmed", int, 64,
        "back-pressure: no new publishes while this many records wait for their receipt",
        _range(16, 1_000_000)),
    Key("uplink.queue.max_bytes", int, 64 * 1024 * 1024,
        "outbox size bound on flash; old telemetry is evicted first, ALERT/EMERGENCY never",
        _range(64 * 1024, 2**40)),
    Key("uplink.queue.segment_bytes", int, 1024 * 1024, "outbox segment file size",
        _range(4096, 2**30)),
    Key("uplink.queue.sync_interval_s", float, 60.0,
        "fsync telemetry at most this often (flash wear); events are synced at once", _positive,
        remote=True),
    Key("uplink.queue.sync_bytes", int, 65536, "…or when this many bytes are unsynced", _positive,
        remote=True),
    Key("uplink.telemetry.batch_interval_s", float, 30.0,
        "a telemetry batch is closed and queued after this long …", _range(1, 3600), remote=True),
    Key("uplink.telemetry.batch_max_bytes", int, 8192, "… or when its encoded size reaches this",
        _range(256, 200_000), remote=True),
    Key("uplink.telemetry.deflate", bool, True,
        "deflate telemetry batches when that makes them smaller (~24 % fewer bytes on the cellular "
        "plan, measured in bench/wire.py)", remote=True),
    Key("uplink.telemetry.sample_period_s", float, 1.0,
        "per signal, at most one sample per period goes into telemetry (sources may run faster)",
        _range(0.01, 3600), remote=True),
    Key("uplink.budget.daily_cap_bytes", int, 20 * 1024 * 1024,
        "data volume per UTC day; telemetry stops first, ALERT/EMERGENCY always go", _positive,
        remote=True),
    Key("uplink.budget.event_reserve_fraction", float, 0.2,
        "share of the daily cap kept for events, status and command acks", _range(0, 0.95),
        remote=True),
    Key("uplink.status_interval_s", float, 300.0, "heartbeat Status message period (QoS 0)",
        _range(5, 86400), remote=True),
    Key("power.profile", str, "tbox-reference",
        "board power profile: a built-in name or a .toml file (edge/power/profiles/, docs/power.md)",
        _non_empty),
    Key("power.battery_capacity_ah", float, 60.0, "the vehicle battery's capacity", _range(1, 2000)),
    Key("power.battery_soc_pct", float, 80.0,
        "assumed state of charge at start, until a rested voltage says otherwise", _range(0, 100)),
    Key("power.horizon_days", float, 90.0, "a parked car's battery must last this long (rolling)",
        _range(1, 3650), remote=True),
    Key("power.vehicle_quiescent_ma", float, 0.0,
        "the car's own parked draw, if known: taken off the tracker's budget", _range(0, 1000),
        remote=True),
    Key("power.mcu.device", str, "",
        "the companion MCU's UART (e.g. /dev/ttyS1); \"\" = no MCU link (docs/power.md)", _optional_path),
    Key("power.mcu.baudrate", int, 115200, "the MCU UART's speed",
        _one_of_int(9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)),
    Key("power.mcu.poll_interval_s", float, 10.0, "read the MCU's event log this often while awake",
        _range(1, 3600)),
    Key("power.mcu.timeout_s", float, 0.3, "wait this long for the MCU's answer to a request",
        _range(0.01, 5)),
    Key("power.mcu.motion_mg", int, 80, "the MCU calls a sample moving when it is this far off 1 g "
        "(or jolts this much)", _range(10, 2000)),
    Key("power.mcu.confirm_s", float, 10.0, "motion must hold this long before the MCU wakes the SoC "
        "(a bump does not)", _range(0.5, 60)),
    Key("power.mcu.tilt_deg", int, 10, "a tilt from the parked attitude past this wakes the SoC",
        _range(1, 90)),
    Key("power.mcu.unplug_v", float, 5.25, "supply below this (twice running) is an unplug",
        _range(3, 14.9)),
    Key("power.mcu.low_v", float, 11.9, "supply below this while parked is a low-supply warning",
        _range(3.1, 15)),
    Key("power.mcu.sample_s", int, 60, "the MCU samples the supply this often", _range(1, 3600)),
    Key("power.sleep.command", str, "",
        "suspends the SoC in PARKED_SLEEP and returns once it is awake again; {seconds} and {soc} "
        "are filled in (with the shipped units, \"systemctl start lienwatch-{soc}@{seconds}.service\"); "
        "\"\" = the SoC never sleeps",
        _no_control_characters),
    Key("power.sleep.min_awake_s", float, 30.0, "a wake lasts at least this long (fix, MCU log, sends)",
        _range(1, 3600)),
    Key("power.sleep.max_awake_s", float, 300.0,
        "… and at most this long when the outbox cannot be delivered (no coverage)", _range(1, 86400)),
    Key("downlink.command_keys", str, "/etc/lienwatch/command-keys.pem",
        "PEM file of the Ed25519 public key(s) whose signatures commands must carry", _path),
    Key("downlink.max_command_lifetime_s", float, 604800.0,
        "commands whose validity window (expiry − issue time) is longer are refused", _positive),
    Key("downlink.replay_cache_size", int, 4096,
        "nonces of unexpired commands remembered (persisted in state_dir) to refuse replays",
        _range(16, 1_000_000)),
    # edge/actuators (docs/actuators.md)
    Key("actuators.starter_interrupt.output", str, "",
        "the starter-interrupt relay: sysfs:/sys/class/gpio/gpioN/value or gpiod:/dev/gpiochipN:LINE; "
        "\"\" = none (interrupt commands are refused)", _output_spec),
    Key("actuators.starter_interrupt.active_low", bool, False, "the relay coil is driven by a low level"),
    Key("actuators.starter_interrupt.hold_s", float, 30.0,
        "engage only after the car has been parked (ignition off, no speed) this long",
        _range(5, 3600)),
    Key("actuators.starter_interrupt.walking_kmh", float, 4.0,
        "a GNSS speed below this counts as standing (a parked fix drifts 1-2 km/h)", _range(0.5, 7)),
    Key("actuators.starter_interrupt.on_reboot", str, "rearm",
        "an interrupt armed before a restart: rearm (engages after a new parked hold) | release",
        _one_of("rearm", "release")),
    Key("actuators.starter_interrupt.on_power_loss", str, "release_output",
        "external supply lost: release_output (drop the coil, spare the backup battery) | hold",
        _one_of("release_output", "hold")),
    Key("actuators.override.secret_file", str, "",
        "hex file of the per-device emergency-code secret (HOTP); \"\" = no emergency codes",
        _optional_path),
    Key("actuators.override.duration_s", float, 86400.0, "an emergency code releases the starter this long",
        _range(60, 7 * 86400)),
    Key("actuators.override.uses_per_period", int, 2, "emergency codes accepted per period",
        _range(1, 100)),
    Key("actuators.override.period_days", float, 30.0, "the period of uses_per_period", _range(1, 366)),
    Key("actuators.buzzer.output", str, "",
        "the payment-reminder buzzer: sysfs:PATH or gpiod:CHIP:LINE; \"\" = none", _output_spec),
    Key("actuators.buzzer.active_low", bool, False, "the buzzer is driven by a low level"),
)
_BY_NAME = {key.name: key for key in SCHEMA}
_TABLE_ARRAYS = ("sources", "detectors")


@dataclass(frozen=True)
class AgentConfig:
    """A validated configuration: `values` has every schema key; sources/detectors as tables."""

    values: Mapping[str, Scalar]
    sources: tuple[Mapping[str, Any], ...]
    detectors: tuple[Mapping[str, Any], ...]
    path: Path | None = None
    remote_version: int = 0
    vehicle: VehicleProfile = field(default_factory=VehicleProfile)  # [vehicle] (edge.detect.vehicle)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def device_id(self) -> str:
        return str(self.values["device.id"])

    def with_settings(self, settings: Mapping[str, object], version: int) -> AgentConfig:
        """This config with remote settings applied; ConfigError if any is not allowed or bad."""
        values = dict(self.values)
        for name, value in settings.items():
            key = _BY_NAME.get(name)
            if key is None:
                raise ConfigError(f"{name}: no such setting")
            if not key.remote:
                raise ConfigError(f"{name}: cannot be changed remotely (edit the config file)")
            values[name] = _checked(key, value)
        _check_relations(values)
        return AgentConfig(values, self.sources, self.detectors, self.path, version, self.vehicle)


def _checked(key: Key, value: object) -> Scalar:
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, key.type) or (key.type is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key.name} must be {key.type.__name__}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key.name} must be a finite number")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"{key.name} {problem} (got {value!r})")
    return value  # type: ignore[return-value]


def _check_relations(values: Mapping[str, Scalar]) -> None:
    if values["uplink.queue.segment_bytes"] > values["uplink.queue.max_bytes"]:  # type: ignore[operator]
        raise ConfigError("uplink.queue.segment_bytes must not exceed uplink.queue.max_bytes")
    if values["uplink.mqtt.reconnect_min_s"] > values["uplink.mqtt.reconnect_max_s"]:  # type: ignore[operator]
        raise ConfigError("uplink.mqtt.reconnect_min_s must not exceed uplink.mqtt.reconnect_max_s")
    if values["power.mcu.unplug_v"] >= values["power.mcu.low_v"]:  # type: ignore[operator]
        raise ConfigError("power.mcu.unplug_v must be below power.mcu.low_v")
    if values["power.sleep.min_awake_s"] > values["power.sleep.max_awake_s"]:  # type: ignore[operator]
        raise ConfigError("power.sleep.min_awake_s must not exceed power.sleep.max_awake_s")


def _flatten(table: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            _flatten(value, f"{dotted}.", out)
        else:
            out[dotted] = value


def parse_config(document: Mapping[str, Any], path: Path | None = None) -> AgentConfig:
    """Validate a parsed TOML document against `SCHEMA`."""
    flat: dict[str, Any] = {}
    arrays: dict[str, tuple[Mapping[str, Any], ...]] = {}
    vehicle = parse_vehicle(document.get("vehicle"))
    for name, value in document.items():
        if name == "vehicle":
            continue
        if name in _TABLE_ARRAYS:
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(f"{name} must be an array of tables ([[{name}]])")
            arrays[name] = tuple(value)
        elif isinstance(value, dict):
            _flatten(value, f"{name}.", flat)
        else:
            flat[name] = value
    unknown = sorted(set(flat) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]} (a typo? see deploy/agent.example.toml)")
    values: dict[str, Scalar] = {}
    for key in SCHEMA:
        if key.name in flat:
            values[key.name] = _checked(key, flat[key.name])
        elif key.default is None:
            raise ConfigError(f"{key.name} is required ({key.help})")
        else:
            values[key.name] = key.default
    _check_relations(values)
    detectors = arrays.get("detectors", ())
    _check_detectors(detectors)
    return AgentConfig(values, arrays.get("sources", ()), detectors, path, vehicle=vehicle)


def _check_detectors(tables: tuple[Mapping[str, Any], ...]) -> None:
    """Every [[detectors]] table against its kind's schema, at load (not when the agent starts)."""
    from edge.detect.registry import REGISTRY

    names = [REGISTRY.resolve(table)[1] for table in tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"detectors: names must be unique, got {names}")


def load_config(path: Path) -> AgentConfig:
    """Read and validate the agent config file; ConfigError says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        document = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_config(document, path)
