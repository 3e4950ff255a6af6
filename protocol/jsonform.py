"""The JSON form of every message: what `lienwatch wire decode` prints and `wire encode` reads.

It mirrors the typed messages field by field (telemetry stays columnar), with enums by name,
byte strings as hex, times as integer UTC nanoseconds. `from_json(to_json(m)) == m` for every
message; `dumps` is the canonical text used by the golden vectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import IntEnum
from typing import Any, TypeVar

from protocol.catalog import Catalog, default_catalog
from protocol.codec import encode_command_body
from protocol.errors import InvalidFieldError, MalformedMessageError, UnknownSignalError
from protocol.messages import (
    DRIVING_COUNTS,
    AckStatus,
    ArmStarterInterrupt,
    BootReceipt,
    ClearEvent,
    ClearGeofence,
    ClockQuality,
    Command,
    CommandAck,
    CommandAction,
    Config,
    DrivingDay,
    Event,
    FixColumns,
    FixType,
    Geofence,
    GnssFix,
    Header,
    InterruptState,
    Message,
    PaymentReminder,
    PowerState,
    Reboot,
    ReleaseStarterInterrupt,
    ReminderPattern,
    RequestPosition,
    SampleColumns,
    SetConfig,
    SetGeofence,
    Severity,
    SignedCommand,
    StartDiagnosticSession,
    Status,
    StopDiagnosticSession,
    StoredReceipt,
    TelemetryBatch,
    Transition,
)

E = TypeVar("E", bound=IntEnum)
JsonObject = dict[str, Any]

_FIX_FIELDS = ("time_ns", "lat_deg", "lon_deg", "alt_m", "speed_kmh", "heading_deg", "hdop", "sats")
_ACTIONS: dict[str, type] = {
    "SET_CONFIG": SetConfig, "REQUEST_POSITION": RequestPosition, "SET_GEOFENCE": SetGeofence,
    "CLEAR_GEOFENCE": ClearGeofence, "REBOOT": Reboot, "START_DIAGNOSTIC_SESSION": StartDiagnosticSession,
    "STOP_DIAGNOSTIC_SESSION": StopDiagnosticSession, "CLEAR_EVENT": ClearEvent,
    "ARM_STARTER_INTERRUPT": ArmStarterInterrupt, "RELEASE_STARTER_INTERRUPT": ReleaseStarterInterrupt,
    "PAYMENT_REMINDER": PaymentReminder,
}
_ACTION_NAMES = {cls: name for name, cls in _ACTIONS.items()}


def dumps(message: Message, *, catalog: Catalog | None = None) -> str:
    """Canonical JSON text of a message: 2-space indent, arrays of scalars on one line."""
    return _format(to_json(message, catalog=catalog), "") + "\n"


def _format(value: object, indent: str) -> str:
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_format(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + _format(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def loads(text: str | bytes, *, catalog: Catalog | None = None) -> Message:
    """The message described by JSON text; MalformedMessageError / InvalidFieldError if it is wrong."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MalformedMessageError(f"not valid JSON: {str(error)[:120]}") from None
    return from_json(document, catalog=catalog)


# --- to JSON --------------------------------------------------------------------------------------


def to_json(message: Message, *, catalog: Catalog | None = None) -> JsonObject:
    if isinstance(message, TelemetryBatch):
        return _batch_json(message, catalog or default_catalog())
    if isinstance(message, Event):
        return {"kind": "event", "header": _header_json(message.header), "event_id": message.event_id,
                "severity": message.severity.name, "detector": message.detector, "time_ns": message.time_ns,
                "features": dict(message.features), "position": _fix_json(message.position),
                "detail": message.detail, "transition": message.transition.name,
                "raised_ns": message.raised_ns, "condition": message.condition}
    if isinstance(message, Status):
        driving: JsonObject = {} if not message.driving else {  # 1.1, absent when empty
            "driving": [{"day": d.day, **{n: getattr(d, n) for n in DRIVING_COUNTS}}
                        for d in message.driving]}
        return {"kind": "status", "header": _header_json(message.header),
                "power_state": message.power_state.name, "supply_v": message.supply_v,
                "backup_v": message.backup_v, "firmware_version": message.firmware_version,
                "config_version": message.config_version, "queue_depth": message.queue_depth,
                "queue_bytes": message.queue_bytes, "uptime_s": message.uptime_s,
                "energy_forecast_days": message.energy_forecast_days,
                "avg_current_ma": message.avg_current_ma, "rssi_dbm": message.rssi_dbm,
                "position": _fix_json(message.position), **driving}
    if isinstance(message, CommandAck):
        interrupt: JsonObject = {} if message.interrupt is None else {  # 1.2, absent when None
            "interrupt": message.interrupt.name}
        return {"kind": "command_ack", "header": _header_json(message.header), "nonce": message.nonce.hex(),
                "status": message.status.name, "detail": message.detail,
                "position": _fix_json(message.position), **interrupt}
    if isinstance(message, SignedCommand):
        command = message.command
        return {"kind": "command", "target_device_id": command.target_device_id,
                "nonce": command.nonce.hex(), "issued_ns": command.issued_ns,
                "expires_ns": command.expires_ns,
                "action": _action_json(command.action),
                "signature": None if message.signature is None else message.signature.hex()}
    if isinstance(message, Config):
        return {"kind": "config", **_config_json(message)}
    if isinstance(message, StoredReceipt):
        return {"kind": "stored_receipt", "target_device_id": message.target_device_id,
                "issued_ns": message.issued_ns,
                "boots": [{"boot_id": b.boot_id, "ranges": [list(r) for r in b.ranges]}
                          for b in message.boots]}
    raise InvalidFieldError(f"no JSON form for {type(message).__name__}")


