"""The detector contract: `Observation` in, `Finding`s out.

Once per agent tick the run loop hands every detector one `Observation` — the samples that
arrived since the previous tick plus read access to the latest value of each signal — and the
detector returns what it found. A detector holds bounded state, never opens a socket or a file,
never sleeps, and never reads a clock other than the observation's times. The agent turns each
`Finding` into a protocol `Event` (header, event id, position) and queues it by severity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from edge.sources.base import Sample
from protocol.messages import GnssFix, Severity

if TYPE_CHECKING:
    from cython_ext.ring import RingBuffer


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly: which detector, how bad, when (UTC ns), its evidence and one line of words."""

    detector: str
    severity: Severity
    time_ns: int
    features: Mapping[str, float] = field(default_factory=dict)
    detail: str = ""
    position: GnssFix | None = None


class Observation(Protocol):
    """What a detector sees on one tick (read-only; valid only during `observe`)."""

    @property
    def mono_ns(self) -> int:
        """Monotonic time of this tick (the injected clock)."""

    @property
    def wall_ns(self) -> int:
        """UTC time of this tick, ns since the epoch (stamp findings with it)."""

    @property
    def samples(self) -> Sequence[Sample]:
        """Every sample that arrived since the previous tick, in arrival order."""

    def latest(self, signal_id: int) -> Sample | None:
        """The newest sample of a signal, or None if it was never seen."""

    def history(self, signal_id: int) -> RingBuffer | None:
        """The newest samples of a signal listed in some detector's `history_signals` (monotonic
        ns, catalog units), or None for a signal no detector asked a history for."""


class Detector(ABC):
    """One detector instance, built from a `[[detectors]]` table by its registered spec.

    `observe` returns the findings of this tick (usually none). It must be cheap: it runs on the
    agent's one thread at `agent.tick_s`.
    """

    kind: str = "detector"
    #: catalog ids of the signals whose recent history (a ring buffer) this detector reads;
    #: the agent keeps ring buffers only for signals some detector lists here.
    history_signals: frozenset[int] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def observe(self, observation: Observation) -> Sequence[Finding]:
        """Update state with this tick's observation; return what was found."""

    def state(self) -> Mapping[str, object]:
        """A small plain-data view of the detector's state for `lienwatch edge status`."""
        return {}
