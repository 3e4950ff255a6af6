"""Body maps of the small messages: event, status, command ack, config, command, single fix.

Each `encode_*` validates and returns plain CBOR-ready values; each `decode_*` takes decoded,
untrusted CBOR and returns the typed object or raises a ProtocolError subclass. Optional fields
are left out when empty; unknown keys are ignored (docs/protocol.md, "Versioning").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from protocol import fields as f
from protocol.errors import InvalidFieldError, MalformedMessageError
from protocol.limits import (
    INT63_MAX,
    MAX_FEATURES,
    MAX_NAME,
    MAX_SETTINGS,
    MAX_TEXT,
    MAX_TIME_MS,
    MAX_TIME_NS,
    NONCE_BYTES,
    UINT32_MAX,
)
from protocol.messages import (
    DRIVING_COUNTS,
    AckStatus,
    ArmStarterInterrupt,
    ClearEvent,
    ClearGeofence,
    ClockQuality,
    Command,
    CommandAck,
    CommandAction,
    Config,
    ConfigValue,
    DrivingDay,
    Event,
    FixType,
    Geofence,
    GnssFix,
    Header,
    InterruptState,
    PaymentReminder,
    PowerState,
    Reboot,
    ReleaseStarterInterrupt,
    ReminderPattern,
    RequestPosition,
    SetConfig,
    SetGeofence,
    Severity,
    StartDiagnosticSession,
    Status,
    StopDiagnosticSession,
    Transition,
)

# --- a single GNSS fix: [time_ms, lat 1e-7 deg, lon 1e-7 deg, alt dm, speed 0.01 km/h,
#     heading 0.1 deg, hdop 0.01, sats, fix type] ------------------------------------------
_FIX_SCALE = (1e7, 1e7, 10.0, 100.0, 10.0, 100.0)
_FIX_RANGE = ((-900_000_000, 900_000_000), (-1_800_000_000, 1_800_000_000), (-10_000, 200_000),
              (0, 100_000), (0, 3599), (0, 9999))
_FIX_NAMES = ("lat_deg", "lon_deg", "alt_m", "speed_kmh", "heading_deg", "hdop")


def encode_fix(fix: GnssFix, what: str) -> list[int]:
    out = [f.integer(fix.time_ns, f"{what}.time_ns", 0, MAX_TIME_NS) // 1_000_000]
    for name, scale, (lo, hi) in zip(_FIX_NAMES, _FIX_SCALE, _FIX_RANGE, strict=True):
        value = f.real(getattr(fix, name), f"{what}.{name}")
        scaled = round(value * scale)
        if name == "heading_deg":
            scaled %= 3600
        if not lo <= scaled <= hi:
            raise InvalidFieldError(f"{what}.{name} must be in {lo / scale}..{hi / scale}, got {value}")
        out.append(scaled)
    out.append(f.integer(fix.sats, f"{what}.sats", 0, 255))
    out.append(_enum_out(FixType, fix.fix_type, f"{what}.fix_type"))
    return out


def decode_fix(value: object, what: str) -> GnssFix:
    items = f.array(value, what, 9, 9)
    time_ms = f.integer(items[0], f"{what}.time", 0, MAX_TIME_MS)
    columns = zip(items[1:7], _FIX_NAMES, _FIX_SCALE, _FIX_RANGE, strict=True)
    scaled = [f.integer(item, f"{what}.{name}", lo, hi) / scale for item, name, scale, (lo, hi) in columns]
    return GnssFix(
        time_ms * 1_000_000, scaled[0], scaled[1], scaled[2], scaled[3], scaled[4], scaled[5],
        f.integer(items[7], f"{what}.sats", 0, 255), FixType(f.integer(items[8], f"{what}.fix_type", 0, 6)),
    )


def _enum(enum: Any, value: object, what: str) -> Any:
    member = enum._value2member_map_.get(value) if type(value) is int else None
    if member is None:
        raise InvalidFieldError(f"{what} must be one of {[int(m) for m in enum]}, got {f._show(value)}")
    return member


def _enum_out(enum: Any, value: object, what: str) -> int:
    """An enum member (or its int value) to put on the wire."""
    if not isinstance(value, int) or isinstance(value, bool) or value not in enum._value2member_map_:
        raise InvalidFieldError(f"{what} must be a {enum.__name__}, got {f._show(value)}")
    return int(value)


def _milli(value: float | None, what: str, lo: int, hi: int, scale: float = 1000.0) -> int:
    scaled = round(f.real(value, what) * scale)
    if not lo <= scaled <= hi:
        raise InvalidFieldError(f"{what} must be in {lo / scale}..{hi / scale}, got {value}")
    return scaled


# --- header -------------------------------------------------------------------------------------


def encode_header(header: Header) -> list[Any]:
    items = [
        f.device_id(header.device_id),
        f.integer(header.boot_id, "boot_id", 0, UINT32_MAX),
        f.integer(header.seq, "seq", 0, INT63_MAX),
        f.integer(header.sent_ns, "sent_ns", 0, MAX_TIME_NS),
        _enum_out(ClockQuality, header.clock_quality, "clock_quality"),
    ]
    if header.flags:  # minor version 1.1: left out when 0, so 1.0 senders' bytes are unchanged
        items.append(f.integer(header.flags, "flags", 0, UINT32_MAX))
    return items


def decode_header(value: object) -> Header:
    items = f.array(value, "header", 5, 16)  # later minor versions may append fields
    return Header(
        f.device_id(items[0]),
        f.integer(items[1], "boot_id", 0, UINT32_MAX),
        f.integer(items[2], "seq", 0, INT63_MAX),
        f.integer(items[3], "sent_ns", 0, MAX_TIME_NS),
        _enum(ClockQuality, items[4], "clock_quality"),
        f.integer(items[5], "flags", 0, UINT32_MAX) if len(items) > 5 else 0,
    )


# --- event --------------------------------------------------------------------------------------


def encode_event(event: Event) -> dict[int, Any]:
    if not isinstance(event.features, dict) or len(event.features) > MAX_FEATURES:
        raise InvalidFieldError(f"features must be a dict of at most {MAX_FEATURES} entries")
    body: dict[int, Any] = {
        1: f.integer(event.event_id, "event_id", 0, INT63_MAX),
        2: _enum_out(Severity, event.severity, "severity"),
        3: f.text(event.detector, "detector", MAX_NAME, min_len=1),
        4: f.integer(event.time_ns, "time_ns", 0, MAX_TIME_NS),
        5: {f.text(k, "feature name", MAX_NAME, min_len=1): f.real(v, f"feature {k}")
            for k, v in event.features.items()},
    }
    if event.position is not None:
        body[6] = encode_fix(event.position, "position")
    if event.detail:
        body[7] = f.text(event.detail, "detail", MAX_TEXT)
    body[8] = _enum_out(Transition, event.transition, "transition")
    if event.raised_ns is not None:
        body[9] = f.integer(event.raised_ns, "raised_ns", 0, MAX_TIME_NS)
    if event.condition:
        body[10] = f.text(event.condition, "condition", MAX_NAME)
    return body


def decode_event(header: Header, body: Mapping[Any, Any]) -> Event:
    features = f.body_map(body.get(5), "event features")
    if len(features) > MAX_FEATURES:
        raise InvalidFieldError(f"an event has at most {MAX_FEATURES} features")
    position = body.get(6)
    return Event(
        header,
        f.integer(body.get(1), "event_id", 0, INT63_MAX),
        _enum(Severity, body.get(2), "severity"),
        f.text(body.get(3), "detector", MAX_NAME, min_len=1),
        f.integer(body.get(4), "time_ns", 0, MAX_TIME_NS),
        {f.text(k, "feature name", MAX_NAME, min_len=1): f.real(v, "feature value")
         for k, v in features.items()},
        None if position is None else decode_fix(position, "position"),
        f.text(body.get(7, ""), "detail", MAX_TEXT),
        _enum(Transition, body.get(8, 0), "transition"),  # absent in 1.0: raised
        None if body.get(9) is None else f.integer(body.get(9), "raised_ns", 0, MAX_TIME_NS),
        f.text(body.get(10, ""), "condition", MAX_NAME),
    )


# --- status -------------------------------------------------------------------------------------


def encode_status(status: Status) -> dict[int, Any]:
    body: dict[int, Any] = {
        1: _enum_out(PowerState, status.power_state, "power_state"),
        2: _milli(status.supply_v, "supply_v", 0, 65_535),
        3: _milli(status.backup_v, "backup_v", 0, 65_535),
        4: f.text(status.firmware_version, "firmware_version", MAX_NAME),
        5: f.integer(status.config_version, "config_version", 0, UINT32_MAX),
        6: f.integer(status.queue_depth, "queue_depth", 0, UINT32_MAX),
        7: f.integer(status.queue_bytes, "queue_bytes", 0, 2**48),
        8: f.integer(status.uptime_s, "uptime_s", 0, UINT32_MAX),
    }
    if status.energy_forecast_days is not None:
        body[9] = _milli(status.energy_forecast_days, "energy_forecast_days", 0, 3_650_000, 100.0)
    if status.avg_current_ma is not None:
        body[10] = _milli(status.avg_current_ma, "avg_current_ma", 0, 10_000_000, 100.0)
    if status.rssi_dbm is not None:
        body[11] = f.integer(status.rssi_dbm, "rssi_dbm", -200, 0)
    if status.position is not None:
        body[12] = encode_fix(status.position, "position")
    if status.driving:
        body[13] = _driving_out(status.driving, status.header.sent_ns)
    return body


def decode_status(header: Header, body: Mapping[Any, Any]) -> Status:
    forecast, current, rssi, position = body.get(9), body.get(10), body.get(11), body.get(12)
    return Status(
        header,
        _enum(PowerState, body.get(1), "power_state"),
        f.integer(body.get(2), "supply_mv", 0, 65_535) / 1000,
        f.integer(body.get(3), "backup_mv", 0, 65_535) / 1000,
        f.text(body.get(4), "firmware_version", MAX_NAME),
        f.integer(body.get(5), "config_version", 0, UINT32_MAX),
        f.integer(body.get(6), "queue_depth", 0, UINT32_MAX),
        f.integer(body.get(7, 0), "queue_bytes", 0, 2**48),
        f.integer(body.get(8, 0), "uptime_s", 0, UINT32_MAX),
        None if forecast is None else f.integer(forecast, "energy_forecast_days", 0, 3_650_000) / 100,
        None if current is None else f.integer(current, "avg_current_ma", 0, 10_000_000) / 100,
        None if rssi is None else f.integer(rssi, "rssi_dbm", -200, 0),
        None if position is None else decode_fix(position, "position"),
        () if body.get(13) is None else _driving_in(body.get(13), header.sent_ns),
    )


# --- driving counters of a status (1.1): [{1: day, 2: harsh_accel, ...}, ...] -----------------
MAX_DRIVING_DAYS = 2  # today and yesterday (yesterday's last counts ride the first status after midnight)
MAX_DRIVING_COUNT = 100_000  # episodes per day, far above any car
MAX_DRIVING_S = 90_000  # seconds in a local day, a 25-hour DST day included
DRIVING_DAY_SLACK = 2  # a local day lies within a day of the UTC day of the status; one more of lateness
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def driving_day_fits(day: str, sent_ns: int) -> bool:
    """Whether a status sent at `sent_ns` may carry the counters of local day `day`."""
    try:
        _driving_day(day, sent_ns)
    except InvalidFieldError:
        return False
    return True


def _driving_day(value: object, sent_ns: int) -> str:
    day = f.text(value, "driving.day", 10, min_len=10)
    try:
        parsed = dt.date.fromisoformat(day) if _ISO_DAY.fullmatch(day) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidFieldError(f"driving.day must be an ISO date YYYY-MM-DD, got {f._show(value)}")
    sent_day = dt.datetime.fromtimestamp(sent_ns // 1_000_000_000, dt.UTC).date()
    if abs((parsed - sent_day).days) > DRIVING_DAY_SLACK:
        raise InvalidFieldError(f"driving.day {day} is more than {DRIVING_DAY_SLACK} days from the "
                                f"status's sent time ({sent_day})")
    return day


def _driving_count(value: object, name: str) -> int:
    return f.integer(value, f"driving.{name}", 0, MAX_DRIVING_S if name.endswith("_s") else MAX_DRIVING_COUNT)


def _driving_out(days: tuple[DrivingDay, ...], sent_ns: int) -> list[dict[int, Any]]:
    if not isinstance(days, tuple) or len(days) > MAX_DRIVING_DAYS:
        raise InvalidFieldError(f"driving must be a tuple of at most {MAX_DRIVING_DAYS} DrivingDay")
    out: list[dict[int, Any]] = []
    for day in days:
        if not isinstance(day, DrivingDay):
            raise InvalidFieldError(f"driving entries must be DrivingDay, got {f._show(day)}")
        entry: dict[int, Any] = {1: _driving_day(day.day, sent_ns)}
        for key, name in enumerate(DRIVING_COUNTS, start=2):
            entry[key] = _driving_count(getattr(day, name), name)
        out.append(entry)
    if len({e[1] for e in out}) != len(out):
        raise InvalidFieldError("driving has one entry per day")
    return out


def _driving_in(value: object, sent_ns: int) -> tuple[DrivingDay, ...]:
    items = f.array(value, "driving", 1, MAX_DRIVING_DAYS)
    days: list[DrivingDay] = []
    for item in items:
        entry = f.body_map(item, "driving entry")
        days.append(DrivingDay(_driving_day(entry.get(1), sent_ns),
                               *(_driving_count(entry.get(key, 0), name)
                                 for key, name in enumerate(DRIVING_COUNTS, start=2))))
    if len({d.day for d in days}) != len(days):
        raise InvalidFieldError("driving has one entry per day")
    return tuple(days)


# --- command ack --------------------------------------------------------------------------------


def encode_ack(ack: CommandAck) -> dict[int, Any]:
    body: dict[int, Any] = {
        1: f.octets(ack.nonce, "nonce", NONCE_BYTES),
        2: _enum_out(AckStatus, ack.status, "status"),
    }
    if ack.detail:
        body[3] = f.text(ack.detail, "detail", MAX_TEXT)
    if ack.position is not None:
        body[4] = encode_fix(ack.position, "position")
    if ack.interrupt is not None:
        body[5] = _enum_out(InterruptState, ack.interrupt, "interrupt")
    return body


def decode_ack(header: Header, body: Mapping[Any, Any]) -> CommandAck:
    position = body.get(4)
    return CommandAck(
        header,
        f.octets(body.get(1), "nonce", NONCE_BYTES),
        _enum(AckStatus, body.get(2), "status"),
        f.text(body.get(3, ""), "detail", MAX_TEXT),
        None if position is None else decode_fix(position, "position"),
        None if body.get(5) is None else _enum(InterruptState, body.get(5), "interrupt"),
    )


# --- config -------------------------------------------------------------------------------------


def _setting(name: object, value: object) -> tuple[str, ConfigValue]:
    key = f.text(name, "setting name", MAX_NAME, min_len=1)
    if type(value) is bool:
        return key, value
    if type(value) is int:
        return key, f.integer(value, f"setting {key}", -INT63_MAX - 1, INT63_MAX)
    if type(value) is float:
        return key, f.real(value, f"setting {key}")
    if type(value) is str:
        return key, f.text(value, f"setting {key}", MAX_TEXT)
    raise InvalidFieldError(f"setting {key} must be a bool, integer, finite float or text")


def encode_config(config: Config) -> dict[int, Any]:
    if not isinstance(config.settings, dict) or len(config.settings) > MAX_SETTINGS:
        raise InvalidFieldError(f"settings must be a dict of at most {MAX_SETTINGS} entries")
    return {
        1: f.integer(config.config_version, "config_version", 0, UINT32_MAX),
        2: dict(_setting(k, v) for k, v in config.settings.items()),
    }


def decode_config(body: Mapping[Any, Any]) -> Config:
    settings = f.body_map(body.get(2), "config settings")
    if len(settings) > MAX_SETTINGS:
        raise InvalidFieldError(f"a config has at most {MAX_SETTINGS} settings")
    return Config(
        f.integer(body.get(1), "config_version", 0, UINT32_MAX),
        dict(_setting(k, v) for k, v in settings.items()),
    )


# --- command ------------------------------------------------------------------------------------

ACTION_CODES: dict[type, int] = {
    SetConfig: 1, RequestPosition: 2, SetGeofence: 3, ClearGeofence: 4, Reboot: 5,
    StartDiagnosticSession: 6, StopDiagnosticSession: 7, ClearEvent: 8,
    ArmStarterInterrupt: 9, ReleaseStarterInterrupt: 10, PaymentReminder: 11,
}
MAX_DIAGNOSTIC_S = 7 * 86400


def _encode_params(action: CommandAction) -> Any:
    if isinstance(action, SetConfig):
        return encode_config(action.config)
    if isinstance(action, SetGeofence):
        fence = action.geofence
        return [
            f.integer(fence.geofence_id, "geofence_id", 0, UINT32_MAX),
            _milli(fence.lat_deg, "geofence lat_deg", -900_000_000, 900_000_000, 1e7),
            _milli(fence.lon_deg, "geofence lon_deg", -1_800_000_000, 1_800_000_000, 1e7),
            _milli(fence.radius_m, "geofence radius_m", 1, 100_000_000, 10.0),
        ]
    if isinstance(action, ClearGeofence):
        fence_id = action.geofence_id
        return None if fence_id is None else f.integer(fence_id, "geofence_id", 0, UINT32_MAX)
    if isinstance(action, StartDiagnosticSession):
        return f.integer(action.duration_s, "duration_s", 1, MAX_DIAGNOSTIC_S)
    if isinstance(action, ClearEvent):
        return f.integer(action.event_id, "event_id", 0, INT63_MAX)
    if isinstance(action, PaymentReminder):
        return [due_date(action.due_date), _enum_out(ReminderPattern, action.pattern, "pattern")]
    return None


def due_date(value: object) -> str:
    """A payment reminder's due date: an ISO date YYYY-MM-DD between 2000 and 2999."""
    day = f.text(value, "due_date", 10, min_len=10)
    try:
        parsed = dt.date.fromisoformat(day) if _ISO_DAY.fullmatch(day) else None
    except ValueError:
        parsed = None
    if parsed is None or not 2000 <= parsed.year <= 2999:
        raise InvalidFieldError(f"due_date must be an ISO date YYYY-MM-DD (2000..2999), got {f._show(value)}")
    return day


