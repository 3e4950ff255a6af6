"""The payment-reminder buzzer: a pattern player on a digital output, and when to play.

`BuzzerPlayer.tick()` (once per agent tick) switches the output along a pattern of (on, off)
durations on the injected monotonic clock, so tests step through a pattern without sleeping.
`PaymentReminders` keeps the reminder a PaymentReminder command set (persisted in the state
directory) and plays it at each ignition OFF→ON (the driver is at the wheel, the car not moving
yet) up to and including the due date (the UTC date of the agent's wall clock). A pattern
stops at once when the car moves faster than walking pace: a buzzer must not distract a driver.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from edge.actuators.output import DigitalOutput, OutputError
from lienwatch.clock import Clock
from protocol.messages import ReminderPattern

log = logging.getLogger("lienwatch.actuators")

REMINDER_FILE = "payment_reminder.json"
# (on_ms, off_ms) steps of each pattern; short so that a driver hears it and is not harassed.
PATTERNS: dict[ReminderPattern, tuple[tuple[int, int], ...]] = {
    ReminderPattern.GENTLE: ((200, 300),) * 2,
    ReminderPattern.FIRM: ((800, 400),) * 3,
    ReminderPattern.FINAL: ((150, 150),) * 10,
}
CODE_ACCEPTED = ((1000, 0),)  # one long tone: the emergency code released the starter
CODE_REFUSED = ((100, 100),) * 3  # three pips: the code was refused


class BuzzerPlayer:
    """Plays one pattern at a time; a new pattern replaces the one playing."""

    def __init__(self, output: DigitalOutput, clock: Clock) -> None:
        self.output = output
        self.clock = clock
        self._edges: list[tuple[int, bool]] = []  # (monotonic ns, level from then on), ascending
        self._level = False
        self.played = 0
        self.faults = 0
        self._set(False)

    @property
    def playing(self) -> bool:
        return bool(self._edges) or self._level

    def play(self, steps: Sequence[tuple[int, int]]) -> None:
        """Start a pattern of (on_ms, off_ms) steps now."""
        t = self.clock.monotonic_ns()
        edges: list[tuple[int, bool]] = []
        for on_ms, off_ms in steps:
            edges.append((t, True))
            t += on_ms * 1_000_000
            edges.append((t, False))
            t += off_ms * 1_000_000
        self._edges = edges
        self.played += 1
        self.tick()

    def stop(self) -> None:
        self._edges = []
        self._set(False)

    def tick(self) -> None:
        """Apply every edge that is due (the last one due wins)."""
        now = self.clock.monotonic_ns()
        level = None
        while self._edges and self._edges[0][0] <= now:
            level = self._edges.pop(0)[1]
        if level is not None and level != self._level:
            self._set(level)

    def _set(self, level: bool) -> None:
        try:
            self.output.set(level)
            self._level = level
        except OutputError as error:
            self.faults += 1
            log.error("buzzer output failed", extra={"detail": str(error)})


class PaymentReminders:
    """The pending payment reminder: played at ignition on until its due date is over."""

    def __init__(self, player: BuzzerPlayer, clock: Clock, state_dir: Path, *,
                 walking_kmh: float = 4.0) -> None:
        self.player = player
        self.clock = clock
        self.file = state_dir / REMINDER_FILE
        self.walking_kmh = walking_kmh
        self.due_date: str | None = None
        self.pattern = ReminderPattern.GENTLE
        self._ignition: bool | None = None
        self.plays = 0
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            dt.date.fromisoformat(data["due_date"])
            self.due_date, self.pattern = data["due_date"], ReminderPattern(data["pattern"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.error("payment reminder unreadable; none pending", extra={"detail": str(error)})
            os.replace(self.file, self.file.with_suffix(".rejected"))

    def set(self, due_date: str, pattern: ReminderPattern) -> str:
        """Keep a reminder (replacing the previous one); the ack's detail."""
        self.due_date, self.pattern = due_date, pattern
        tmp = self.file.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"due_date": due_date, "pattern": int(pattern)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.file)
        if self._over():
            return f"due date {due_date} is already over: nothing will sound"
        return f"reminder due {due_date} ({pattern.name}) sounds at each ignition on until then"

    def _over(self) -> bool:
        if self.due_date is None:
            return True
        today = dt.datetime.fromtimestamp(self.clock.wall_ns() // 10**9, dt.UTC).date()
        return today > dt.date.fromisoformat(self.due_date)

    def update(self, ignition_on: bool | None, speed_kmh: float | None) -> bool:
        """Follow the ignition; True when a reminder started playing now."""
        started = False
        if ignition_on and self._ignition is False and not self._over():
            self.player.play(PATTERNS[self.pattern])
            self.plays += 1
            started = True
        if ignition_on is not None:
            self._ignition = ignition_on
        if speed_kmh is not None and speed_kmh >= self.walking_kmh and self.player.playing:
            self.player.stop()
        self.player.tick()
        return started
