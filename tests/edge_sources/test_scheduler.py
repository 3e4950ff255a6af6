"""The OBD polling scheduler and bus-load cap, on a ManualClock."""

from __future__ import annotations

import pytest

from edge.sources.obd.scheduler import BITS_PER_FRAME, PollScheduler, PollSpec, TokenBucket
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError


def test_each_pid_is_due_at_its_own_rate() -> None:
    clock = ManualClock()
    scheduler = PollScheduler([PollSpec(0x0C, 1.0, 0), PollSpec(0x05, 10.0, 2)], clock)
    polls: dict[int, int] = {0x0C: 0, 0x05: 0}
    for _ in range(200):  # 20 s in 0.1 s steps
        due = scheduler.due()
        for pid in due:
            polls[pid] += 1
        scheduler.done(due)
        clock.advance(0.1)
    assert polls == {0x0C: 20, 0x05: 2}


def test_due_pids_come_most_important_first() -> None:
    clock = ManualClock()
    scheduler = PollScheduler([PollSpec(0x2F, 1.0, 4), PollSpec(0x0D, 1.0, 0), PollSpec(0x42, 1.0, 1)], clock)
    assert scheduler.due() == [0x0D, 0x42, 0x2F]


def test_a_late_poll_does_not_cause_a_burst_of_catch_up_polls() -> None:
    clock = ManualClock()
    scheduler = PollScheduler([PollSpec(0x0C, 1.0)], clock)
    scheduler.done(scheduler.due())
    clock.advance(5.5)  # the bus was busy for 5 s
    assert scheduler.due() == [0x0C]
    scheduler.done([0x0C])
    assert scheduler.due() == []
    assert scheduler.next_due_s() == pytest.approx(1.0)


def test_bus_load_cap_limits_frames_per_second_and_keeps_high_priority_rates() -> None:
    clock = ManualClock()
    # 500 kbit/s at 1 % = 37 frames/s: not enough for 40 PIDs at 1 Hz with 2 frames each
    bucket = TokenBucket.for_bus_load(clock, 500_000, 0.01)
    assert bucket.rate_per_s == pytest.approx(500_000 * 0.01 / BITS_PER_FRAME)
    specs = [PollSpec(0x0C, 1.0, 0)] + [PollSpec(pid, 1.0, 5) for pid in range(0x60, 0x60 + 39)]
    scheduler = PollScheduler(specs, clock)
    polled: dict[int, int] = {}
    frames = 0
    for _ in range(600):  # 60 s
        sent = []
        for pid in scheduler.due():
            if not bucket.try_take(2):
                break
            frames += 2
            sent.append(pid)
        for pid in sent:
            polled[pid] = polled.get(pid, 0) + 1
        scheduler.done(sent)
        clock.advance(0.1)
    assert frames <= bucket.rate_per_s * 60 + bucket.capacity
    assert polled[0x0C] == 60  # the high-priority PID keeps its 1 Hz under the cap
    assert sum(polled.values()) < 40 * 60  # the rest is throttled


def test_invalid_plans_and_caps_are_refused() -> None:
    with pytest.raises(ConfigError):
        PollSpec(0x0C, 0.0)
    with pytest.raises(ConfigError):
        PollSpec(0x100, 1.0)
    with pytest.raises(ConfigError):
        TokenBucket.for_bus_load(ManualClock(), 500_000, 0.0)