def encode_command(command: Command) -> dict[int, Any]:
    code = ACTION_CODES.get(type(command.action))
    if code is None:
        raise InvalidFieldError(f"unknown command action {type(command.action).__name__}")
    body: dict[int, Any] = {
        1: f.device_id(command.target_device_id, "target_device_id"),
        2: f.octets(command.nonce, "nonce", NONCE_BYTES),
        3: f.integer(command.issued_ns, "issued_ns", 0, MAX_TIME_NS),
        4: f.integer(command.expires_ns, "expires_ns", 0, MAX_TIME_NS),
        5: code,
    }
    params = _encode_params(command.action)
    if params is not None:
        body[6] = params
    return body


def _decode_action(code: object, params: object) -> CommandAction:
    if code == 1:
        return SetConfig(decode_config(f.body_map(params, "SET_CONFIG parameters")))
    if code == 3:
        items = f.array(params, "SET_GEOFENCE parameters", 4, 4)
        return SetGeofence(Geofence(
            f.integer(items[0], "geofence_id", 0, UINT32_MAX),
            f.integer(items[1], "geofence lat", -900_000_000, 900_000_000) / 1e7,
            f.integer(items[2], "geofence lon", -1_800_000_000, 1_800_000_000) / 1e7,
            f.integer(items[3], "geofence radius", 1, 100_000_000) / 10,
        ))
    if code == 4:
        return ClearGeofence(None if params is None else f.integer(params, "geofence_id", 0, UINT32_MAX))
    if code == 6:
        return StartDiagnosticSession(f.integer(params, "duration_s", 1, MAX_DIAGNOSTIC_S))
    if code == 8:
        return ClearEvent(f.integer(params, "event_id", 0, INT63_MAX))
    if code == 11:
        items = f.array(params, "PAYMENT_REMINDER parameters", 2, 2)
        return PaymentReminder(due_date(items[0]), _enum(ReminderPattern, items[1], "pattern"))
    simple: dict[int, type[RequestPosition | Reboot | StopDiagnosticSession | ArmStarterInterrupt
                           | ReleaseStarterInterrupt]] = {
        2: RequestPosition, 5: Reboot, 7: StopDiagnosticSession, 9: ArmStarterInterrupt,
        10: ReleaseStarterInterrupt}
    if type(code) is int and code in simple:
        if params is not None:
            raise InvalidFieldError(f"command action {code} takes no parameters")
        action: CommandAction = simple[code]()
        return action
    raise InvalidFieldError(f"unknown command action code {f._show(code)}")


def decode_command(body: Mapping[Any, Any]) -> Command:
    if type(body.get(5)) is not int:
        raise MalformedMessageError("command body: action code (key 5) must be an integer")
    return Command(
        f.device_id(body.get(1), "target_device_id"),
        f.octets(body.get(2), "nonce", NONCE_BYTES),
        f.integer(body.get(3), "issued_ns", 0, MAX_TIME_NS),
        f.integer(body.get(4), "expires_ns", 0, MAX_TIME_NS),
        _decode_action(body.get(5), body.get(6)),
    )
