"""Building uplink messages: headers (device, boot, per-boot sequence, time + its quality)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from pathlib import Path

from lienwatch.clock import Clock
from protocol.messages import ClockQuality, Header

_TIME_ERROR = 5  # adjtimex(2): the kernel clock is not synchronised


TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")  # systemd-timesyncd touches it when synced


def kernel_clock_quality() -> ClockQuality:
    """NTP if the clock is synchronised, RTC if the kernel says it is not, UNKNOWN if unsure.

    systemd-timesyncd's flag file is read first: under the unit's ProtectClock=true, adjtimex(2)
    is filtered out even for reading, and then this falls back to UNKNOWN.
    """
    if TIMESYNC_FLAG.exists():
        return ClockQuality.NTP
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return ClockQuality.UNKNOWN
    if state < 0:
        return ClockQuality.UNKNOWN
    return ClockQuality.RTC if state == _TIME_ERROR else ClockQuality.NTP


class HeaderFactory:
    """Stamps uplink messages; thread-safe. `boot_id` is random per agent start."""

    def __init__(self, device_id: str, clock: Clock, *, boot_id: int | None = None,
                 clock_quality: Callable[[], ClockQuality] = kernel_clock_quality,
                 wall_ns: Callable[[], int] | None = None, flags: int = 0) -> None:
        self.device_id = device_id
        self.flags = flags  # Header.flags of every message (HEADER_WANTS_RECEIPTS)
        self.clock = clock
        self._wall_ns = wall_ns or clock.wall_ns
        self.boot_id = boot_id if boot_id is not None else int.from_bytes(os.urandom(4), "big")
        self._clock_quality = clock_quality
        self._quality = clock_quality()
        self._seq = 0
        self._event_seq = 0
        self._lock = threading.Lock()

    def refresh_clock_quality(self) -> None:
        self._quality = self._clock_quality()

    def header_quality_name(self) -> str:
        return self._quality.name

    def header(self) -> Header:
        with self._lock:
            seq = self._seq
            self._seq += 1
        return Header(self.device_id, self.boot_id, seq, self._wall_ns(), self._quality, self.flags)

    def event_id(self) -> int:
        """Unique per device: boot id in the high bits, a per-boot counter in the low 31."""
        with self._lock:
            self._event_seq += 1
            return (self.boot_id << 31) | (self._event_seq & 0x7FFF_FFFF)
