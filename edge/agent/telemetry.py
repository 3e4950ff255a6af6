"""Telemetry batching: decimate samples per signal, close a batch by time or size.

Sources may run at 10 Hz (GNSS) or 2,000 frames/s (passive CAN); the ring buffers and detectors
see every sample, but the uplink needs far fewer. Per signal at most one sample per
`sample_period_s` (the first one of each period) goes into the current batch; a batch is closed
after `batch_interval_s` or when its estimated encoded size reaches `batch_max_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.sources.base import Sample
from lienwatch.clock import Clock
from protocol.messages import FixColumns, GnssFix, SampleColumns

# Upper estimates of encoded sizes in a columnar batch (delta-coded columns).
EST_BYTES_PER_SAMPLE = 7
EST_BYTES_PER_FIX = 24


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    batch_interval_s: float = 30.0
    batch_max_bytes: int = 8192
    sample_period_s: float = 1.0


class TelemetryBatcher:
    """Collects decimated samples; `take_due()` returns a closed batch's columns when it is due."""

    def __init__(self, settings: TelemetrySettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._times: list[int] = []
        self._ids: list[int] = []
        self._values: list[float] = []
        self._next_due_ns: dict[int, int] = {}
        self._fixes: list[GnssFix] = []
        self._next_fix_due_ns: int | None = None
        self._opened_ns = clock.monotonic_ns()
        self.seen = 0
        self.kept = 0
        self.fixes_seen = 0
        #: signal ids left out of the samples because whole fixes carry them (set by the agent)
        self.exclude: frozenset[int] = frozenset()

    def add_fix(self, fix: GnssFix, mono_ns: int) -> None:
        """Offer one GNSS fix (at most one per `sample_period_s` is kept)."""
        self.fixes_seen += 1
        if self._next_fix_due_ns is not None and mono_ns < self._next_fix_due_ns:
            return
        self._next_fix_due_ns = mono_ns + int(self.settings.sample_period_s * 1e9)
        self._fixes.append(fix)

    def add(self, sample: Sample, mono_to_wall_ns: int) -> None:
        """Offer one sample; `mono_to_wall_ns` converts its monotonic time to UTC ns."""
        self.seen += 1
        due = self._next_due_ns.get(sample.signal_id)
        if (due is not None and sample.mono_ns < due) or sample.signal_id in self.exclude:
            return
        self._next_due_ns[sample.signal_id] = sample.mono_ns + int(self.settings.sample_period_s * 1e9)
        self._times.append(sample.mono_ns + mono_to_wall_ns)
        self._ids.append(sample.signal_id)
        self._values.append(sample.value)
        self.kept += 1

    def add_many(self, samples: list[Sample], mono_to_wall_ns: int) -> None:
        """`add` for a tick's worth of samples (the run loop's hot path: no call per sample)."""
        self.seen += len(samples)
        next_due = self._next_due_ns
        period_ns = int(self.settings.sample_period_s * 1e9)
        times, ids, values = self._times, self._ids, self._values
        exclude = self.exclude
        kept = 0
        for sample in samples:
            signal_id, mono_ns = sample.signal_id, sample.mono_ns
            due = next_due.get(signal_id)
            if (due is not None and mono_ns < due) or signal_id in exclude:
                continue
            next_due[signal_id] = mono_ns + period_ns
            times.append(mono_ns + mono_to_wall_ns)
            ids.append(signal_id)
            values.append(sample.value)
            kept += 1
        self.kept += kept

    def __len__(self) -> int:
        return len(self._times) + len(self._fixes)

    def due(self) -> bool:
        if not self._times and not self._fixes:
            return False
        age_s = (self.clock.monotonic_ns() - self._opened_ns) / 1e9
        size = len(self._times) * EST_BYTES_PER_SAMPLE + len(self._fixes) * EST_BYTES_PER_FIX
        return age_s >= self.settings.batch_interval_s or size >= self.settings.batch_max_bytes

    def take(self) -> tuple[SampleColumns, FixColumns] | None:
        """Close the current batch (even if not due: shutdown) and start a new one."""
        self._opened_ns = self.clock.monotonic_ns()
        if not self._times and not self._fixes:
            return None
        columns = SampleColumns(tuple(self._times), tuple(self._ids), tuple(self._values))
        fixes = FixColumns.from_fixes(self._fixes)
        self._times, self._ids, self._values, self._fixes = [], [], [], []
        return columns, fixes

    def take_due(self) -> tuple[SampleColumns, FixColumns] | None:
        if not self.due():
            if not self._times and not self._fixes:
                self._opened_ns = self.clock.monotonic_ns()
            return None
        return self.take()
