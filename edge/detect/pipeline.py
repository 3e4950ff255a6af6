"""The detection stage of the agent: samples and GNSS epochs in, event transitions out.

`DetectionPipeline.step` runs once per agent tick: it feeds the `FeatureBank` (every feature
some detector declared, `cython_ext`), the ring buffers of `history_signals` and the position
features, hands each detector one `Observation`, and passes its findings through the
`EventTracker` (debounce, hysteresis, cooldown, cap, one open event per condition). The agent
puts the resulting `Update`s on the wire. Tests and `bench/detection.py` drive the same object
through `Agent.step` (see `hil/scenario.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.detect.base import Detector
from edge.detect.features import AnyRequest, FeatureBank
from edge.detect.lifecycle import EventTracker, Update
from edge.detect.persist import write_json
from edge.detect.vehicle import GeofenceStore, VehicleProfile
from edge.sources.base import Sample
from protocol.catalog import Catalog, default_catalog
from protocol.messages import Geofence, GnssFix

if TYPE_CHECKING:
    from cython_ext.ring import RingBuffer
    from edge.sources.gnss.fix import GnssFix as GnssEpoch

log = logging.getLogger("lienwatch.detect")

RING_CAPACITY = 1024  # newest samples kept per signal a detector reads (≈100 s at 10 Hz)
SAVE_INTERVAL_NS = 600 * 10**9  # detectors' baselines are written this often (and at shutdown)
OPEN_EVENTS_FILE = "open_events.json"
GEOFENCES_FILE = "geofences.json"
DETECTOR_STATE_FILE = "detector_state.json"


@dataclass
class Tick:
    """The `Observation` one detector sees on one tick (see edge.detect.base.Observation)."""

    mono_ns: int
    wall_ns: int
    samples: Sequence[Sample]
    gnss_epochs: Sequence[GnssEpoch]
    position: GnssFix | None
    vehicle: VehicleProfile
    geofences: Mapping[int, Geofence]
    vin: str | None
    _latest: Mapping[int, Sample]
    _history: Mapping[int, RingBuffer]
    _bank: FeatureBank
    _local: dt.datetime | None = field(default=None)

    def latest(self, signal_id: int) -> Sample | None:
        return self._latest.get(signal_id)

    def history(self, signal_id: int) -> RingBuffer | None:
        return self._history.get(signal_id)

    def feature(self, request: AnyRequest) -> float:
        return self._bank.value(request)

    @property
    def local_time(self) -> dt.datetime:
        if self._local is None:
            utc = dt.datetime.fromtimestamp(self.wall_ns / 1e9, dt.UTC)
            self._local = utc.astimezone(self.vehicle.zone)
        return self._local


class DetectionPipeline:
    """Features, detectors and the event lifecycle, stepped by the agent's run loop."""

    def __init__(self, detectors: Sequence[Detector], *, event_ids: Callable[[], int],
                 vehicle: VehicleProfile | None = None, state_dir: Path | None = None,
                 catalog: Catalog | None = None) -> None:
        self.detectors = list(detectors)
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            from lienwatch.errors import ConfigError

            raise ConfigError(f"detectors: names must be unique, got {names}")
        self.vehicle = vehicle or VehicleProfile()
        self.catalog = catalog or default_catalog()
        self.state_dir = state_dir
        self.bank = FeatureBank((r for d in self.detectors for r in d.features), self.catalog)
        self.geofences = GeofenceStore(state_dir / GEOFENCES_FILE if state_dir else None)
        self.tracker = EventTracker(event_ids, state_dir / OPEN_EVENTS_FILE if state_dir else None)
        for detector in self.detectors:
            self.tracker.add(detector.name, detector.policy)
        self._history: dict[int, RingBuffer] = {}
        history_signals = frozenset().union(*(d.history_signals for d in self.detectors))
        if history_signals:
            from cython_ext.ring import RingBuffer  # history only for signals a detector reads

            self._history = {sid: RingBuffer(RING_CAPACITY) for sid in history_signals}
        self.errors: dict[str, int] = {}
        self._next_save_ns: int | None = None
        self._restore_detector_state()

    def step(self, mono_ns: int, wall_ns: int, samples: Sequence[Sample], epochs: Sequence[GnssEpoch],
             latest: Mapping[int, Sample], position: GnssFix | None,
             on_error: Callable[[str, Exception], None] | None = None,
             vin: str | None = None) -> list[tuple[Detector, Update]]:
        """One tick; returns the transitions to publish, oldest detector first."""
        if not self.detectors:
            return []
        self.bank.push_samples(samples)
        if self.bank.wants_positions:
            for epoch in epochs:
                if epoch.lat is not None and epoch.lon is not None and epoch.fix.has_position:
                    self.bank.push_position(epoch.mono_ns, epoch.lat, epoch.lon)
        history = self._history
        if history:
            for sample in samples:
                ring = history.get(sample.signal_id)
                if ring is not None:
                    ring.push(sample.mono_ns, sample.value)
        tick = Tick(mono_ns, wall_ns, samples, epochs, position, self.vehicle, self.geofences.fences, vin,
                    latest, history, self.bank)
        out: list[tuple[Detector, Update]] = []
        for detector in self.detectors:
            try:
                findings = detector.observe(tick)
            except Exception as error:  # a detector bug must not stop the agent
                self.errors[detector.name] = self.errors.get(detector.name, 0) + 1
                if on_error is not None:
                    on_error(detector.name, error)
                findings = ()
            for update in self.tracker.observe(detector.name, findings, mono_ns, wall_ns):
                out.append((detector, update))
        if self._next_save_ns is None:
            self._next_save_ns = mono_ns + SAVE_INTERVAL_NS
        elif mono_ns >= self._next_save_ns:
            self._next_save_ns = mono_ns + SAVE_INTERVAL_NS
            self.save_detector_state()
        return out

    def clear_event(self, event_id: int, mono_ns: int, wall_ns: int) -> tuple[Detector, Update] | None:
        """Clear an open event by command; None if no event with that id is open."""
        update = self.tracker.clear(event_id, mono_ns, wall_ns)
        if update is None:
            return None
        detector = next(d for d in self.detectors if d.name == update.finding.detector)
        return detector, update

    def state(self) -> dict[str, dict[str, Any]]:
        """Per detector: its own state (armed, …) plus open events, counters, last fired."""
        out: dict[str, dict[str, Any]] = {}
        for detector in self.detectors:
            try:
                own = dict(detector.state())
            except Exception as error:  # status must never fail because of one detector
                own = {"state_error": f"{type(error).__name__}: {error}"[:200]}
            out[detector.name] = {"kind": detector.kind, **own, **self.tracker.state(detector.name),
                                  "errors": self.errors.get(detector.name, 0)}
        return out

    # -- detectors' baselines across restarts ----------------------------------------------------

    def save_detector_state(self) -> None:
        if self.state_dir is None:
            return
        data: dict[str, Any] = {}
        for detector in self.detectors:
            try:
                saved = detector.saved_state()
            except Exception as error:
                log.error("detector state not saved", extra={"detector": detector.name, "detail": str(error)})
                continue
            if saved is not None:
                data[detector.name] = {"kind": detector.kind, "state": saved}
        if not data:
            return
        try:
            write_json(self.state_dir / DETECTOR_STATE_FILE, data)
        except (OSError, TypeError, ValueError) as error:
            log.error("cannot save detector state", extra={"detail": str(error)})

    def _restore_detector_state(self) -> None:
        if self.state_dir is None:
            return
        path = self.state_dir / DETECTOR_STATE_FILE
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            log.error("detector state unreadable; baselines start afresh", extra={"detail": str(error)})
            return
        if not isinstance(data, dict):
            return
        for detector in self.detectors:
            entry = data.get(detector.name)
            if isinstance(entry, dict) and entry.get("kind") == detector.kind \
                    and isinstance(entry.get("state"), dict):
                try:
                    detector.restore_state(entry["state"])
                except Exception as error:  # an old or damaged baseline: start afresh
                    log.error("detector state not restored", extra={"detector": detector.name,
                                                                     "detail": str(error)})
