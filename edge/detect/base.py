"""The detector contract: `Observation` in, `Finding`s out.

Once per agent tick the run loop hands every detector one `Observation` — the samples and GNSS
epochs that arrived since the previous tick, the latest value of each signal, the values of the
features the detector declared (`Detector.features`, computed by `cython_ext`), the vehicle
profile and the local time — and the detector returns the conditions that hold *now*, one
`Finding` each. A detector holds bounded state, never opens a socket or a file, never sleeps,
and never reads a clock other than the observation's times. `edge.detect.lifecycle` turns the
findings into raised / escalated / cleared events (debounce, hysteresis, cooldown, cap; see
docs/detection.md); the agent puts each on the wire as a protocol `Event` and queues it by
severity.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edge.detect.features import AnyRequest
from edge.detect.policy import Policy
from edge.sources.base import Sample
from protocol.messages import Geofence, GnssFix, Severity

if TYPE_CHECKING:
    from cython_ext.ring import RingBuffer
    from edge.detect.vehicle import VehicleProfile
    from edge.sources.gnss.fix import GnssFix as GnssEpoch


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds now: which detector, how bad, when (UTC ns), its evidence (feature
    values), one line of words, the position, and which `condition` of the detector ("" when it
    has one) — each condition has at most one open event."""

    detector: str
    severity: Severity
    time_ns: int
    features: Mapping[str, float] = field(default_factory=dict)
    detail: str = ""
    position: GnssFix | None = None
    condition: str = ""


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

    def feature(self, request: AnyRequest) -> float:
        """The current value of a feature this detector declared in `features` (NaN while its
        window is empty)."""

    @property
    def gnss_epochs(self) -> Sequence[GnssEpoch]:
        """The GNSS receiver's epochs since the previous tick (with or without a fix; per
        constellation C/N0), oldest first."""

    @property
    def position(self) -> GnssFix | None:
        """The last known position (wire form, UTC time), or None."""

    @property
    def local_time(self) -> dt.datetime:
        """This tick's wall time in the vehicle's time zone (`[vehicle] time_zone`)."""

    @property
    def vehicle(self) -> VehicleProfile:
        """The `[vehicle]` table: VIN, time zone, contract region, places."""

    @property
    def geofences(self) -> Mapping[int, Geofence]:
        """Circular geofences set by signed SetGeofence commands, by id."""

    @property
    def vin(self) -> str | None:
        """The VIN the vehicle reports (OBD mode 09), None until a source has read one."""


class Detector(ABC):
    """One detector instance, built from a `[[detectors]]` table by its registered spec.

    `observe` returns the conditions holding at this tick (usually none), one `Finding` each,
    on every tick while they hold. It must be cheap: it runs on the agent's one thread at
    `agent.tick_s`.
    """

    kind: str = "detector"
    #: catalog ids of the signals whose recent history (a ring buffer) this detector reads;
    #: the agent keeps ring buffers only for signals some detector lists here.
    history_signals: frozenset[int] = frozenset()
    #: the features this detector reads through `Observation.feature` (set in `__init__` when
    #: they depend on options); the agent computes each once, whoever asks.
    features: tuple[AnyRequest, ...] = ()

    def __init__(self, name: str, policy: Policy | None = None) -> None:
        self.name = name
        self.policy = policy or Policy()

    @abstractmethod
    def observe(self, observation: Observation) -> Sequence[Finding]:
        """Update state with this tick's observation; return the conditions that hold now."""

    def state(self) -> Mapping[str, object]:
        """A small plain-data view of the detector's state for `lienwatch edge status`
        (e.g. {"armed": True}); the agent adds open events and when it last fired."""
        return {}

    def saved_state(self) -> Mapping[str, Any] | None:
        """JSON-able state to keep across restarts (baselines), or None; the agent writes it to
        the state directory every few minutes and at shutdown."""
        return None

    def restore_state(self, data: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take back what `saved_state` returned in an earlier run (may be from an older version:
        ignore what does not fit)."""
