"""Golden vectors: one canonical example of every message kind, as `.cbor` and `.json` files.

`protocol/vectors/NAME.cbor` is what `encode` produces for the example, `NAME.json` is what
`decode` + `jsonform.dumps` print for those bytes. A test checks both directions byte for byte,
so an accidental format change fails CI. After a deliberate change (a new minor field, a new
major version), regenerate them and review the diff:

    python -m protocol.golden --write     # rewrite protocol/vectors/
    python -m protocol.golden --check     # exit 1 if any vector differs
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from protocol import codec, jsonform, signing
from protocol.messages import (
    HEADER_WANTS_RECEIPTS,
    AckStatus,
    ArmStarterInterrupt,
    BootReceipt,
    ClockQuality,
    Command,
    CommandAck,
    CommandAction,
    Config,
    DrivingDay,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    InterruptState,
    Message,
    PaymentReminder,
    PowerState,
    ReleaseStarterInterrupt,
    ReminderPattern,
    SampleColumns,
    SetConfig,
    Severity,
    Status,
    StoredReceipt,
    TelemetryBatch,
    Transition,
)

VECTOR_DIR = Path(__file__).with_name("vectors")
# A published test key: vectors must be reproducible, so never trust it on a real device.
TEST_SIGNING_SEED = hashlib.sha256(b"lienwatch golden vectors: public test key, never trust").digest()

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
HEADER = Header("veh-0001", boot_id=7, seq=42, sent_ns=T0 + 11_000_000_000, clock_quality=ClockQuality.GNSS)
POSITION = GnssFix(T0 + 9_000_000_000, 47.3772415, 8.5421968, 409.2, 36.41, 52.3, 0.8, 12, FixType.FIX_3D)
NONCE = bytes.fromhex("5e1f0c2a9b3d4e6f708192a3b4c5d6e7")


def telemetry() -> TelemetryBatch:
    """Ten seconds of pulling away from a stop, with OBD and power samples."""
    lat = (47.3769001, 47.3769001, 47.3769044, 47.3769171, 47.3769386, 47.3769687, 47.3770071, 47.3770532,
           47.3771062, 47.3771658)
    lon = (8.5417003, 8.5417003, 8.5417071, 8.5417274, 8.5417612, 8.5418090, 8.5418706, 8.5419459,
           8.5420344, 8.5421351)
    fixes = FixColumns(
        time_ns=tuple(T0 + i * 1_000_000_000 for i in range(10)),
        lat_deg=lat, lon_deg=lon,
        alt_m=(408.3, 408.3, 408.4, 408.4, 408.6, 408.7, 408.8, 408.8, 409.0, 409.1),
        speed_kmh=(0.0, 0.0, 3.12, 8.94, 14.87, 20.51, 25.73, 30.12, 33.96, 36.41),
        heading_deg=(52.3, 52.3, 51.8, 51.9, 52.4, 52.6, 52.5, 52.3, 52.4, 52.3),
        hdop=(0.8,) * 10,
        sats=(12, 12, 12, 12, 12, 12, 11, 12, 12, 12),
        fix_type=(int(FixType.RTK_FLOAT),) * 3 + (int(FixType.RTK_FIXED),) * 7,
    )
    samples = SampleColumns(
        time_ns=(T0, T0 + 20_000_000, T0 + 40_000_000, T0 + 5_000_000_000, T0 + 5_020_000_000,
                 T0 + 5_040_000_000, T0 + 9_000_000_000, T0 + 9_010_000_000),
        signal_id=(1, 3, 40, 1, 3, 40, 1, 60),
        value=(0.0, 812.25, 14.112, 20.5, 1845.5, 14.087, 36.25, 0.0),
    )
    return TelemetryBatch(HEADER, fixes, samples, catalog_version=1)


def event() -> Event:
    return Event(HEADER, 90017, Severity.EMERGENCY, "tow", T0 + 10_500_000_000,
                 {"displacement_m": 412.5, "ignition_on": 0.0, "tilt_deg": 4.25, "max_speed_kmh": 36.41},
                 POSITION, "moved 412 m with the ignition off")


def event_escalated() -> Event:
    """The same event id later in its life: a GNSS jamming warning turned critical (1.1 fields)."""
    return Event(HEADER, 90018, Severity.EMERGENCY, "jamming", T0 + 10_500_000_000,
                 {"cn0_mean_dbhz": 14.5, "cn0_drop_dbhz": 27.0, "can_speed_kmh": 52.0},
                 POSITION, "GNSS fix lost while CAN speed shows motion", Transition.ESCALATED,
                 raised_ns=T0 + 4_000_000_000, condition="jamming")


def status() -> Status:
    return Status(HEADER, PowerState.SLEEP, 12.412, 3.951, "lienwatch-0.1.0", 3, 17, 20480, 86400,
                  energy_forecast_days=87.5, avg_current_ma=2.45, rssi_dbm=-87, position=POSITION)


def status_counters() -> Status:
    """A 1.1 status with the driving detector's counters of today and of yesterday (key 13)."""
    return replace(status(), driving=(DrivingDay("2025-12-31", 2, 5, 1, 1, 74, 0, 0),
                                      DrivingDay("2026-01-01", 0, 1, 0, 0, 0, 1, 412)))


