"""The MCU's event log: a fixed ring of records that survives the SoC being off.

Each record is (index, time_ms, kind, value) packed in 17 bytes; `time_ms` is Unix time in ms
once the SoC has synced the MCU's clock, and minus the MCU's uptime in ms before that (negative:
"this long after the MCU booted, wall time unknown"). When the ring is full the oldest record
is overwritten and counted in `dropped`: the newest events matter most to a lender.
"""

import struct

RECORD = "<IqBi"
RECORD_SIZE = 17

MOTION = 1  # motion held past the confirmation window: a tow or a drive-away
BUMP = 2  # motion that stopped within the window (dismissed, the SoC stays off)
TILT = 3  # the board's gravity vector turned past the tilt threshold
UNPLUG = 4  # supply below the unplug threshold twice running
PLUG = 5  # supply back
LOW_SUPPLY = 6  # supply below the low-battery threshold
BOOT = 7  # the MCU (re)started
KIND_NAMES = {MOTION: "motion", BUMP: "bump", TILT: "tilt", UNPLUG: "unplug", PLUG: "plug",
              LOW_SUPPLY: "low_supply", BOOT: "boot"}


class EventLog:
    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._records: list[tuple[int, int, int, int]] = []
        self.next_index = 0
        self.dropped = 0

    def append(self, time_ms: int, kind: int, value: int = 0) -> tuple[int, int, int, int]:
        record = (self.next_index, time_ms, kind, value)
        self.next_index += 1
        self._records.append(record)
        if len(self._records) > self.capacity:
            self._records.pop(0)
            self.dropped += 1
        return record

    def since(self, index: int) -> list[tuple[int, int, int, int]]:
        """Records with an index >= `index`, oldest first."""
        return [r for r in self._records if r[0] >= index]

    def count(self, kind: int) -> int:
        return sum(1 for r in self._records if r[2] == kind)

    def to_bytes(self) -> bytes:
        head = struct.pack("<III", self.next_index, self.dropped, len(self._records))
        return head + b"".join(struct.pack(RECORD, *r) for r in self._records)

    @classmethod
    def from_bytes(cls, data: bytes, capacity: int = 64) -> "EventLog":
        """A log from stored bytes; an empty or damaged store gives an empty log."""
        log = cls(capacity)
        if len(data) < 12:
            return log
        next_index, dropped, n = struct.unpack("<III", data[:12])
        if len(data) != 12 + n * RECORD_SIZE or n > capacity:
            return log
        log.next_index, log.dropped = next_index, dropped
        for i in range(n):
            off = 12 + i * RECORD_SIZE
            index, time_ms, kind, value = struct.unpack(RECORD, data[off:off + RECORD_SIZE])
            log._records.append((index, time_ms, kind, value))
        return log


def pack(record: tuple[int, int, int, int]) -> bytes:
    return struct.pack(RECORD, record[0], record[1], record[2], record[3])


def unpack_many(data: bytes) -> list[tuple[int, int, int, int]]:
    if len(data) % RECORD_SIZE:
        raise ValueError("event payload is not a whole number of records")
    out = []
    for off in range(0, len(data), RECORD_SIZE):
        index, time_ms, kind, value = struct.unpack(RECORD, data[off:off + RECORD_SIZE])
        out.append((index, time_ms, kind, value))
    return out
