"""GNSS time disciplines the agent's wall clock, with the clock-quality flag of the protocol.

The agent stamps uplink messages with UTC and a quality flag (GNSS-disciplined, NTP, RTC only,
unknown). `ClockDiscipline.observe(fix)` takes the UTC time of a fix with a position, compares it
with the injected clock's wall time at the moment the epoch completed, and keeps the offset;
`wall_ns()` is the corrected time. The quality is GNSS while the last GNSS time is younger than
`holdover_s`, then falls back to what the platform has (`fallback`, NTP or RTC or UNKNOWN).
Receivers report UTC from their own RTC before they have a fix, and a receiver with a GPS week
rollover bug reports dates ~19.7 years off: only times of fixes with a position and after
`min_valid_utc_ns` count.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.sources.gnss.fix import GnssFix
from lienwatch.clock import Clock
from protocol.messages import ClockQuality  # UNKNOWN, RTC, NTP, GNSS: the wire's flag

__all__ = ["ClockDiscipline", "ClockQuality", "DisciplineHook"]

# 2024-01-01T00:00:00Z: no fix this software sees can be older.
MIN_VALID_UTC_NS = 1_704_067_200 * 1_000_000_000


DisciplineHook = Callable[[int, ClockQuality], None]
"""Called with (offset_ns, quality) when the offset is updated: e.g. to step the system clock."""


class ClockDiscipline:
    """Offset of GNSS UTC from the local wall clock and the resulting time quality."""

    def __init__(
        self,
        clock: Clock,
        *,
        fallback: ClockQuality = ClockQuality.UNKNOWN,
        holdover_s: float = 600.0,
        step_threshold_s: float = 0.5,
        hook: DisciplineHook | None = None,
        min_valid_utc_ns: int = MIN_VALID_UTC_NS,
    ) -> None:
        self.clock = clock
        self.fallback = fallback
        self.holdover_ns = round(holdover_s * 1e9)
        self.step_threshold_ns = round(step_threshold_s * 1e9)
        self.hook = hook
        self.min_valid_utc_ns = min_valid_utc_ns
        self.offset_ns = 0
        self.last_gnss_mono_ns: int | None = None
        self.rejected = 0

    def observe(self, fix: GnssFix) -> bool:
        """Take the time of `fix` if it is trustworthy; True if the offset was updated."""
        if fix.time_utc_ns is None or not fix.fix.has_position or fix.time_utc_ns < self.min_valid_utc_ns:
            self.rejected += 1
            return False
        # The epoch completed at fix.mono_ns; the wall clock then read wall_now - (mono_now - mono_ns).
        wall_at_fix = self.clock.wall_ns() - (self.clock.monotonic_ns() - fix.mono_ns)
        offset = fix.time_utc_ns - wall_at_fix
        changed = abs(offset - self.offset_ns) >= self.step_threshold_ns or self.last_gnss_mono_ns is None
        self.offset_ns = offset
        self.last_gnss_mono_ns = fix.mono_ns
        if changed and self.hook is not None:
            self.hook(offset, ClockQuality.GNSS)
        return True

    def quality(self) -> ClockQuality:
        last = self.last_gnss_mono_ns
        if last is not None and self.clock.monotonic_ns() - last <= self.holdover_ns:
            return ClockQuality.GNSS
        return self.fallback

    def wall_ns(self) -> int:
        """UTC now: the wall clock corrected by the GNSS offset (if there ever was one)."""
        return self.clock.wall_ns() + self.offset_ns