def command_ack() -> CommandAck:
    return CommandAck(HEADER, NONCE, AckStatus.DONE, "", POSITION)


def command_ack_interrupt() -> CommandAck:
    """A 1.2 ack of ArmStarterInterrupt: armed, not engaged yet, and why (key 5: the interrupt state)."""
    return CommandAck(HEADER, NONCE, AckStatus.DONE, "armed; engages when parked: ignition on",
                      interrupt=InterruptState.ARMED)


def config() -> Config:
    return Config(4, {"uplink.batch_s": 60, "detect.tow.radius_m": 150.0, "detect.tow.enabled": True,
                      "uplink.broker": "mqtts://mqtt.example.net:8883"})


def command() -> Message:
    body = Command("veh-0001", NONCE, T0, T0 + 3600 * 10**9, SetConfig(config()))
    return signing.sign_command(body, signing.private_key_from_bytes(TEST_SIGNING_SEED))


def _signed(action: CommandAction, nonce: bytes) -> Message:
    body = Command("veh-0001", nonce, T0, T0 + 3600 * 10**9, action)
    return signing.sign_command(body, signing.private_key_from_bytes(TEST_SIGNING_SEED))


def command_arm_interrupt() -> Message:
    """Protocol 1.2, action 9: arm the starter interrupt (no parameters)."""
    return _signed(ArmStarterInterrupt(), bytes.fromhex("a1" * 16))


def command_release_interrupt() -> Message:
    """Protocol 1.2, action 10: release the starter interrupt (no parameters)."""
    return _signed(ReleaseStarterInterrupt(), bytes.fromhex("a2" * 16))


def command_payment_reminder() -> Message:
    """Protocol 1.2, action 11: a payment reminder due 2026-01-05, pattern FIRM."""
    return _signed(PaymentReminder("2026-01-05", ReminderPattern.FIRM), bytes.fromhex("a3" * 16))


def stored_receipt() -> StoredReceipt:
    """The receiver confirms seqs 40..42 and 45 of boot 7 and 3 of boot 8 (kind 18, version 1.1)."""
    return StoredReceipt("veh-0001", T0 + 13_000_000_000,
                         (BootReceipt(7, ((40, 42), (45, 45))), BootReceipt(8, ((3, 3),))))


def telemetry_receipts() -> TelemetryBatch:
    """An agent of version 1.1 that asks for stored receipts (header flags, bit 0)."""
    batch = telemetry()
    header = Header(HEADER.device_id, HEADER.boot_id, HEADER.seq, HEADER.sent_ns, HEADER.clock_quality,
                    flags=HEADER_WANTS_RECEIPTS)
    return TelemetryBatch(header, batch.fixes, batch.samples, batch.catalog_version)


EXAMPLES: dict[str, Callable[[], Message]] = {
    "telemetry": telemetry, "event": event, "event_escalated": event_escalated, "status": status,
    "status_counters": status_counters,
    "command_ack": command_ack, "command": command, "config": config,
    "stored_receipt": stored_receipt, "telemetry_receipts": telemetry_receipts,
    "command_ack_interrupt": command_ack_interrupt, "command_arm_interrupt": command_arm_interrupt,
    "command_release_interrupt": command_release_interrupt,
    "command_payment_reminder": command_payment_reminder,
}
# Deflate output depends on the zlib build, so this vector is checked in the decode direction only.
DEFLATED = {"telemetry_deflate": telemetry}
# Vectors of older minor versions: committed bytes that this code must still decode (it no longer
# writes them). event_v1_0 is an event of version 1.0, before the lifecycle keys 8-10.
LEGACY = ("event_v1_0",)
LEGACY_DIR = VECTOR_DIR  # the committed vectors (not a --write target)


def expected_files() -> dict[str, bytes]:
    """File name → exact content of every vector, as this code produces them."""
    files: dict[str, bytes] = {}
    for name, make in EXAMPLES.items():
        data = codec.encode(make())
        files[f"{name}.cbor"] = data
        files[f"{name}.json"] = jsonform.dumps(codec.decode(data)).encode()
    for name, make in DEFLATED.items():
        data = codec.encode(make(), deflate=True)
        files[f"{name}.cbor"] = data
        files[f"{name}.json"] = jsonform.dumps(codec.decode(data)).encode()
    for name in LEGACY:
        data = (LEGACY_DIR / f"{name}.cbor").read_bytes()
        files[f"{name}.json"] = jsonform.dumps(codec.decode(data)).encode()
    return files


def write_vectors(directory: Path = VECTOR_DIR) -> list[Path]:
    """Regenerate the vectors deliberately (after a reviewed format change)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in expected_files().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protocol.golden", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite protocol/vectors/")
    action.add_argument("--check", action="store_true", help="exit 1 if a vector differs")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_vectors():
            print(f"wrote {path}")
        return 0
    stale = [name for name, content in expected_files().items()
             if not (VECTOR_DIR / name).exists() or (VECTOR_DIR / name).read_bytes() != content]
    for name in stale:
        print(f"differs: {VECTOR_DIR / name}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
