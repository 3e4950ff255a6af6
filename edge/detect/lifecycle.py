"""Event lifecycle: findings (a condition holds now) in, raised / escalated / cleared transitions out.

A detector reports, on every tick while a condition holds, a `Finding` for it (its severity and
evidence now); a tick without one means the condition is absent. `EventTracker` turns that into
events, per detector `Policy`:

- **debounce**: a condition must hold `debounce_s` without a gap before it is raised;
- **one open event per condition**: while open, findings only refresh the evidence; a higher
  severity escalates the same event id (new evidence), a lower one changes nothing;
- **hysteresis**: an open event is cleared only after the condition has been absent for
  `clear_s` (a `latched` policy never clears by itself: a crash stays open until a command);
- **cooldown**: after a clear, the same condition is not raised again for `cooldown_s`;
- **per-hour cap**: at most `max_events_per_hour` raised + escalated transitions per detector in
  any hour (power and data budget); an EMERGENCY is never held back, a clear always goes.
What is held back is counted in `suppressed`, never silently lost.

Open events are written to the state directory on every transition, so after a restart the same
event id continues (and clears if the condition is gone), instead of staying open for ever.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.detect.base import Finding
from edge.detect.persist import write_json
from edge.detect.policy import Policy
from protocol.messages import Severity, Transition

log = logging.getLogger("lienwatch.detect")
_NS = 1_000_000_000
HOUR_NS = 3600 * _NS


@dataclass(frozen=True, slots=True)
class Update:
    """One transition to publish: the finding (severity, evidence, time) under an event id."""

    transition: Transition
    event_id: int
    raised_ns: int
    finding: Finding


@dataclass
class OpenEvent:
    event_id: int
    raised_ns: int
    severity: Severity
    last: Finding
    last_seen_mono_ns: int


@dataclass
class _Condition:
    """What the tracker knows of one (detector, condition)."""

    pending_since_ns: int | None = None  # holding, not yet raised (debounce)
    open: OpenEvent | None = None
    cooldown_until_ns: int = 0


@dataclass
class DetectorRecord:
    """Per detector: policy, conditions, recent transitions (the cap) and counters for status."""

    policy: Policy
    conditions: dict[str, _Condition] = field(default_factory=dict)
    recent_ns: collections.deque[int] = field(default_factory=collections.deque)
    raised: int = 0
    escalated: int = 0
    cleared: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    last_fired_ns: int | None = None
    started_ns: int | None = None  # first tick of this run (for events restored from the last one)


class EventTracker:
    """Lifecycle state of every detector's conditions; `observe` once per detector per tick."""

    def __init__(self, event_ids: Callable[[], int], state_file: Path | None = None) -> None:
        self._event_ids = event_ids
        self._records: dict[str, DetectorRecord] = {}
        self._state_file = state_file
        self._restored: dict[tuple[str, str], dict[str, Any]] = self._load()

    def add(self, detector: str, policy: Policy) -> None:
        self._records[detector] = DetectorRecord(policy)

    def observe(self, detector: str, findings: Iterable[Finding], mono_ns: int, wall_ns: int) -> list[Update]:
        """The transitions of one detector's findings this tick (each finding: a condition holds)."""
        record = self._records[detector]
        policy = record.policy
        updates: list[Update] = []
        holding: dict[str, Finding] = {}
        for finding in findings:
            known = holding.get(finding.condition)
            if known is None or finding.severity > known.severity:
                holding[finding.condition] = finding
        for key, finding in holding.items():
            condition = record.conditions.setdefault(key, _Condition())
            self._adopt(detector, key, condition, finding, mono_ns)
            event = condition.open
            if event is not None:
                event.last, event.last_seen_mono_ns = finding, mono_ns
                if finding.severity > event.severity and self._allowed(record, finding, mono_ns, "capped"):
                    event.severity = finding.severity
                    record.escalated += 1
                    updates.append(Update(Transition.ESCALATED, event.event_id, event.raised_ns, finding))
                continue
            if mono_ns < condition.cooldown_until_ns:
                record.suppressed["cooldown"] = record.suppressed.get("cooldown", 0) + 1
                continue
            if condition.pending_since_ns is None:
                condition.pending_since_ns = mono_ns
            if mono_ns - condition.pending_since_ns < policy.debounce_s * _NS:
                continue
            if not self._allowed(record, finding, mono_ns, "capped"):
                continue
            condition.pending_since_ns = None
            condition.open = OpenEvent(self._event_ids(), finding.time_ns, finding.severity, finding, mono_ns)
            record.raised += 1
            updates.append(Update(Transition.RAISED, condition.open.event_id, finding.time_ns, finding))
        for key, condition in record.conditions.items():
            if key in holding:
                continue
            condition.pending_since_ns = None  # a gap restarts the debounce
            event = condition.open
            if event is None or policy.latched:
                continue
            if mono_ns - event.last_seen_mono_ns >= policy.clear_s * _NS:
                updates.append(self._close(record, condition, mono_ns, wall_ns, "condition gone"))
        if record.started_ns is None:
            record.started_ns = mono_ns
        if self._restored and mono_ns - record.started_ns >= policy.clear_s * _NS and not policy.latched:
            updates.extend(self._leftovers(detector, wall_ns))
        fired = [u.finding.time_ns for u in updates if u.transition is not Transition.CLEARED]
        if fired:
            record.last_fired_ns = max(fired)
        if updates:
            self._save()
        return updates

    def clear(self, event_id: int, mono_ns: int, wall_ns: int,
              reason: str = "cleared by command") -> Update | None:
        """Clear an open event by id (an operator's command); None if no such event is open."""
        for record in self._records.values():
            for condition in record.conditions.values():
                if condition.open is not None and condition.open.event_id == event_id:
                    update = self._close(record, condition, mono_ns, wall_ns, reason)
                    self._save()
                    return update
        return None

    def _close(self, record: DetectorRecord, condition: _Condition, mono_ns: int, wall_ns: int,
               reason: str) -> Update:
        event = condition.open
        assert event is not None
        condition.open = None
        condition.cooldown_until_ns = mono_ns + int(record.policy.cooldown_s * _NS)
        record.cleared += 1
        finding = replace(event.last, time_ns=max(wall_ns, event.last.time_ns), severity=event.severity,
                          detail=f"{reason}: {event.last.detail}"[:256])
        return Update(Transition.CLEARED, event.event_id, event.raised_ns, finding)

    def _allowed(self, record: DetectorRecord, finding: Finding, mono_ns: int, why: str) -> bool:
        recent = record.recent_ns
        while recent and mono_ns - recent[0] >= HOUR_NS:
            recent.popleft()
        if len(recent) >= record.policy.max_events_per_hour and finding.severity < Severity.EMERGENCY:
            record.suppressed[why] = record.suppressed.get(why, 0) + 1
            return False
        recent.append(mono_ns)
        return True

    # -- what `lienwatch edge status` shows ------------------------------------------------------

    def state(self, detector: str) -> dict[str, Any]:
        record = self._records[detector]
        return {
            "open_events": [{"event_id": c.open.event_id, "condition": key, "severity": c.open.severity.name,
                             "raised_ns": c.open.raised_ns}
                            for key, c in record.conditions.items() if c.open],
            "pending": sorted(k for k, c in record.conditions.items() if c.pending_since_ns is not None),
            "raised": record.raised, "escalated": record.escalated, "cleared": record.cleared,
            "suppressed": dict(record.suppressed), "last_fired_ns": record.last_fired_ns,
        }

    def open_events(self) -> list[tuple[str, str, OpenEvent]]:
        return [(name, key, c.open) for name, r in self._records.items() for key, c in r.conditions.items()
                if c.open is not None]

    # -- persistence of open events (rare writes: one per transition) -----------------------------

    def _adopt(self, detector: str, key: str, condition: _Condition, finding: Finding, mono_ns: int) -> None:
        """An event left open by the previous run continues under its id when its condition holds."""
        saved = self._restored.pop((detector, key), None)
        if saved is None or condition.open is not None:
            return
        condition.open = OpenEvent(int(saved["event_id"]), int(saved["raised_ns"]),
                                   Severity(int(saved["severity"])), finding, mono_ns)

    def _leftovers(self, detector: str, wall_ns: int) -> list[Update]:
        """Events the previous run left open whose condition did not come back within `clear_s`
        of this run: cleared now."""
        updates = []
        for (name, key), saved in list(self._restored.items()):
            if name != detector:
                continue
            finding = Finding(detector, Severity(int(saved["severity"])), wall_ns, {},
                              "not seen again after the agent restarted", condition=key)
            updates.append(Update(Transition.CLEARED, int(saved["event_id"]), int(saved["raised_ns"]),
                                  finding))
            del self._restored[(name, key)]
        return updates

    def _load(self) -> dict[tuple[str, str], dict[str, Any]]:
        if self._state_file is None or not self._state_file.exists():
            return {}
        try:
            data = json.loads(self._state_file.read_text())
            entries = data["open"]
            if not isinstance(entries, list):
                raise TypeError("'open' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.error("open events unreadable; starting without them", extra={"detail": str(error)})
            return {}
        restored: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in entries:
            try:  # every field checked here, so a damaged entry can never fail a tick later
                clean: dict[str, Any] = {
                    "detector": str(entry["detector"]), "condition": str(entry["condition"]),
                    "event_id": int(entry["event_id"]), "raised_ns": int(entry["raised_ns"]),
                    "severity": int(Severity(int(entry["severity"])))}
            except (KeyError, TypeError, ValueError) as error:
                log.error("an open event entry is damaged; dropped", extra={"detail": str(error)})
                continue
            restored[(clean["detector"], clean["condition"])] = clean
        return restored

    def _save(self) -> None:
        if self._state_file is None:
            return
        entries = [{"detector": name, "condition": key, "event_id": e.event_id, "raised_ns": e.raised_ns,
                    "severity": int(e.severity)} for name, key, e in self.open_events()]
        entries += [dict(v) for v in self._restored.values()]
        try:
            write_json(self._state_file, {"open": entries})
        except OSError as error:
            log.error("cannot save open events", extra={"detail": str(error)})
