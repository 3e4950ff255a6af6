"""Typed lienwatch messages: what `protocol.decode` returns and `protocol.encode` accepts.

All messages are frozen dataclasses. Times are UTC nanoseconds since the Unix epoch (`*_ns`),
physical values carry their unit in the name. Telemetry is columnar (one tuple per column), as it
travels on the wire and as the cloud receiver copies it into the database.

Constructors do not validate (decoding validates everything it returns, `encode` validates
everything it writes), so building a message stays cheap on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias

from protocol.catalog import default_catalog


class MessageKind(IntEnum):
    """The kind number in the envelope; 1..15 uplink, 16..31 downlink."""

    TELEMETRY = 1
    EVENT = 2
    STATUS = 3
    COMMAND_ACK = 4
    COMMAND = 16
    CONFIG = 17
    STORED_RECEIPT = 18


class ClockQuality(IntEnum):
    """What disciplined the sender's wall clock when it stamped a time."""

    UNKNOWN = 0
    RTC = 1
    NTP = 2
    GNSS = 3


class FixType(IntEnum):
    """GNSS fix type (NMEA GGA quality / UBX fix type, folded)."""

    NO_FIX = 0
    FIX_2D = 1
    FIX_3D = 2
    DGNSS = 3
    RTK_FLOAT = 4
    RTK_FIXED = 5
    DEAD_RECKONING = 6


class Severity(IntEnum):
    """How urgent an event is for the lender."""

    WARNING = 1
    ALERT = 2
    EMERGENCY = 3


class Transition(IntEnum):
    """Where an event is in its life: raised, escalated (same event id, higher severity, new
    evidence) or cleared (the condition is gone, or an operator cleared it by command)."""

    RAISED = 0
    ESCALATED = 1
    CLEARED = 2


class PowerState(IntEnum):
    """The agent's power mode when it sent a status."""

    UNKNOWN = 0
    ACTIVE = 1  # ignition on / driving, full duty
    IDLE = 2  # ignition off, agent awake
    SLEEP = 3  # duty-cycled, waking periodically
    DEEP_SLEEP = 4  # modem off between rare wake-ups
    BACKUP_BATTERY = 5  # external supply lost, running from the tracker's own battery


class AckStatus(IntEnum):
    """What the device did with a command."""

    ACCEPTED = 0  # verified and queued
    DONE = 1  # executed
    REJECTED = 2  # refused (signature, expiry, replay, addressee, bad parameters)
    FAILED = 3  # accepted but execution failed


class InterruptState(IntEnum):
    """Where the starter interrupt is (protocol 1.2, acks of the interrupt actions)."""

    RELEASED = 0  # the starter works; nothing is armed
    ARMED = 1  # armed, waiting until the car is parked (ignition off, no speed) for the hold time
    ENGAGED = 2  # the relay interrupts the starter: the parked car cannot be started
    OVERRIDDEN = 3  # armed, but an emergency code released the starter for a while


class ReminderPattern(IntEnum):
    """The buzzer pattern of a payment reminder (protocol 1.2); the device owns the timings."""

    GENTLE = 1  # two short beeps
    FIRM = 2  # three long beeps
    FINAL = 3  # a long series of short beeps


HEADER_WANTS_RECEIPTS = 1  # Header.flags bit 0: "confirm what you store" (StoredReceipt, kind 18)


@dataclass(frozen=True, slots=True)
class Header:
    """Identity of one uplink message: (device_id, boot_id, seq) is unique, for deduplication."""

    device_id: str
    boot_id: int  # 0..2**32-1, changes on every boot of the agent
    seq: int  # 0..2**63-1, per boot, increases by one per message
    sent_ns: int  # UTC ns when the message was built
    clock_quality: ClockQuality
    flags: int = 0  # capabilities of the sender (HEADER_WANTS_RECEIPTS); on the wire when not 0


@dataclass(frozen=True, slots=True)
class GnssFix:
    """One GNSS fix (a row of `FixColumns`, or a single position in events and statuses)."""

    time_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    speed_kmh: float
    heading_deg: float
    hdop: float
    sats: int
    fix_type: FixType


