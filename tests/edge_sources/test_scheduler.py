"""The OBD polling scheduler (grid, coalescing) and bus-load cap, on a ManualClock."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import can
import pytest

from edge.sources.obd.client import EcuState, ObdClient, PidRequest
from edge.sources.obd.scheduler import BITS_PER_FRAME, PollScheduler, PollSpec, TokenBucket
from hil.ecu import EmulatedEcu, demo_vehicle
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


# --- coalescing: PIDs due soon ride along in free places of requests sent anyway -------------------

# The edge agent benchmark's plan (bench/agent.py OBD_PLAN): (pid, period_s), all priority 5.
BENCH_PLAN = [(0x0C, 0.1), (0x0D, 0.1), (0x04, 0.2), (0x10, 0.2), (0x05, 1.0), (0x0F, 1.0), (0x2F, 1.0),
              (0x42, 1.0), (0x46, 1.0), (0x5C, 1.0)]
ENGINE_ONLY = [EmulatedEcu(index=0, values=dict(demo_vehicle()[0].values))]


def client_knowing(bus: can.BusABC, ecus: list[EmulatedEcu]) -> ObdClient:
    """A client that has discovered `ecus` (as the HIL emulator presents them): its `plan` is real."""
    client = ObdClient(bus, ManualClock())
    for ecu in ecus:
        response_id = 0x7E8 + ecu.index
        client.ecus[response_id] = EcuState(
            response_id, supported=set(ecu.supported), multi_pid_ok=not ecu.reject_multi_pid
        )
    return client


def pairs(pids: Sequence[int]) -> list[PidRequest]:
    """A planner with two PIDs per request."""
    return [PidRequest(tuple(pids[i : i + 2])) for i in range(0, len(pids), 2)]


@dataclass
class Run:
    """What `drive` saw: poll rounds (batches), requests sent, and each PID's poll times."""

    batches: int = 0
    requests: int = 0
    polls: dict[int, list[int]] = field(default_factory=dict)

    def rate_per_s(self, pid: int, seconds: float) -> float:
        return len(self.polls.get(pid, [])) / seconds


def drive(
    scheduler: PollScheduler,
    clock: ManualClock,
    plan: Callable[[Sequence[int]], Sequence[PidRequest]],
    seconds: float,
    rng: random.Random,
    *,
    latency_s: tuple[float, float] = (0.002, 0.012),
    stall: Callable[[int], float] = lambda batch: 0.0,
) -> Run:
    """Run the scheduler as `ObdSource.poll` and its runner do, for `seconds` of clock time.

    Each request takes a random round trip of `latency_s`; the loop sleeps `next_due_s()` (capped
    at 0.5 s) and oversleeps up to 1 ms; `stall(batch)` adds that many seconds before a batch.
    """
    run = Run()
    end = clock.monotonic_ns() + round(seconds * 1e9)
    while clock.monotonic_ns() < end:
        due = scheduler.due()
        if due:
            clock.advance(stall(run.batches))
            run.batches += 1
            polled: set[int] = set()
            for request in scheduler.coalesce(due, plan):
                run.requests += 1
                clock.advance(rng.uniform(*latency_s))
                for pid in request.pids:
                    run.polls.setdefault(pid, []).append(clock.monotonic_ns())
                polled.update(request.pids)
            scheduler.done(polled)
        clock.advance(min(scheduler.next_due_s(), 0.5) + rng.uniform(0.0, 0.001))
    return run


