"""When to ask for which PID: per-PID periods and priorities under a bus-load cap.

Each PID has a period and a priority (0 is the most important). `due()` lists the PIDs whose
time has come, most important first, then most overdue first. The source spends tokens from a
`TokenBucket` (frames per second derived from the bitrate and the allowed bus share) for each
request it sends; when the bucket is empty the rest of the due PIDs wait for the next round. So
under the cap low-priority PIDs are delayed, high-priority ones keep their rate, and the poller
never takes more than its share of a car's bus.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lienwatch.clock import Clock
from lienwatch.errors import ConfigError

BITS_PER_FRAME = 135
"""Worst case for an 11-bit-id classic frame with 8 data bytes, including bit stuffing."""


@dataclass(frozen=True, slots=True)
class PollSpec:
    """Poll `pid` every `period_s` seconds; lower `priority` wins under the bus-load cap."""

    pid: int
    period_s: float
    priority: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.pid <= 0xFF:
            raise ConfigError(f"obd.pids: PID {self.pid} is not in 0..255")
        if not self.period_s > 0:
            raise ConfigError(f"obd.pids: period_s of PID 0x{self.pid:02X} must be > 0")


class TokenBucket:
    """`rate_per_s` tokens per second, at most `capacity` saved up; time from the injected clock."""

    def __init__(self, clock: Clock, rate_per_s: float, capacity: float) -> None:
        if not rate_per_s > 0 or not capacity > 0:
            raise ConfigError("bus-load cap must allow > 0 frames per second")
        self.clock = clock
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.tokens = capacity
        self._last_ns = clock.monotonic_ns()

    @classmethod
    def for_bus_load(cls, clock: Clock, bitrate: int, max_load: float) -> TokenBucket:
        """Frames per second that use at most `max_load` (0..1) of a `bitrate` bus."""
        if not 0 < max_load <= 1:
            raise ConfigError(f"obd.max_bus_load must be in (0, 1], got {max_load}")
        rate = bitrate * max_load / BITS_PER_FRAME
        return cls(clock, rate, max(4.0, rate))

    def _refill(self) -> None:
        now = self.clock.monotonic_ns()
        self.tokens = min(self.capacity, self.tokens + (now - self._last_ns) / 1e9 * self.rate_per_s)
        self._last_ns = now

    def try_take(self, cost: float) -> bool:
        self._refill()
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait_s(self, cost: float) -> float:
        """Seconds until `cost` tokens are available."""
        self._refill()
        return max(0.0, (cost - self.tokens) / self.rate_per_s)


class PollScheduler:
    """Tracks when each PID is next due."""

    def __init__(self, specs: Iterable[PollSpec], clock: Clock) -> None:
        self.clock = clock
        self.specs = {s.pid: s for s in specs}
        now = clock.monotonic_ns()
        self._next_ns = {pid: now for pid in self.specs}

    def restrict(self, supported: set[int]) -> list[int]:
        """Stop scheduling PIDs no ECU supports; returns the dropped ones."""
        dropped = [pid for pid in self.specs if pid not in supported]
        for pid in dropped:
            del self.specs[pid]
            del self._next_ns[pid]
        return dropped

    def due(self) -> list[int]:
        now = self.clock.monotonic_ns()
        ready = [pid for pid, t in self._next_ns.items() if t <= now]
        return sorted(ready, key=lambda pid: (self.specs[pid].priority, self._next_ns[pid], pid))

    def done(self, pids: Iterable[int]) -> None:
        """Mark PIDs as polled now; a late poll does not cause a burst of catch-up polls."""
        now = self.clock.monotonic_ns()
        for pid in pids:
            if pid in self.specs:
                period = round(self.specs[pid].period_s * 1e9)
                following = self._next_ns[pid] + period
                self._next_ns[pid] = following if following > now else now + period

    def next_due_s(self) -> float:
        if not self._next_ns:
            return 1.0
        return max(0.0, (min(self._next_ns.values()) - self.clock.monotonic_ns()) / 1e9)