def _header_json(header: Header) -> JsonObject:
    out: JsonObject = {"device_id": header.device_id, "boot_id": header.boot_id, "seq": header.seq,
                       "sent_ns": header.sent_ns, "clock_quality": ClockQuality(header.clock_quality).name}
    if header.flags:
        out["flags"] = header.flags
    return out


def _fix_json(fix: GnssFix | None) -> JsonObject | None:
    if fix is None:
        return None
    out: JsonObject = {name: getattr(fix, name) for name in _FIX_FIELDS}
    out["fix_type"] = FixType(fix.fix_type).name
    return out


def _batch_json(batch: TelemetryBatch, catalog: Catalog) -> JsonObject:
    fixes, samples = batch.fixes, batch.samples
    fix_columns: JsonObject = {name: list(getattr(fixes, name)) for name in _FIX_FIELDS}
    fix_columns["fix_type"] = [FixType(value).name for value in fixes.fix_type]
    paths = [catalog.by_id(s).path if s in catalog else None for s in samples.signal_id]
    out: JsonObject = {
        "kind": "telemetry", "header": _header_json(batch.header), "catalog_version": batch.catalog_version,
        "fixes": fix_columns,
        "samples": {"time_ns": list(samples.time_ns), "signal_id": list(samples.signal_id),
                    "signal_path": paths, "value": list(samples.value)},
    }
    if batch.raw_signal_ids:
        out["raw_signal_ids"] = sorted(batch.raw_signal_ids)
    return out


def _config_json(config: Config) -> JsonObject:
    return {"config_version": config.config_version, "settings": dict(config.settings)}


def _action_json(action: CommandAction) -> JsonObject:
    out: JsonObject = {"type": _ACTION_NAMES[type(action)]}
    if isinstance(action, SetConfig):
        out.update(_config_json(action.config))
    elif isinstance(action, SetGeofence):
        fence = action.geofence
        out.update(geofence_id=fence.geofence_id, lat_deg=fence.lat_deg, lon_deg=fence.lon_deg,
                   radius_m=fence.radius_m)
    elif isinstance(action, ClearGeofence):
        out["geofence_id"] = action.geofence_id
    elif isinstance(action, StartDiagnosticSession):
        out["duration_s"] = action.duration_s
    elif isinstance(action, ClearEvent):
        out["event_id"] = action.event_id
    elif isinstance(action, PaymentReminder):
        out.update(due_date=action.due_date, pattern=action.pattern.name)
    return out


