"""A 90-day park of the reference board: energy, state of charge, position freshness, tow latency.

Time-accelerated on a `ManualClock`: the car is parked at day 0 with a 60 Ah battery at 80 %,
sits 90 days with occasional bumps that wake the accelerometer (random, seeded), one tow attempt
at night on day 41 (towed for 25 min, then set down elsewhere) and a daily heartbeat. Every state
the tracker holds and every fix, attach and byte goes through the real `EnergyLedger` with the
reference profile; the vehicle battery is the `LeadAcidBattery` model (self-discharge included)
and the agent's view of it is the planner's `SocEstimator`, fed rested voltages at each wake.

Three trackers on the same board and the same events, in the same run:
- planned: lienwatch's planner (PARKED_WATCH for the first hour, then PARKED_SLEEP as planned,
  CRITICAL if the battery nears its cranking limit);
- always-on: a naive agent — SoC, modem (registered, DRX) and GNSS on all the time, a position
  every 30 s, a heartbeat every 5 min;
- Teltonika-like: awake like always-on for 24 h after ignition off, then deep sleep (SoC
  suspended, modem registered, GNSS off) with a position every 6 h.
A fourth row repeats the planned run on a car that itself draws 5 mA, unknown to the planner,
to show the re-planning from rested voltage.

The tow while the SoC sleeps is run, not modelled (bench/tow_wake.py): the real supervisor,
link, `McuWatch` and edge/detect's tow detector in a `DetectionPipeline`; only the SoC's boot
and the modem's wake take the profile's times. Its latency is motion start → the first EMERGENCY
published. (A tow during PARKED_WATCH would be modelled: this park's tow comes on day 41.)
The car's own quiescent draw is not modelled in the main rows (0 mA): a car drawing 20 mA
empties 18 Ah (80 % → 50 % of 60 Ah) in 37 days whatever the tracker does.

Run: `python -m bench.power [--plot FILE.png]` (a few seconds). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.report import print_json_line, print_table
from bench.tow_wake import TowRun, tow_after_sleep
from edge.power.accounting import EnergyLedger
from edge.power.battery import LeadAcidBattery
from edge.power.planner import Plan, Planner, Policy, PowerMode, Segment, SleepOptions
from edge.power.profile import PowerProfile, load_profile
from lienwatch.clock import ManualClock

DAY = 86400.0
DAYS = 90
TOW_AT_S = 41 * DAY + 2 * 3600 + 13 * 60  # day 41, 02:13
TOW_DURATION_S = 25 * 60
BUMPS_PER_DAY = 1.5
SEED = 7
TELEMETRY_BYTES = 400  # one telemetry batch (30 s of fixes and samples, deflated)
REST_BEFORE_READING_S = 4 * 3600  # a rested voltage needs hours without charge or load steps


@dataclass
class Result:
    name: str
    energy_ah: float = 0.0
    avg_ma: float = 0.0
    soc_day90_pct: float = 0.0
    cranks: bool = True
    position_age_median_h: float = 0.0
    position_age_worst_h: float = 0.0
    heartbeat_gap_worst_h: float = 0.0
    tow_latency_s: float = 0.0
    replans: int = 0
    tow: TowRun | None = None  # the detection run, if the tow came while the SoC slept
    daily_soc: list[float] = field(default_factory=list)
    daily_awake: list[float] = field(default_factory=list)


class Park:
    """The clock, the ledger, the true battery and what was reported when."""

    def __init__(self, profile: PowerProfile, states: Mapping[str, str], *, planner: Planner | None = None,
                 car_draw_ma: float = 0.0) -> None:
        self.profile = profile
        self.clock = ManualClock()
        self.ledger = EnergyLedger(profile, self.clock, states=states, cpu_seconds=lambda: 0.0)
        self.battery = LeadAcidBattery(capacity_ah=60.0, soc_pct=80.0)
        self.planner = planner
        self.car_draw_ma = car_draw_ma
        self.positions = [0.0]  # the drive's last fix, at ignition off
        self.heartbeats = [0.0]
        self.awake_s = [0.0] * (DAYS + 1)
        self.daily_soc = [self.battery.soc_pct]
        self._charged_mah = 0.0
        self.tow_latency_s = float("nan")
        self.tow: TowRun | None = None  # the detection run of a tow while the SoC slept

    def now(self) -> float:
        return self.clock.monotonic_ns() / 1e9

    def hold(self, seconds: float, states: Mapping[str, str] | None = None) -> None:
        """Hold `states` for `seconds`, day by day, charging the battery as time goes."""
        if states is not None:
            self.ledger.set_states(states)
        remaining = seconds
        while remaining > 1e-9:
            now = self.now()
            day = int(now // DAY)
            step = min(remaining, (day + 1) * DAY - now)
            if step < 1e-6:  # float noise at a day boundary
                step = min(remaining, DAY)
            if self.ledger.states["soc"] == "active" and day <= DAYS:
                self.awake_s[day] += step
            self.clock.advance(step)
            remaining -= step
            self._settle(step)
            if int(self.now() // DAY) > day and len(self.daily_soc) <= DAYS:
                self.daily_soc.append(self.battery.soc_pct)

    def _settle(self, seconds: float) -> None:
        spent = self.ledger.spent_mah
        delta = spent - self._charged_mah
        self._charged_mah = spent
        hours = seconds / 3600.0
        self.battery.discharge(delta + self.car_draw_ma * hours)
        self.battery.age(hours)
        if self.planner is not None:
            self.planner.consume(delta, hours)

    def run(self, segments: list[Segment]) -> None:
        for seg in segments:
            self.ledger.set_states(seg.states)
            if seg.fix:
                self.ledger.charge_fix(seg.fix)
            if seg.attach:
                self.ledger.charge_attach(from_psm=seg.attach == "psm")
            if seg.bytes_sent:
                self.ledger.charge_bytes(seg.bytes_sent)
            self.hold(seg.seconds)

    def result(self, name: str) -> Result:
        end = DAYS * DAY
        hours = end / 3600.0
        spent = self.ledger.spent_mah
        grid = [i * 60.0 for i in range(int(end // 60) + 1)]
        ages = []
        for t in grid:
            i = bisect.bisect_right(self.positions, t) - 1
            ages.append(t - self.positions[max(i, 0)])
        beats = [*self.heartbeats, end]
        return Result(
            name, energy_ah=spent / 1000.0, avg_ma=spent / hours, soc_day90_pct=self.battery.soc_pct,
            cranks=self.battery.cranks, position_age_median_h=statistics.median(ages) / 3600.0,
            position_age_worst_h=max(ages) / 3600.0,
            heartbeat_gap_worst_h=max(b - a for a, b in itertools.pairwise(beats)) / 3600.0,
            tow_latency_s=self.tow_latency_s, replans=self.planner.replans if self.planner else 0,
            tow=self.tow,
            daily_soc=self.daily_soc[:DAYS + 1], daily_awake=[s / DAY for s in self.awake_s[:DAYS]])


def bump_times(seed: int = SEED) -> list[float]:
    """Bumps (a passer-by, a gust, a door slammed next to the car): a Poisson process."""
    rnd = random.Random(seed)
    times: list[float] = []
    t = 0.0
    while True:
        t += rnd.expovariate(BUMPS_PER_DAY / DAY)
        if t >= DAYS * DAY:
            return times
        if abs(t - TOW_AT_S) > 3600:
            times.append(t)


# ---------------------------------------------------------------------- the planned tracker


def run_planned(profile: PowerProfile, *, car_draw_ma: float = 0.0, name: str = "planned") -> Result:
    planner = Planner(profile, Policy())
    policy = planner.policy
    t = profile.timings
    park = Park(profile, planner.awake_states(modem="edrx"), planner=planner, car_draw_ma=car_draw_ma)
    end = DAYS * DAY
    bumps = bump_times()
    parked_since = 0.0
    tow_pending = True
    last_wake = 0.0
    while park.now() < end - 1e-6:
        now = park.now()
        mode = planner.mode_for(ignition_on=False, parked_s=now - parked_since)
        plan = planner.current.plans[mode]
        if mode is PowerMode.PARKED_WATCH:
            watch_end = parked_since + policy.watch_h * 3600.0
            next_fix = park.positions[-1] + policy.watch_fix_interval_s
            target = min(watch_end, next_fix, TOW_AT_S if tow_pending else end, end)
            park.hold(target - now, planner.awake_states(modem="edrx"))
            if tow_pending and park.now() >= TOW_AT_S - 1e-6:
                parked_since = _tow(park, planner, plan, asleep=False)
                tow_pending = False
            elif park.now() >= next_fix - 1e-6:
                park.run([Segment(t.gnss_ttff_hot_s, planner.awake_states(modem="connected"), fix="hot",
                                  attach="psm", bytes_sent=policy.position_bytes)])
                park.positions.append(park.now())
            if park.now() >= watch_end - 1e-6:
                last_wake = park.positions[-1]  # the next position one interval after the last
            continue
        assert plan.wake_interval_s is not None
        options = SleepOptions(plan.soc, plan.modem, plan.gnss_standby)
        idle = planner.sleep_states(options)
        next_wake = last_wake + plan.wake_interval_s
        next_bump = bumps[0] if bumps else end
        target = min(next_wake, next_bump, TOW_AT_S if tow_pending else end, end)
        park.hold(max(0.0, target - now), idle)
        if park.now() >= end - 1e-6:
            break
        if tow_pending and park.now() >= TOW_AT_S - 1e-6:
            parked_since = _tow(park, planner, plan, asleep=True)
            tow_pending = False
        elif bumps and park.now() >= next_bump - 1e-6:
            bumps.pop(0)
            park.hold(policy.mcu_confirm_s, {**idle, "mcu": "run", "accel": "active"})  # dismissed
            park.ledger.set_states(idle)
        else:
            interval_h = plan.wake_interval_s / 3600.0
            sleeping = mode is PowerMode.PARKED_SLEEP
            fix = planner.fix_start(interval_h, plan.gnss_standby) if sleeping else "cold"
            # a heartbeat now if waiting for the next wake would (nearly) miss the interval
            since_hb = park.now() - park.heartbeats[-1]
            heartbeat = since_hb + plan.wake_interval_s > plan.heartbeat_interval_s - 600
            last_wake = park.now()  # wakes start one interval apart, so positions are one apart
            park.run(planner.wake_segments(options, fix=fix, heartbeat=heartbeat))
            park.positions.append(park.now())
            if heartbeat:
                park.heartbeats.append(park.now())
            if park.now() - parked_since >= REST_BEFORE_READING_S:
                planner.observe_rest(park.battery.resting_voltage())
    return park.result(name)


def _tow(park: Park, planner: Planner, plan: Plan, *, asleep: bool) -> float:
    """The tow: detection path, then tracked until set down; returns when the car is parked again."""
    policy = planner.policy
    t = park.profile.timings
    start = park.now()
    if asleep:  # run: the real supervisor, link and detectors (bench/tow_wake.py)
        park.ledger.charge_attach(from_psm=plan.modem != "off")
        park.tow = tow_after_sleep(park.clock, planner, plan, park.hold)  # runs on past the event
        park.tow_latency_s = park.tow.latency_s
    else:  # PARKED_WATCH: modelled (the day-41 tow of this park comes while the SoC sleeps)
        park.ledger.charge_attach(from_psm=True)
        park.hold(max(policy.detector_latency_s, t.modem_psm_wake_s), planner.awake_states(gnss="tracking"))
        park.hold(policy.publish_s)
        park.tow_latency_s = park.now() - start
    park.ledger.charge_bytes(policy.position_bytes + 200)  # the EMERGENCY event with the last position
    park.heartbeats.append(park.now())
    tracking = planner.awake_states(gnss="tracking")
    moved_until = start + TOW_DURATION_S
    while park.now() < moved_until:
        park.ledger.charge_bytes(TELEMETRY_BYTES)
        park.hold(min(30.0, moved_until - park.now()), tracking)
        park.positions.append(park.now())
    return park.now()  # set down: PARKED_WATCH again


# ---------------------------------------------------------------------- the baselines


def _awake_states() -> dict[str, str]:
    return {"soc": "active", "mcu": "run", "modem": "idle", "gnss": "tracking", "can": "standby",
            "accel": "active"}


def _awake_until(park: Park, until: float, tow_latency_s: float) -> None:
    """An awake agent: a position batch every 30 s, a heartbeat every 5 min; tows seen by the SoC."""
    policy = Policy()
    while park.now() < until - 1e-6:
        now = park.now()
        if abs(now - TOW_AT_S) < 30 and park.tow_latency_s != park.tow_latency_s:
            park.tow_latency_s = tow_latency_s
        park.ledger.charge_attach(from_psm=True)  # RRC setup for the send
        park.ledger.charge_bytes(TELEMETRY_BYTES)
        if now - park.heartbeats[-1] >= 300.0:
            park.ledger.charge_bytes(policy.heartbeat_bytes)
            park.heartbeats.append(now)
        park.hold(min(30.0, until - now), _awake_states())
        park.positions.append(park.now())


def run_always_on(profile: PowerProfile) -> Result:
    policy = Policy()
    park = Park(profile, _awake_states())
    latency = max(policy.detector_latency_s, profile.timings.modem_psm_wake_s) + policy.publish_s
    _awake_until(park, DAYS * DAY, latency)
    return park.result("always-on")


def run_teltonika_like(profile: PowerProfile) -> Result:
    """Awake 24 h after ignition off, then deep sleep with a position every 6 h (bumps wake the MCU)."""
    policy = Policy()
    planner = Planner(profile, policy)
    t = profile.timings
    park = Park(profile, _awake_states())
    _awake_until(park, DAY, float("nan"))
    deep = {"soc": "suspend", "mcu": "stop", "modem": "idle", "gnss": "off", "can": "sleep",
            "accel": "wake_on_motion"}
    options = SleepOptions("suspend", "idle", "off")
    bumps = [b for b in bump_times() if b > DAY]
    end = DAYS * DAY
    last_wake = DAY
    tow_pending = True
    while park.now() < end - 1e-6:
        next_wake = last_wake + 6 * 3600.0
        target = min(next_wake, bumps[0] if bumps else end, TOW_AT_S if tow_pending else end, end)
        park.hold(max(0.0, target - park.now()), deep)
        if park.now() >= end - 1e-6:
            break
        if tow_pending and park.now() >= TOW_AT_S - 1e-6:
            tow_pending = False
            start = park.now()
            confirm_s = 1.0 / t.accel_wake_odr_hz + policy.mcu_confirm_s
            park.hold(confirm_s, {**deep, "mcu": "run", "accel": "active"})
            park.hold(t.soc_resume_s, {**deep, "soc": "active"})
            park.ledger.charge_attach(from_psm=True)
            park.hold(max(policy.detector_latency_s, t.modem_psm_wake_s) + policy.publish_s, _awake_states())
            park.tow_latency_s = park.now() - start
            _awake_until(park, start + TOW_DURATION_S, park.tow_latency_s)
            _awake_until(park, park.now() + DAY, park.tow_latency_s)  # awake 24 h again after the stop
            last_wake = park.now()
        elif bumps and park.now() >= bumps[0] - 1e-6:
            bumps.pop(0)
            park.hold(policy.mcu_confirm_s, {**deep, "mcu": "run", "accel": "active"})
        else:
            park.run(planner.wake_segments(options, fix="cold", heartbeat=True))
            park.positions.append(park.now())
            park.heartbeats.append(park.now())
            last_wake = park.now()
    return park.result("Teltonika-like")


# ---------------------------------------------------------------------- output


def plot(results: list[Result], path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install -e '.[dev]')"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for r in results:
        top.plot(range(len(r.daily_soc)), r.daily_soc, label=r.name)
        bottom.plot(range(len(r.daily_awake)), [100 * a for a in r.daily_awake], label=r.name)
    top.axhline(50.0, color="red", linestyle="--", linewidth=1, label="cranking limit")
    top.set_ylabel("battery state of charge (%)")
    top.legend(fontsize=8)
    bottom.set_ylabel("SoC awake (% of the day)")
    bottom.set_yscale("symlog", linthresh=1.0)
    bottom.set_ylim(0, 110)
    bottom.set_xlabel("day parked")
    top.set_title("90 days parked, reference T-Box, 60 Ah at 80 %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot: {path}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", default="tbox-reference", help="board power profile")
    parser.add_argument("--plot", default="power-90d.png", help="PNG of SoC and duty cycle ('' for none)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    planned = run_planned(profile)
    sleep_plan = Planner(profile, Policy()).current.plans[PowerMode.PARKED_SLEEP]
    results = [planned, run_always_on(profile), run_teltonika_like(profile),
               run_planned(profile, car_draw_ma=5.0, name="planned, car draws 5 mA")]
    always_on = results[1]
    print_table(
        f"90 days parked, {profile.name}, 60 Ah at 80 %, {BUMPS_PER_DAY:g} bumps/day, one tow on day 41",
        ["tracker", "energy Ah", "avg mA @12V", "vs always-on", "SoC day 90 %", "cranks",
         "pos age median h", "pos age worst h", "heartbeat gap h", "tow latency s", "re-plans"],
        [[r.name, r.energy_ah, r.avg_ma, f"{r.avg_ma / always_on.avg_ma:.4f}", r.soc_day90_pct,
          "yes" if r.cranks else "NO", r.position_age_median_h, r.position_age_worst_h,
          r.heartbeat_gap_worst_h, r.tow_latency_s, r.replans] for r in results])
    runs = [r for r in results if r.tow is not None]
    print_table("the tow while the SoC slept, run: real supervisor, link and detectors (s after motion "
                "starts)",
                ["tracker", "MCU wakes SoC", "agent runs", "EMERGENCY raised", "by", "published",
                 "planned (model)", "edge/detect tow alone"],
                [[r.name, r.tow.gpio_s, r.tow.awake_s, r.tow.raised_s, r.tow.detector, r.tow.latency_s,
                  sleep_plan.tow_latency_s,
                  "-" if r.tow.soc_tow_s is None else r.tow.soc_tow_s] for r in runs if r.tow is not None])
    backup = Planner(profile, Policy()).current.plans[PowerMode.BACKUP]
    print_table("after an unplug: the planner's BACKUP plan on the tracker's own cell",
                ["cell mAh", "position every s", "soc", "modem", "cell mA", "lasts h", "why"],
                [[profile.backup_cell.capacity_mah, backup.position_interval_s, backup.soc, backup.modem,
                  backup.avg_current_ma, backup.endurance_h, backup.reasons[1]]])
    goals = [("avg parked draw ≤ 1.5 mA at 12 V", planned.avg_ma <= 1.5, f"{planned.avg_ma:.3f} mA"),
             ("a position at least every 6 h", planned.position_age_worst_h <= 6.0,
              f"worst {planned.position_age_worst_h:.2f} h"),
             ("a daily heartbeat", planned.heartbeat_gap_worst_h <= 24.0,
              f"worst gap {planned.heartbeat_gap_worst_h:.2f} h"),
             ("tow detected ≤ 60 s after motion starts", planned.tow_latency_s <= 60.0,
              f"{planned.tow_latency_s:.1f} s (run, raised by "
              f"{planned.tow.detector if planned.tow else '?'})"),
             ("battery above cranking at day 90", planned.cranks,
              f"{planned.soc_day90_pct:.1f} % (limit 50 %)")]
    print_table("goals (planned tracker)", ["goal", "met", "measured"],
                [[g, "yes" if ok else "NO", m] for g, ok, m in goals])
    print(plot(results[:3], args.plot) if args.plot else "plot: not asked for")
    print_json_line({"avg_current_ma": round(planned.avg_ma, 4),
                     "baseline_always_on_ma": round(always_on.avg_ma, 3),
                     "soc_day90_pct": round(planned.soc_day90_pct, 2),
                     "position_age_worst_h": round(planned.position_age_worst_h, 3),
                     "tow_latency_s": round(planned.tow_latency_s, 2)})


if __name__ == "__main__":
    main()