@dataclass(frozen=True, slots=True)
class FixColumns:
    """GNSS fixes as columns of equal length (row i of every column is fix i)."""

    time_ns: tuple[int, ...] = ()
    lat_deg: tuple[float, ...] = ()
    lon_deg: tuple[float, ...] = ()
    alt_m: tuple[float, ...] = ()
    speed_kmh: tuple[float, ...] = ()
    heading_deg: tuple[float, ...] = ()
    hdop: tuple[float, ...] = ()
    sats: tuple[int, ...] = ()
    fix_type: tuple[int, ...] = ()  # FixType values

    def __len__(self) -> int:
        return len(self.time_ns)

    def row(self, index: int) -> GnssFix:
        return GnssFix(
            self.time_ns[index], self.lat_deg[index], self.lon_deg[index], self.alt_m[index],
            self.speed_kmh[index], self.heading_deg[index], self.hdop[index], self.sats[index],
            FixType(self.fix_type[index]),
        )

    def rows(self) -> Iterator[GnssFix]:
        return (self.row(i) for i in range(len(self)))

    @classmethod
    def from_fixes(cls, fixes: Iterable[GnssFix]) -> FixColumns:
        rows = list(fixes)
        return cls(
            tuple(f.time_ns for f in rows), tuple(f.lat_deg for f in rows),
            tuple(f.lon_deg for f in rows), tuple(f.alt_m for f in rows),
            tuple(f.speed_kmh for f in rows), tuple(f.heading_deg for f in rows),
            tuple(f.hdop for f in rows), tuple(f.sats for f in rows),
            tuple(int(f.fix_type) for f in rows),
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """One signal sample (a row of `SampleColumns`); `value` in the catalog unit of the signal."""

    time_ns: int
    signal_id: int
    value: float


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """Signal samples as columns of equal length; ids from the signal catalog."""

    time_ns: tuple[int, ...] = ()
    signal_id: tuple[int, ...] = ()
    value: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.time_ns)

    def rows(self) -> Iterator[Sample]:
        return (Sample(t, s, v) for t, s, v in zip(self.time_ns, self.signal_id, self.value, strict=True))

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> SampleColumns:
        rows = list(samples)
        return cls(
            tuple(s.time_ns for s in rows), tuple(s.signal_id for s in rows), tuple(s.value for s in rows)
        )


def _catalog_version() -> int:
    return default_catalog().version


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """GNSS fixes and signal samples collected since the previous batch.

    `raw_signal_ids` lists signal ids that the decoding side's catalog does not know (the sender
    used a newer catalog): their values are kept as the raw wire integers, unscaled.
    """

    header: Header
    fixes: FixColumns = field(default_factory=FixColumns)
    samples: SampleColumns = field(default_factory=SampleColumns)
    catalog_version: int = field(default_factory=_catalog_version)
    raw_signal_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Event:
    """An anomaly a detector found on the vehicle, with its evidence."""

    header: Header
    event_id: int  # 0..2**63-1, unique per device
    severity: Severity
    detector: str  # e.g. "tow", "unplug", "jamming", "odometer_rollback"
    time_ns: int  # when the detector fired
    features: dict[str, float] = field(default_factory=dict)  # evidence, feature name -> value
    position: GnssFix | None = None  # last known position at detection
    detail: str = ""  # one human-readable line
    # minor version 1.1: the event's lifecycle (older senders: every event is RAISED)
    transition: Transition = Transition.RAISED
    raised_ns: int | None = None  # when the event was first raised (escalations and clears)
    condition: str = ""  # which condition of the detector, when it has several ("spoofing")


@dataclass(frozen=True, slots=True)
class Status:
    """Heartbeat: power, energy budget, versions and outbox state of the agent."""

    header: Header
    power_state: PowerState
    supply_v: float  # vehicle 12 V supply as the tracker measures it
    backup_v: float  # the tracker's backup battery
    firmware_version: str
    config_version: int
    queue_depth: int  # messages waiting in the outbox
    queue_bytes: int = 0
    uptime_s: int = 0
    energy_forecast_days: float | None = None  # days the parked-car energy budget lasts at this plan
    avg_current_ma: float | None = None  # the plan's average draw from the vehicle battery
    rssi_dbm: int | None = None
    position: GnssFix | None = None
    driving: tuple[DrivingDay, ...] = ()  # 1.1: the day's driving counters (today, and yesterday)


@dataclass(frozen=True, slots=True)
class DrivingDay:
    """The driving detector's counters of one local day of the vehicle, cumulative over the day
    (a later status of the same day reports higher or equal counts)."""

    day: str  # the vehicle's local date, ISO "YYYY-MM-DD"
    harsh_accel: int = 0
    harsh_brake: int = 0
    harsh_corner: int = 0
    overspeed: int = 0  # overspeed episodes
    overspeed_s: int = 0  # seconds above the overspeed limit
    idle_long: int = 0  # long idling episodes
    idle_long_s: int = 0  # seconds of long idling