# --- from JSON ------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object, with errors that name the field."""

    def __init__(self, document: object, where: str) -> None:
        if not isinstance(document, dict):
            raise MalformedMessageError(f"{where} must be a JSON object")
        self.document: Mapping[str, Any] = document
        self.where = where

    def _get(self, key: str, default: object = ...) -> Any:
        """The field's value; a required field (no default) may be neither missing nor null."""
        value = self.document.get(key)
        if value is not None:
            return value
        if default is ...:
            raise InvalidFieldError(f"{self.where}: missing field {key!r} (or null)")
        return default if key not in self.document else None

    def integer(self, key: str, default: object = ...) -> Any:
        value = self._get(key, default)
        if value is not None and (type(value) is not int):
            raise InvalidFieldError(f"{self.where}.{key} must be an integer")
        return value

    def number(self, key: str, default: object = ...) -> Any:
        value = self._get(key, default)
        if value is not None and type(value) not in (int, float):
            raise InvalidFieldError(f"{self.where}.{key} must be a number")
        return None if value is None else _float(value, f"{self.where}.{key}")

    def text(self, key: str, default: object = ...) -> Any:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise InvalidFieldError(f"{self.where}.{key} must be a string")
        return value

    def hex(self, key: str) -> bytes:
        try:
            return bytes.fromhex(self.text(key))
        except ValueError:
            raise InvalidFieldError(f"{self.where}.{key} must be hex text") from None

    def enum(self, key: str, enum: type[E], default: object = ...) -> E:
        name = self._get(key, default)
        if isinstance(name, enum):
            return name
        if not isinstance(name, str) or name not in enum.__members__:
            raise InvalidFieldError(f"{self.where}.{key} must be one of {list(enum.__members__)}")
        return enum[name]

    def object(self, key: str, default: object = ...) -> Any:
        value = self._get(key, default)
        if value is not None and not isinstance(value, dict):
            raise InvalidFieldError(f"{self.where}.{key} must be a JSON object")
        return value

    def column(self, key: str, kinds: tuple[type, ...]) -> tuple[Any, ...]:
        value = self._get(key)
        if not isinstance(value, list) or any(type(item) not in kinds for item in value):
            names = "/".join(k.__name__ for k in kinds)
            raise InvalidFieldError(f"{self.where}.{key} must be an array of {names}")
        return tuple(value)


def _float(value: int | float, where: str) -> float:
    try:
        return float(value)
    except OverflowError:
        bits = int(value).bit_length()
        raise InvalidFieldError(f"{where}: a number of {bits} bits is out of range") from None


def from_json(document: object, *, catalog: Catalog | None = None) -> Message:
    """The message a JSON document (as parsed by `json.loads`) describes."""
    r = _Reader(document, "message")
    kind = r.text("kind")
    if kind == "telemetry":
        return _batch_from(r, catalog or default_catalog())
    if kind == "event":
        features = r.object("features")
        if any(type(v) not in (int, float) for v in features.values()):
            raise InvalidFieldError("message.features values must be numbers")
        return Event(_header_from(r.object("header")), r.integer("event_id"), r.enum("severity", Severity),
                     r.text("detector"), r.integer("time_ns"),
                     {k: _float(v, "features") for k, v in features.items()},
                     _fix_from(r.object("position", None)), r.text("detail", ""),
                     r.enum("transition", Transition, Transition.RAISED), r.integer("raised_ns", None),
                     r.text("condition", ""))
    if kind == "status":
        return Status(_header_from(r.object("header")), r.enum("power_state", PowerState),
                      r.number("supply_v"), r.number("backup_v"), r.text("firmware_version"),
                      r.integer("config_version"),
                      r.integer("queue_depth"), r.integer("queue_bytes", 0), r.integer("uptime_s", 0),
                      r.number("energy_forecast_days", None), r.number("avg_current_ma", None),
                      r.integer("rssi_dbm", None), _fix_from(r.object("position", None)),
                      _driving_from(r._get("driving", [])))
    if kind == "command_ack":
        interrupt = None if r._get("interrupt", None) is None else r.enum("interrupt", InterruptState)
        return CommandAck(_header_from(r.object("header")), r.hex("nonce"), r.enum("status", AckStatus),
                          r.text("detail", ""), _fix_from(r.object("position", None)), interrupt)
    if kind == "command":
        command = Command(r.text("target_device_id"), r.hex("nonce"), r.integer("issued_ns"),
                          r.integer("expires_ns"), _action_from(r.object("action")))
        signature = None if r._get("signature", None) is None else r.hex("signature")
        return SignedCommand(command, encode_command_body(command), signature)
    if kind == "config":
        return _config_from(r)
    if kind == "stored_receipt":
        return _receipt_from(r)
    raise InvalidFieldError("message.kind must be one of telemetry, event, status, command_ack, command, "
                            f"config, stored_receipt; got {kind!r}")


def _driving_from(days: object) -> tuple[DrivingDay, ...]:
    if not isinstance(days, list):
        raise InvalidFieldError("message.driving must be a list")
    out = []
    for i, item in enumerate(days):
        d = _Reader(item, f"message.driving[{i}]")
        out.append(DrivingDay(d.text("day"), *(d.integer(n, 0) for n in DRIVING_COUNTS)))
    return tuple(out)