@pytest.mark.parametrize(
    ("vehicle", "plain_per_s", "coalesced_per_s"),
    [
        # One engine ECU: 10 Hz batches; the 8 PIDs due each second needed a 2nd request.
        ("engine only", 11.0, 10.0),
        # The HIL vehicle: its transmission ECU refuses multi-PID requests and answers 0x0D and
        # 0x05, which then need one request each; that floor (10/s + 1/s) stays.
        ("demo vehicle", 22.0, 21.0),
    ],
)
def test_bench_plan_rides_along_and_needs_fewer_requests_at_the_same_rates(
    bus_factory: Callable[[], can.BusABC], vehicle: str, plain_per_s: float, coalesced_per_s: float
) -> None:
    ecus = ENGINE_ONLY if vehicle == "engine only" else demo_vehicle()
    client = client_knowing(bus_factory(), ecus)
    seconds = 60.0
    runs = {}
    for coalesce in (0.0, 0.5):
        clock = ManualClock()
        scheduler = PollScheduler([PollSpec(pid, period) for pid, period in BENCH_PLAN], clock, coalesce)
        runs[coalesce] = drive(scheduler, clock, client.plan, seconds, random.Random(7))
    plain, coalesced = runs[0.0], runs[0.5]
    assert plain.requests / seconds == pytest.approx(plain_per_s, abs=0.1)
    assert coalesced.requests / seconds == pytest.approx(coalesced_per_s, abs=0.1)
    for run in (plain, coalesced):
        assert run.batches / seconds == pytest.approx(10.0, abs=0.1)  # no drift: one batch a tick
        for pid, period in BENCH_PLAN:
            # never below the configured rate; early polls add at most one over the whole run
            assert seconds / period <= len(run.polls[pid]) <= seconds / period + 1, hex(pid)


def test_non_harmonic_periods_travel_together_and_keep_their_rates() -> None:
    seconds = 60.0
    batches = {}
    for coalesce in (0.0, 0.5):
        clock = ManualClock()
        scheduler = PollScheduler([PollSpec(0x0C, 0.2), PollSpec(0x0D, 0.3)], clock, coalesce)
        run = drive(scheduler, clock, pairs, seconds, random.Random(3))
        assert seconds / 0.2 <= len(run.polls[0x0C]) <= seconds / 0.2 + 1
        assert seconds / 0.3 <= len(run.polls[0x0D]) <= seconds / 0.3 + 1
        gaps = [b - a for a, b in itertools.pairwise(run.polls[0x0D])]
        assert min(gaps) >= round((0.3 - coalesce * 0.3 - 0.015) * 1e9)  # P - H, less one round trip
        batches[coalesce] = run.batches
    # alone: at 0, 0.2, 0.3, 0.4 of each 0.6 s (6.7/s); riding: at 0, 0.2, 0.4 (5/s)
    assert batches[0.0] / seconds == pytest.approx(20 / 3, abs=0.1)
    assert batches[0.5] / seconds == pytest.approx(5.0, abs=0.1)


def test_no_pid_is_polled_faster_than_the_rule_allows_under_jitter_and_stalls() -> None:
    """The n-th poll after a phase origin is not before origin + n*P - H: <= T/P + 2 in any T."""
    clock = ManualClock()
    specs = [PollSpec(pid, period) for pid, period in BENCH_PLAN] + [PollSpec(0x11, 0.7), PollSpec(0x33, 2.3)]
    scheduler = PollScheduler(specs, clock)
    rng = random.Random(11)
    run = drive(
        scheduler, clock, pairs, 120.0, rng, latency_s=(0.0, 0.06),
        stall=lambda batch: rng.choice([0.0] * 30 + [0.15, 0.4, 1.7]),
    )
    window_ns = 3_000_000_000
    for spec in specs:
        times = run.polls[spec.pid]
        allowed = window_ns / 1e9 / spec.period_s + 2
        for i, start in enumerate(times):
            within = bisect.bisect_right(times, start + window_ns) - i
            assert within <= allowed, (hex(spec.pid), start, within, allowed)


