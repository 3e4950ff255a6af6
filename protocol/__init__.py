"""The lienwatch wire format shared by edge and cloud (see docs/protocol.md).

`encode(message) -> bytes` and `decode(data) -> Message` are the whole codec; the typed messages
live in `protocol.messages`, MQTT topics in `protocol.topics`, command signatures in
`protocol.signing`, errors in `protocol.errors`.
"""

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

__all__ = [
    "AckStatus", "ClearGeofence", "ClockQuality", "Command", "CommandAck", "CommandAction", "Config",
    "Event", "FixColumns", "FixType", "Geofence", "GnssFix", "Header", "Message", "MessageKind",
    "PowerState", "ProtocolError", "Reboot", "RequestPosition", "Sample", "SampleColumns", "SetConfig",
    "SetGeofence", "Severity", "SignedCommand", "StartDiagnosticSession", "Status", "StopDiagnosticSession",
    "TelemetryBatch", "UnknownSignalError", "UplinkMessage", "decode", "encode", "encode_command_body",
]