def _receipt_from(r: _Reader) -> StoredReceipt:
    boots = r._get("boots")
    if not isinstance(boots, list):
        raise InvalidFieldError("message.boots must be a list")
    out = []
    for item in boots:
        b = _Reader(item, "boots[]")
        ranges = b._get("ranges")
        if not isinstance(ranges, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(type(v) is int for v in p) for p in ranges):
            raise InvalidFieldError("boots[].ranges must be a list of [first, last] integer pairs")
        out.append(BootReceipt(b.integer("boot_id"), tuple((p[0], p[1]) for p in ranges)))
    return StoredReceipt(r.text("target_device_id"), r.integer("issued_ns"), tuple(out))


def _header_from(document: object) -> Header:
    r = _Reader(document, "header")
    return Header(r.text("device_id"), r.integer("boot_id"), r.integer("seq"), r.integer("sent_ns"),
                  r.enum("clock_quality", ClockQuality), r.integer("flags", 0))


def _fix_from(document: object) -> GnssFix | None:
    if document is None:
        return None
    r = _Reader(document, "position")
    return GnssFix(r.integer("time_ns"), r.number("lat_deg"), r.number("lon_deg"), r.number("alt_m"),
                   r.number("speed_kmh"), r.number("heading_deg"), r.number("hdop"), r.integer("sats"),
                   r.enum("fix_type", FixType))


def _batch_from(r: _Reader, catalog: Catalog) -> TelemetryBatch:
    f = _Reader(r.object("fixes"), "fixes")
    number = (int, float)
    fix_types = f.column("fix_type", (str,))
    if any(name not in FixType.__members__ for name in fix_types):
        raise InvalidFieldError(f"fixes.fix_type must hold names from {list(FixType.__members__)}")
    floats = [tuple(_float(v, f"fixes.{name}") for v in f.column(name, number)) for name in _FIX_FIELDS[1:7]]
    fixes = FixColumns(
        f.column("time_ns", (int,)), floats[0], floats[1], floats[2], floats[3], floats[4], floats[5],
        f.column("sats", (int,)), tuple(int(FixType[name]) for name in fix_types),
    )
    s = _Reader(r.object("samples"), "samples")
    ids = s.column("signal_id", (int,))
    paths = s._get("signal_path", None)
    if paths is not None:
        if not isinstance(paths, list) or len(paths) != len(ids):
            raise InvalidFieldError("samples.signal_path must be an array as long as samples.signal_id")
        for signal_id, path in zip(ids, paths, strict=True):
            if path is not None and (signal_id not in catalog or catalog.by_id(signal_id).path != path):
                raise UnknownSignalError(f"samples: signal id {signal_id} is not {path!r} in catalog "
                                         f"v{catalog.version}")
    values = tuple(_float(v, "samples.value") for v in s.column("value", number))
    samples = SampleColumns(s.column("time_ns", (int,)), ids, values)
    raw = r._get("raw_signal_ids", [])
    if not isinstance(raw, list) or any(type(v) is not int for v in raw):
        raise InvalidFieldError("raw_signal_ids must be an array of integers")
    header = _header_from(r.object("header"))
    return TelemetryBatch(header, fixes, samples, r.integer("catalog_version"), frozenset(raw))


def _config_from(r: _Reader) -> Config:
    settings = r.object("settings")
    for key, value in settings.items():
        if type(value) not in (bool, int, float, str):
            raise InvalidFieldError(f"settings.{key} must be a boolean, number or string")
    return Config(r.integer("config_version"), dict(settings))


def _action_from(document: object) -> CommandAction:
    r = _Reader(document, "action")
    name = r.text("type")
    if name not in _ACTIONS:
        raise InvalidFieldError(f"action.type must be one of {list(_ACTIONS)}")
    if name == "SET_CONFIG":
        return SetConfig(_config_from(r))
    if name == "SET_GEOFENCE":
        return SetGeofence(Geofence(r.integer("geofence_id"), r.number("lat_deg"), r.number("lon_deg"),
                                    r.number("radius_m")))
    if name == "CLEAR_GEOFENCE":
        return ClearGeofence(r.integer("geofence_id", None))
    if name == "START_DIAGNOSTIC_SESSION":
        return StartDiagnosticSession(r.integer("duration_s"))
    if name == "CLEAR_EVENT":
        return ClearEvent(r.integer("event_id"))
    if name == "PAYMENT_REMINDER":
        return PaymentReminder(r.text("due_date"), r.enum("pattern", ReminderPattern))
    action: CommandAction = _ACTIONS[name]()
    return action