def test_a_stall_costs_one_poll_and_the_plan_stays_merged_after_it(
    bus_factory: Callable[[], can.BusABC]
) -> None:
    clock = ManualClock()
    scheduler = PollScheduler([PollSpec(pid, period) for pid, period in BENCH_PLAN], clock)
    plan = client_knowing(bus_factory(), ENGINE_ONLY).plan
    drive(scheduler, clock, plan, 10.0, random.Random(5))
    clock.advance(5.37)  # the bus was busy
    stalled = clock.monotonic_ns()
    after = drive(scheduler, clock, plan, 10.0, random.Random(6))
    for pid, period in BENCH_PLAN:
        times = after.polls[pid]
        assert times[0] - stalled <= 25_000_000  # polled right away (in 1 of 2 requests), once ...
        assert times[1] - times[0] >= round(period * 0.5 * 1e9)  # ... not again in a burst
        assert 10.0 / period - 1 <= len(times) <= 10.0 / period + 1
    assert after.batches == pytest.approx(100, abs=1)
    assert after.requests == pytest.approx(100, abs=2)


def test_riders_come_after_due_pids_most_important_first_and_only_in_free_places() -> None:
    clock = ManualClock()
    specs = [
        PollSpec(0x0C, 1.0, 3), PollSpec(0x0D, 1.0, 0), PollSpec(0x05, 1.0, 1),
        PollSpec(0x2F, 1.0, 5), PollSpec(0x46, 1.0, 0), PollSpec(0x42, 1.0, 0), PollSpec(0x5C, 10.0, 0),
    ]
    scheduler = PollScheduler(specs, clock)
    scheduler.done(scheduler.due())  # t=0: all polled; the 1 s PIDs due at 1.0, 0x5C at 10.0
    for pid, at_s in ((0x2F, 2.2), (0x46, 2.4), (0x42, 2.9)):  # late by > 1 period: re-phased
        clock.advance(at_s - clock.monotonic_ns() / 1e9)
        scheduler.done([pid])
    clock.advance(0.1)  # t=3.0: 0x2F due in 0.2 s, 0x46 in 0.4 s, 0x42 in 0.9 s, 0x5C in 7 s
    assert scheduler.due() == [0x0D, 0x05, 0x0C]
    assert scheduler.riders() == [0x46, 0x2F]  # within half a period; the more important first
    assert scheduler.coalesce(scheduler.due(), pairs) == [
        PidRequest((0x0D, 0x05)),
        PidRequest((0x0C, 0x46)),  # the one free place goes to the most important rider
    ]
    assert scheduler.next_due_s() == 0.0
    scheduler.done([0x0D, 0x05, 0x0C, 0x46])
    assert scheduler.next_due_s() == pytest.approx(0.2)  # 0x2F: its due time, not its horizon
    clock.advance(0.1)
    assert scheduler.due() == [] and scheduler.riders() == [0x2F]
    assert scheduler.coalesce([], pairs) == []  # riders never travel alone


def test_riders_stay_home_when_they_would_split_the_due_pids_into_more_requests(
    bus_factory: Callable[[], can.BusABC]
) -> None:
    # Two ECUs take multi-PID requests, a third does not: due 0x0D alone is one functional request;
    # with rider 0x05 (the old ECU's) the client would ask 0x0D physically of each new ECU: two.
    client = client_knowing(
        bus_factory(),
        [
            EmulatedEcu(index=0, values={0x0C: 800, 0x0D: 10}),
            EmulatedEcu(index=1, values={0x0D: 10}),
            EmulatedEcu(index=2, values={0x05: 80}, reject_multi_pid=True),
        ],
    )
    clock = ManualClock()
    scheduler = PollScheduler([PollSpec(0x0D, 0.1), PollSpec(0x05, 1.0)], clock)
    scheduler.done([0x05])
    clock.advance(0.6)
    assert scheduler.due() == [0x0D] and scheduler.riders() == [0x05]
    assert len(client.plan([0x0D, 0x05])) == 3
    assert scheduler.coalesce([0x0D], client.plan) == [PidRequest((0x0D,))]


def test_coalescing_horizon_must_be_less_than_a_period() -> None:
    for coalesce in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError):
            PollScheduler([PollSpec(0x0C, 1.0)], ManualClock(), coalesce)
    scheduler = PollScheduler([PollSpec(0x0C, 1.0), PollSpec(0x0D, 1.0)], ManualClock(), 0.0)
    scheduler.done([0x0D])
    assert scheduler.riders() == []
