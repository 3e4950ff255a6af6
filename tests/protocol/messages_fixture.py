"""One realistic example of every message type, shared by the protocol tests.

Kept apart from `protocol.golden`'s examples on purpose: those are frozen (they define the golden
vectors byte for byte), these may be sized and varied by tests (`batch(n)`, RTK fix types).
"""

from __future__ import annotations

from protocol.messages import (
    AckStatus,
    ClockQuality,
    Command,
    CommandAck,
    Config,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    PowerState,
    SampleColumns,
    SetConfig,
    Severity,
    Status,
    TelemetryBatch,
)

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
HEADER = Header("veh-0001", boot_id=7, seq=42, sent_ns=T0 + 61_000_000_000, clock_quality=ClockQuality.GNSS)
FIX = GnssFix(T0, 47.3769, 8.5417, 408.3, 48.25, 271.5, 0.9, 11, FixType.FIX_3D)
NONCE = bytes(range(16))


def fixes(n: int = 5) -> FixColumns:
    return FixColumns.from_fixes(
        GnssFix(T0 + i * 1_000_000_000, round(47.3769 + i * 1e-5, 7), round(8.5417 - i * 2e-5, 7),
                round(408.3 + i / 10, 1), 48.25 + i, (271.5 + i * 3) % 360, 0.9, 11 - i % 2,
                FixType.RTK_FIXED if i % 2 else FixType.RTK_FLOAT)
        for i in range(n)
    )


def batch(n: int = 5) -> TelemetryBatch:
    samples = SampleColumns(
        time_ns=(T0, T0, T0 + 500_000_000, T0 + 1_000_000_000),
        signal_id=(1, 40, 1, 60),
        value=(48.25, 12.345, 49.0, 1.0),
    )
    return TelemetryBatch(HEADER, fixes(n), samples)


def event() -> Event:
    return Event(HEADER, 9001, Severity.ALERT, "tow", T0 + 30_000_000_000,
                 {"displacement_m": 412.5, "ignition": 0.0, "tilt_deg": 4.25}, FIX,
                 "moved 412 m with ignition off")


def status() -> Status:
    return Status(HEADER, PowerState.SLEEP, 12.412, 3.95, "lienwatch-0.1.0", 3, 17, 20480, 86400,
                  energy_forecast_days=87.5, avg_current_ma=2.45, rssi_dbm=-87, position=FIX)


def ack() -> CommandAck:
    return CommandAck(HEADER, NONCE, AckStatus.DONE, "", FIX)


def config() -> Config:
    return Config(3, {"uplink.batch_s": 60, "detect.tow.radius_m": 150.0, "detect.tow.enabled": True,
                      "uplink.host": "mqtt.example.net"})


def command() -> Command:
    return Command("veh-0001", NONCE, T0, T0 + 3600 * 10**9, SetConfig(config()))
