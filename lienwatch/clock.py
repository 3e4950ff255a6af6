"""Injectable time: every component that reads a clock takes a `Clock`.

`SystemClock` is the real one. `ManualClock` is moved by hand, so tests never sleep and the HIL
bench can run a 90-day park in seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for intervals, wall time (UTC, ns since the epoch) for timestamps."""

    def monotonic_ns(self) -> int: ...

    def wall_ns(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The operating system's clocks."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to; `sleep` advances it instead of waiting.

    Thread-safe, so a simulated vehicle and the agent under test can share one.
    """

    def __init__(self, wall_ns: int = 1_767_225_600_000_000_000, monotonic_ns: int = 0) -> None:
        # Default wall time: 2026-01-01T00:00:00Z.
        self._lock = threading.Lock()
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns

    def monotonic_ns(self) -> int:
        with self._lock:
            return self._monotonic_ns

    def wall_ns(self) -> int:
        with self._lock:
            return self._wall_ns

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds` (must be >= 0)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds}))")
        step = round(seconds * 1e9)
        with self._lock:
            self._wall_ns += step
            self._monotonic_ns += step

    def set_wall_ns(self, wall_ns: int) -> None:
        """Step the wall clock (as GNSS discipline or NTP would); monotonic time is unaffected."""
        with self._lock:
            self._wall_ns = wall_ns

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)
