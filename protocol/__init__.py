"""The lienwatch wire format shared by edge and cloud (see docs/protocol.md).

`encode(message) -> bytes` and `decode(data) -> Message` are the whole codec; the typed messages
live in `protocol.messages`, MQTT topics in `protocol.topics`, command signatures in
`protocol.signing`, errors in `protocol.errors`.

Names are loaded on first use, so `import protocol.cli` (what `lienwatch --help` does) or
`protocol.catalog` does not pull in numpy and the codec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol import errors, messages, signing, topics
    from protocol.codec import decode, encode, encode_command_body
    from protocol.errors import ProtocolError, UnknownSignalError
    from protocol.messages import (
        AckStatus,
        ClearGeofence,
        ClockQuality,
        Command,
        CommandAck,
        CommandAction,
        Config,
        Event,
        FixColumns,
        FixType,
        Geofence,
        GnssFix,
        Header,
        Message,
        MessageKind,
        PowerState,
        Reboot,
        RequestPosition,
        Sample,
        SampleColumns,
        SetConfig,
        SetGeofence,
        Severity,
        SignedCommand,
        StartDiagnosticSession,
        Status,
        StopDiagnosticSession,
        TelemetryBatch,
        UplinkMessage,
    )

_MESSAGES = (
    "AckStatus", "ClearGeofence", "ClockQuality", "Command", "CommandAck", "CommandAction", "Config",
    "Event", "FixColumns", "FixType", "Geofence", "GnssFix", "Header", "Message", "MessageKind",
    "PowerState", "Reboot", "RequestPosition", "Sample", "SampleColumns", "SetConfig", "SetGeofence",
    "Severity", "SignedCommand", "StartDiagnosticSession", "Status", "StopDiagnosticSession",
    "TelemetryBatch", "UplinkMessage",
)
_WHERE: dict[str, str] = {
    "decode": "protocol.codec", "encode": "protocol.codec", "encode_command_body": "protocol.codec",
    "ProtocolError": "protocol.errors", "UnknownSignalError": "protocol.errors",
    **dict.fromkeys(_MESSAGES, "protocol.messages"),
}
_SUBMODULES = frozenset({"errors", "messages", "signing", "topics", "catalog", "codec", "jsonform", "golden",
                         "limits", "fields"})

__all__ = [
    "AckStatus",
    "ClearGeofence",
    "ClockQuality",
    "Command",
    "CommandAck",
    "CommandAction",
    "Config",
    "Event",
    "FixColumns",
    "FixType",
    "Geofence",
    "GnssFix",
    "Header",
    "Message",
    "MessageKind",
    "PowerState",
    "ProtocolError",
    "Reboot",
    "RequestPosition",
    "Sample",
    "SampleColumns",
    "SetConfig",
    "SetGeofence",
    "Severity",
    "SignedCommand",
    "StartDiagnosticSession",
    "Status",
    "StopDiagnosticSession",
    "TelemetryBatch",
    "UnknownSignalError",
    "UplinkMessage",
    "decode",
    "encode",
    "encode_command_body",
    "errors",
    "messages",
    "signing",
    "topics",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"protocol.{name}")
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'protocol' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
