"""When to ask for which PID: per-PID periods and priorities under a bus-load cap, coalesced.

Each PID has a period and a priority (0 is the most important). `due()` lists the PIDs whose
time has come, most important first, then most overdue first. The source spends tokens from a
`TokenBucket` (frames per second derived from the bitrate and the allowed bus share) for each
request it sends; when the bucket is empty the rest of the due PIDs wait for the next round. So
under the cap low-priority PIDs are delayed, high-priority ones keep their rate, and the poller
never takes more than its share of a car's bus.

Phase. Each PID keeps a grid: polling it moves its due time on by one period from the previous due
time (not from "now"), so jitter in poll latency never shifts it, and PIDs that were polled
together stay together. Only a PID more than a whole period late (a stall: bus busy, ECU
timeouts) is re-phased to now + period, so a stall costs one poll, never a burst of catch-up polls.

Coalescing (`coalesce`). A PID whose due time is at most `coalesce` x its period away (the
horizon: by default half the period, so a 1 Hz PID up to 0.5 s early, a 10 Hz one 50 ms early) is
a *rider*: it may be polled early, but only in a free place of a request that is sent anyway for
due PIDs. The requests are planned for the due PIDs followed by the riders (each group most
important first); requests that would carry riders alone are not sent, and if adding riders would
make more requests carry due PIDs (another planning of the ECUs' mix) the riders stay home. So
riders never cost a request, never take a due PID's place, and never wake the poll loop.

The rate rule. An early poll also moves the grid on by one period, so with period P and horizon
H = coalesce x P the n-th poll of a PID after its phase origin g (its first poll, or its last
re-phase) is never before g + n·P - H: over any stretch of time T it is polled at most
T/P + 2 times, on average exactly once per period when nothing is late, and two polls of it
are at least P - H apart unless the first of them was late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

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


class Request(Protocol):
    """What `PollScheduler.coalesce` needs of a planned request: the PIDs it carries."""

    @property
    def pids(self) -> tuple[int, ...]: ...


RequestT = TypeVar("RequestT", bound=Request)


class PollScheduler:
    """Tracks when each PID is next due, on a per-PID grid; see the module docstring for the rules.

    `coalesce` (0 <= coalesce < 1) is the horizon as a share of each PID's period; 0 turns riding
    along off.
    """

    def __init__(self, specs: Iterable[PollSpec], clock: Clock, coalesce: float = 0.5) -> None:
        if not 0 <= coalesce < 1:
            raise ConfigError(f"obd: coalesce must be in [0, 1), got {coalesce}")
        self.clock = clock
        self.specs = {s.pid: s for s in specs}
        self._period_ns = {pid: round(s.period_s * 1e9) for pid, s in self.specs.items()}
        self._horizon_ns = {pid: round(s.period_s * coalesce * 1e9) for pid, s in self.specs.items()}
        now = clock.monotonic_ns()
        self._next_ns = {pid: now for pid in self.specs}

    def restrict(self, supported: set[int]) -> list[int]:
        """Stop scheduling PIDs no ECU supports; returns the dropped ones."""
        dropped = [pid for pid in self.specs if pid not in supported]
        for pid in dropped:
            del self.specs[pid]
            del self._next_ns[pid]
            del self._period_ns[pid]
            del self._horizon_ns[pid]
        return dropped

    def _ordered(self, pids: list[int]) -> list[int]:
        return sorted(pids, key=lambda pid: (self.specs[pid].priority, self._next_ns[pid], pid))

    def due(self) -> list[int]:
        """The PIDs whose time has come, most important first, then most overdue first."""
        now = self.clock.monotonic_ns()
        return self._ordered([pid for pid, t in self._next_ns.items() if t <= now])

    def riders(self) -> list[int]:
        """The PIDs not due yet but within their horizon, most important first, then soonest first."""
        now = self.clock.monotonic_ns()
        return self._ordered(
            [pid for pid, t in self._next_ns.items() if now < t <= now + self._horizon_ns[pid]]
        )

    def coalesce(
        self, due: Sequence[int], plan: Callable[[Sequence[int]], Sequence[RequestT]]
    ) -> list[RequestT]:
        """The requests to send for `due`, with riders in their free places.

        `plan` turns PIDs (in order of importance) into requests, as `ObdClient.plan` does. The
        result carries every due PID that `plan(due)` carries, in no more requests than it; riders
        only fill places in those requests (see the module docstring).
        """
        alone = list(plan(due))
        riders = self.riders() if due else []
        if not riders:
            return alone
        wanted = set(due)
        together = [r for r in plan([*due, *riders]) if wanted.intersection(r.pids)]
        carried = {p for r in together for p in r.pids if p in wanted}
        if len(together) > len(alone) or carried != {p for r in alone for p in r.pids if p in wanted}:
            return alone
        return together

    def done(self, pids: Iterable[int]) -> None:
        """Mark PIDs as polled now (due or riding early): each moves on one period on its grid.

        A PID polled more than a period late is re-phased to now + period instead, so a stall
        does not cause a burst of catch-up polls.
        """
        now = self.clock.monotonic_ns()
        for pid in pids:
            if pid in self.specs:
                following = self._next_ns[pid] + self._period_ns[pid]
                self._next_ns[pid] = following if following > now else now + self._period_ns[pid]

    def next_due_s(self) -> float:
        """Seconds until the next PID is due (riders never wake the poll loop); 1.0 with no PIDs."""
        if not self._next_ns:
            return 1.0
        return max(0.0, (min(self._next_ns.values()) - self.clock.monotonic_ns()) / 1e9)
