"""The payment-reminder buzzer: pattern timing on the injected clock, when a reminder sounds."""

from __future__ import annotations

from pathlib import Path

from edge.actuators.buzzer import PATTERNS, REMINDER_FILE, BuzzerPlayer, PaymentReminders
from edge.actuators.output import SysfsOutput
from lienwatch.clock import ManualClock
from protocol.messages import ReminderPattern


class Recorder(SysfsOutput):
    """A buzzer GPIO file that also records every level written, with its time."""

    def __init__(self, path: Path, clock: ManualClock) -> None:
        path.write_text("0\n")
        super().__init__(path, "buzzer")
        self.clock = clock
        self.writes: list[tuple[int, bool]] = []

    def _write(self, level: bool) -> None:
        super()._write(level)
        self.writes.append((self.clock.monotonic_ns() // 1_000_000, level))


def _rig(tmp_path: Path) -> tuple[ManualClock, Recorder, BuzzerPlayer]:
    clock = ManualClock()
    output = Recorder(tmp_path / "buzzer", clock)
    return clock, output, BuzzerPlayer(output, clock)


def _run(clock: ManualClock, player: BuzzerPlayer, ms: int, step_ms: int = 10) -> None:
    for _ in range(ms // step_ms):
        clock.advance(step_ms / 1000)
        player.tick()


def test_pattern_switches_the_output_at_its_edges(tmp_path: Path) -> None:
    clock, output, player = _rig(tmp_path)
    output.writes.clear()
    player.play(PATTERNS[ReminderPattern.FIRM])  # 3 x (800 ms on, 400 ms off)
    _run(clock, player, 4000)
    assert output.writes == [(0, True), (800, False), (1200, True), (2000, False), (2400, True),
                             (3200, False)]
    assert not player.playing and (tmp_path / "buzzer").read_text() == "0\n"


def test_a_coarse_tick_never_leaves_the_buzzer_on(tmp_path: Path) -> None:
    clock, output, player = _rig(tmp_path)
    player.play(PATTERNS[ReminderPattern.FINAL])
    clock.advance(60)  # the agent was busy: every edge is due at once, the last (off) wins
    player.tick()
    assert not output.get() and not player.playing


def test_reminder_sounds_at_ignition_on_until_the_due_date(tmp_path: Path) -> None:
    clock, output, player = _rig(tmp_path)  # 2026-01-01 00:00 UTC
    reminders = PaymentReminders(player, clock, tmp_path)
    assert "sounds at each ignition on" in reminders.set("2026-01-02", ReminderPattern.GENTLE)
    assert not reminders.update(True, 0.0)  # already on when the reminder arrived: no edge seen
    assert not reminders.update(False, 0.0)
    assert reminders.update(True, 0.0) and output.get()
    _run(clock, player, 2000)
    assert not output.get()
    clock.advance(86400)  # 2026-01-02: still due
    reminders.update(False, 0.0)
    assert reminders.update(True, 0.0)
    clock.advance(86400)  # 2026-01-03: over
    reminders.update(False, 0.0)
    assert not reminders.update(True, 0.0) and reminders.plays == 2


def test_reminder_stops_when_the_car_moves(tmp_path: Path) -> None:
    clock, output, player = _rig(tmp_path)
    reminders = PaymentReminders(player, clock, tmp_path)
    reminders.set("2026-01-05", ReminderPattern.FINAL)
    reminders.update(False, 0.0)
    reminders.update(True, 0.0)
    assert output.get()
    clock.advance(0.1)
    reminders.update(True, 12.0)
    assert not output.get() and not player.playing


def test_reminder_survives_a_restart_and_a_damaged_file_is_set_aside(tmp_path: Path) -> None:
    clock, _, player = _rig(tmp_path)
    PaymentReminders(player, clock, tmp_path).set("2026-01-05", ReminderPattern.FIRM)
    again = PaymentReminders(player, clock, tmp_path)
    assert (again.due_date, again.pattern) == ("2026-01-05", ReminderPattern.FIRM)
    (tmp_path / REMINDER_FILE).write_text('{"due_date": "tomorrow", "pattern": 2}')
    damaged = PaymentReminders(player, clock, tmp_path)
    assert damaged.due_date is None and (tmp_path / "payment_reminder.rejected").exists()


def test_a_past_due_date_is_kept_but_says_nothing_will_sound(tmp_path: Path) -> None:
    clock, _, player = _rig(tmp_path)
    reminders = PaymentReminders(player, clock, tmp_path)
    assert "already over" in reminders.set("2025-12-30", ReminderPattern.GENTLE)
    reminders.update(False, 0.0)
    assert not reminders.update(True, 0.0)