DRIVING_COUNTS = ("harsh_accel", "harsh_brake", "harsh_corner", "overspeed", "overspeed_s",
                  "idle_long", "idle_long_s")  # DrivingDay's counters, in wire order (keys 2..8)


@dataclass(frozen=True, slots=True)
class CommandAck:
    """The device's answer to a downlink command, identified by the command's nonce."""

    header: Header
    nonce: bytes
    status: AckStatus
    detail: str = ""  # reason for REJECTED/FAILED (error class and message)
    position: GnssFix | None = None  # the answer to REQUEST_POSITION
    interrupt: InterruptState | None = None  # 1.2: the starter interrupt after an interrupt action


# --- downlink ---------------------------------------------------------------------------------

ConfigValue: TypeAlias = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Config:
    """A complete agent configuration: dotted setting names to scalar values."""

    config_version: int
    settings: dict[str, ConfigValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Geofence:
    """A circular geofence; the agent raises an event when the vehicle leaves it."""

    geofence_id: int
    lat_deg: float
    lon_deg: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class SetConfig:
    config: Config


@dataclass(frozen=True, slots=True)
class RequestPosition:
    pass


@dataclass(frozen=True, slots=True)
class SetGeofence:
    geofence: Geofence


@dataclass(frozen=True, slots=True)
class ClearGeofence:
    geofence_id: int | None = None  # None clears all geofences


@dataclass(frozen=True, slots=True)
class Reboot:
    pass


@dataclass(frozen=True, slots=True)
class StartDiagnosticSession:
    duration_s: int  # the session ends by itself after this long


@dataclass(frozen=True, slots=True)
class StopDiagnosticSession:
    pass


@dataclass(frozen=True, slots=True)
class ClearEvent:
    """An operator clears an open event (protocol 1.1): the device sends its CLEARED transition."""

    event_id: int


@dataclass(frozen=True, slots=True)
class ArmStarterInterrupt:
    """Arm the starter interrupt (protocol 1.2): it engages only once the car is parked."""


@dataclass(frozen=True, slots=True)
class ReleaseStarterInterrupt:
    """Release the starter interrupt (protocol 1.2), whatever state it is in."""


@dataclass(frozen=True, slots=True)
class PaymentReminder:
    """Sound a payment reminder at each ignition on until `due_date` is over (protocol 1.2)."""

    due_date: str  # ISO "YYYY-MM-DD", the vehicle's local date
    pattern: ReminderPattern = ReminderPattern.GENTLE


CommandAction: TypeAlias = (
    SetConfig | RequestPosition | SetGeofence | ClearGeofence | Reboot | StartDiagnosticSession
    | StopDiagnosticSession | ClearEvent | ArmStarterInterrupt | ReleaseStarterInterrupt | PaymentReminder
)


@dataclass(frozen=True, slots=True)
class Command:
    """A downlink command; only ever executed when signed (see `protocol.signing`)."""

    target_device_id: str
    nonce: bytes  # 16 random bytes, never reused
    issued_ns: int
    expires_ns: int
    action: CommandAction


@dataclass(frozen=True, slots=True)
class SignedCommand:
    """A command as it travels: `body` is the exact CBOR that `signature` (Ed25519) covers."""

    command: Command
    body: bytes
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class BootReceipt:
    """The seqs of one boot that are stored: inclusive (first, last) ranges, ascending, disjoint."""

    boot_id: int
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    """The receiver's word that it committed these (boot, seq) of a device to the database."""

    target_device_id: str
    issued_ns: int
    boots: tuple[BootReceipt, ...]

    def stored_keys(self) -> Iterator[tuple[int, int]]:
        """Every (boot_id, seq) this receipt confirms."""
        for boot in self.boots:
            for first, last in boot.ranges:
                for seq in range(first, last + 1):
                    yield boot.boot_id, seq


UplinkMessage: TypeAlias = TelemetryBatch | Event | Status | CommandAck
Message: TypeAlias = TelemetryBatch | Event | Status | CommandAck | SignedCommand | Config | StoredReceipt

KIND_OF: dict[type, MessageKind] = {
    TelemetryBatch: MessageKind.TELEMETRY,
    Event: MessageKind.EVENT,
    Status: MessageKind.STATUS,
    CommandAck: MessageKind.COMMAND_ACK,
    SignedCommand: MessageKind.COMMAND,
    Command: MessageKind.COMMAND,
    Config: MessageKind.CONFIG,
    StoredReceipt: MessageKind.STORED_RECEIPT,
}
