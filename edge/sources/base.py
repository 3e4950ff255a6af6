"""The source contract: `Sample`, `Source`, `SourceHealth`, reconnect backoff and `SourceRunner`.

A source turns one kind of vehicle input (a CAN bus, a GNSS receiver, sysfs files) into
`Sample`s. The agent never talks to a source directly: a `SourceRunner` owns it, calls `open`,
then `poll` again and again, and on any exception records it in the health, closes the source and
reopens it after an exponential backoff. So a failing source degrades its own health and never
stops the agent.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from lienwatch.clock import Clock
from lienwatch.errors import LienwatchError
from protocol.catalog import Catalog, Signal, default_catalog


class SourceError(LienwatchError):
    """A source cannot open or read its device; the runner retries it with backoff."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading: monotonic time (ns, of the injected clock), catalog signal id, value.

    Booleans are 0.0/1.0 and enums their catalog integer; the value is in the catalog unit.
    """

    mono_ns: int
    signal_id: int
    value: float

    def signal(self, catalog: Catalog | None = None) -> Signal:
        """The catalog entry (VSS path, unit) of this sample's signal."""
        return (catalog or default_catalog()).by_id(self.signal_id)

    @property
    def path(self) -> str:
        """The COVESA VSS path of this sample's signal (from the default catalog)."""
        return default_catalog().by_id(self.signal_id).path


SampleSink = Callable[[Sample], None]
"""Where a source delivers samples. It must be cheap and thread-safe (e.g. append to a bounded queue)."""


class HealthState(enum.StrEnum):
    """ok: producing data; degraded: open but not producing all it should; failed: not open."""

    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


@dataclass(slots=True)
class SourceHealth:
    """A source's state and counters; mutated only by the source's own thread.

    `frames` counts input units read (CAN frames, NMEA lines, sysfs reads), `errors` inputs
    rejected or failed reads, `timeouts` requests without an answer, `reconnects` reopenings.
    `detail` says in words why the state is not ok.
    """

    state: HealthState = HealthState.FAILED
    detail: str = "not started"
    frames: int = 0
    samples: int = 0
    errors: int = 0
    timeouts: int = 0
    reconnects: int = 0
    last_error: str = ""
    last_sample_mono_ns: int | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        """Bump a source-specific counter (e.g. `checksum_errors`, `nrc_0x12`)."""
        self.counters[name] = self.counters.get(name, 0) + n

    def set(self, state: HealthState, detail: str = "") -> None:
        self.state = state
        self.detail = detail

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def snapshot(self) -> SourceHealth:
        """A copy that another thread may read at leisure."""
        return dataclasses.replace(self, counters=dict(self.counters))

    def as_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["state"] = str(self.state)
        return data


class Source(ABC):
    """One input of the agent. Subclasses implement `open`, `poll` and `close`.

    `poll` does a bounded amount of work (never blocks longer than about its returned delay),
    hands samples to `sink` and returns the seconds until it wants to be polled again. It may raise
    any exception: the runner counts it, closes the source and reopens it with backoff.
    """

    #: registry name of the kind of source (`obd`, `dbc`, `gnss`, `power`, `motion`)
    kind: str = "source"

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.health = SourceHealth()

    @abstractmethod
    def open(self) -> None:
        """Acquire the device; raise `SourceError` (or any OSError) if it is not there."""

    @abstractmethod
    def poll(self, sink: SampleSink) -> float:
        """Read what is available, deliver samples, return seconds until the next poll."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; must not raise and must be safe to call twice."""

    def emit(self, sink: SampleSink, signal_id: int, value: float, mono_ns: int | None = None) -> None:
        """Deliver one sample and count it."""
        t = self.clock.monotonic_ns() if mono_ns is None else mono_ns
        sink(Sample(t, signal_id, float(value)))
        self.health.samples += 1
        self.health.last_sample_mono_ns = t


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential reconnect delays: initial_s, ×factor per failure, capped at max_s, ± jitter."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.1

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Delay after `failures` consecutive failures (failures >= 1)."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))
        if self.jitter <= 0:
            return base
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


class SourceRunner:
    """Keeps one source alive: open, poll, and on failure close + backoff + reopen.

    `step()` does one iteration and returns the seconds to wait before the next; tests drive it
    with a `ManualClock`. `start()` runs the same loop in a daemon thread until `stop()`.
    No exception escapes: a misbehaving source only shows up in its health.
    """

    def __init__(
        self,
        source: Source,
        sink: SampleSink,
        *,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._open = False
        self._failures = 0
        self._retry_at_ns: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    def health(self) -> SourceHealth:
        return self.source.health.snapshot()

    def step(self) -> float:
        """One iteration: (re)open if due, else poll. Returns seconds until the next step."""
        clock, health = self.source.clock, self.source.health
        if not self._open:
            now = clock.monotonic_ns()
            if self._retry_at_ns is not None and now < self._retry_at_ns:
                return (self._retry_at_ns - now) / 1e9
            try:
                self.source.open()
            except Exception as error:  # any failure to open is retried, never raised
                return self._failed(f"open failed: {_describe(error)}")
            if self._failures > 0 or self._retry_at_ns is not None:
                health.reconnects += 1
            self._open = True
            self._retry_at_ns = None
            if health.state is HealthState.FAILED:
                health.set(HealthState.OK, "")
        try:
            delay = self.source.poll(self.sink)
        except Exception as error:
            self._close()
            return self._failed(f"poll failed: {_describe(error)}")
        self._failures = 0
        return max(0.0, float(delay))

    def _failed(self, message: str) -> float:
        health = self.source.health
        health.error(message)
        health.set(HealthState.FAILED, message)
        self._failures += 1
        delay = self.backoff.delay(self._failures, self._rng)
        self._retry_at_ns = self.source.clock.monotonic_ns() + round(delay * 1e9)
        return delay

    def _close(self) -> None:
        self._open = False
        try:
            self.source.close()
        except Exception as error:  # close must not raise; if it does, count it and go on
            self.source.health.error(f"close failed: {_describe(error)}")

    # --- threaded operation -------------------------------------------------------------------

    def start(self) -> None:
        """Run `step()` in a daemon thread; waits use real time (`SystemClock` deployments)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"source-{self.source.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self.step()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (if started) and close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._open:
            self._close()
        self.source.health.set(HealthState.FAILED, "stopped")


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
