"""The duty-cycle planner: which state the tracker is in, and how it spends its energy budget.

States: DRIVING (the alternator powers everything: full rates), PARKED_WATCH (the first hours
after ignition off: SoC awake, tow detection on the SoC armed), PARKED_SLEEP (SoC off or
suspended, the MCU's accelerometer watching, periodic wakes for a position and a heartbeat),
CRITICAL (battery near its cranking limit: SoC wakes only for an EMERGENCY from the MCU).

For PARKED_SLEEP the planner evaluates every combination of wake interval, SoC sleep state,
modem mode and GNSS standby against the budget — the charge above the cranking limit (plus a
margin) minus self-discharge and the car's own draw over the horizon, spread over the horizon —
and picks, in this order: one that meets the service promises (position age, heartbeat, tow
latency); the freshest position (the shortest wake interval, but not below
`position_interval_min_h`: a parked car only moves when it is moved, and motion wakes the MCU
anyway); then the lowest draw. Whatever is not spent is margin for what no profile knows (an aged
battery, cold, the car's own draw). Every choice comes with the reasons, alternatives included.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from edge.power.battery import LeadAcidBattery, SocEstimator
from edge.power.profile import PowerProfile
from lienwatch.errors import ConfigError
from protocol.messages import PowerState


class PowerMode(Enum):
    DRIVING = "driving"
    PARKED_WATCH = "parked_watch"
    PARKED_SLEEP = "parked_sleep"
    CRITICAL = "critical"
    BACKUP = "backup"  # unplugged: the tracker runs from its own cell


WAKE_LADDER_H = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0, 48.0, 72.0)
BACKUP_LADDER_S = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0, 43200.0,
                   86400.0)


@dataclass(frozen=True, slots=True)
class Policy:
    """What we want of the tracker (not what the hardware is: that is the profile)."""

    horizon_days: float = 90.0
    position_interval_max_h: float = 6.0  # a parked car reports a position at least this often
    position_interval_min_h: float = 1.0  # never fix a parked car more often than this
    heartbeat_interval_h: float = 24.0  # a Status at least this often
    watch_h: float = 1.0  # PARKED_WATCH this long after ignition off
    watch_fix_interval_s: float = 300.0  # positions while watching
    tow_latency_max_s: float = 60.0  # motion start → event published
    mcu_confirm_s: float = 10.0  # the MCU wakes the SoC only after motion held this long (bumps don't)
    detector_latency_s: float = 10.0  # the SoC-side tow detector (edge/detect) once it runs
    mcu_read_s: float = 0.5  # woken by the MCU: its logged MOTION is raised at the first log read
    publish_s: float = 1.0  # one QoS 1 publish and its PUBACK over Cat-M
    wake_work_s: float = 5.0  # agent work per wake besides fix and send (read the MCU log, queue)
    position_bytes: int = 160  # a signed position report on the wire
    heartbeat_bytes: int = 220  # a signed Status
    critical_margin_pct: float = 5.0  # CRITICAL at crank + this; the budget never plans below it
    vehicle_quiescent_ma: float = 0.0  # the car's own parked draw, if known (often 10–50 mA)
    bumps_per_day: float = 4.0  # accelerometer wakes that are not a tow (expected, for the budget)
    rtk_when_driving: bool = True  # RTK pays only while the alternator pays
    critical_heartbeat_h: float = 168.0  # CRITICAL still says it is alive, weekly
    backup_hours_min: float = 48.0  # after an unplug the backup cell must last at least this long
    backup_position_interval_min_s: float = 300.0  # on the cell, never a position more often

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"power.{f.name} must be true or false")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value < 0:
                raise ConfigError(f"power.{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("horizon_days", "position_interval_max_h", "position_interval_min_h",
                     "heartbeat_interval_h", "tow_latency_max_s", "critical_heartbeat_h",
                     "backup_hours_min", "backup_position_interval_min_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"power.{name} must be > 0")
        if self.horizon_days > 3650:
            raise ConfigError("power.horizon_days must be <= 3650")
        if self.position_interval_min_h > self.position_interval_max_h:
            raise ConfigError("power.position_interval_min_h must be <= position_interval_max_h")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> Policy:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"power: unknown option(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(known))})")
        return cls(**dict(table))


@dataclass(frozen=True, slots=True)
class SleepOptions:
    soc: str  # "off" | "suspend"
    modem: str  # "psm" | "edrx" | "off"
    gnss: str  # "backup" | "off"


SLEEP_OPTIONS = tuple(SleepOptions(s, m, g) for s in ("off", "suspend") for m in ("psm", "edrx", "off")
                      for g in ("backup", "off"))


@dataclass(frozen=True, slots=True)
class Segment:
    """Part states held for some seconds, plus event charges (mJ at the rails)."""

    seconds: float
    states: Mapping[str, str]
    fix: str | None = None  # "hot" | "cold" | "rtk"
    attach: str | None = None  # "psm" | "full"
    bytes_sent: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """One state's settings and what they cost and give."""

    mode: PowerMode
    soc: str  # "awake" | "suspend" | "off" between wakes
    modem: str  # "connected" | "edrx" | "psm" | "off" between wakes
    gnss: str  # "rtk" | "tracking" | "per_wake" | "on_emergency"
    gnss_standby: str  # "backup" | "off" between fixes
    wake_interval_s: float | None  # periodic SoC wake (None: the SoC stays awake)
    heartbeat_interval_s: float
    position_interval_s: float | None
    avg_current_ma: float  # battery side, at 12 V, while in this state
    tow_latency_s: float
    position_age_worst_s: float | None
    command_latency_s: float  # how long a downlink command may wait
    reasons: tuple[str, ...] = ()
    endurance_h: float | None = None  # BACKUP: how long the cell lasts at this plan

    @property
    def wire_state(self) -> PowerState:
        if self.mode is PowerMode.DRIVING:
            return PowerState.ACTIVE
        if self.mode is PowerMode.PARKED_WATCH:
            return PowerState.IDLE
        if self.mode is PowerMode.BACKUP:
            return PowerState.BACKUP_BATTERY
        if self.mode is PowerMode.PARKED_SLEEP and self.soc == "suspend":
            return PowerState.SLEEP
        return PowerState.DEEP_SLEEP

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["mode"] = self.mode.value
        out["reasons"] = list(self.reasons)
        return out


@dataclass(frozen=True, slots=True)
class PlanSet:
    """The plans of all four states from one battery estimate, with the budget behind them."""

    plans: Mapping[PowerMode, Plan]
    soc_pct: float
    budget_ma: float
    usable_mah: float
    self_discharge_ma: float
    forecast_days: float  # days to the cranking limit parked: watch once, then sleep
    soc_at_horizon_pct: float
    reasons: tuple[str, ...] = field(default=())


class Planner:
    """Plans from a profile, a policy and the battery as assumed; re-plans on rested voltage."""

    def __init__(self, profile: PowerProfile, policy: Policy | None = None,
                 battery: LeadAcidBattery | None = None) -> None:
        self.profile = profile
        self.policy = policy or Policy()
        self.battery = battery or LeadAcidBattery()
        self.estimator = SocEstimator(self.battery)
        self.replans = 0
        self.current = self.plan_all()

    # ------------------------------------------------------------------ building blocks

    def sleep_states(self, options: SleepOptions) -> dict[str, str]:
        return {"soc": options.soc, "mcu": "stop", "modem": options.modem, "gnss": options.gnss,
                "can": "sleep", "accel": "wake_on_motion"}

    def awake_states(self, modem: str = "connected", gnss: str = "backup") -> dict[str, str]:
        return {"soc": "active", "mcu": "run", "modem": modem, "gnss": gnss, "can": "standby",
                "accel": "active"}

    def _modem_wake_s(self, modem: str) -> float:
        t = self.profile.timings
        return t.modem_attach_s if modem == "off" else t.modem_psm_wake_s

    def _soc_wake_s(self, soc: str) -> float:
        t = self.profile.timings
        return t.soc_resume_s if soc == "suspend" else t.soc_boot_s

    def wake_segments(self, options: SleepOptions, *, fix: str | None, heartbeat: bool,
                      extra_bytes: int = 0) -> list[Segment]:
        """One periodic wake: SoC up, modem out of its sleep, a fix, the sends, SoC down."""
        t = self.profile.timings
        p = self.policy
        soc_up = self._soc_wake_s(options.soc)
        ttff = 0.0 if fix is None else (t.gnss_ttff_hot_s if fix == "hot" else t.gnss_ttff_cold_s)
        work = max(ttff, self._modem_wake_s(options.modem)) + p.wake_work_s + p.publish_s
        sent = (p.position_bytes if fix else 0) + (p.heartbeat_bytes if heartbeat else 0) + extra_bytes
        down = t.soc_shutdown_s if options.soc == "off" else t.soc_resume_s
        up_states = self.awake_states(modem=options.modem, gnss=options.gnss)
        work_states = self.awake_states(modem="connected", gnss=options.gnss)
        return [Segment(soc_up, up_states),
                Segment(work, work_states, fix=fix, attach="full" if options.modem == "off" else "psm",
                        bytes_sent=sent),
                Segment(down, up_states)]

    def segments_mah(self, segments: list[Segment]) -> float:
        """What a list of segments costs, exactly as the ledger would charge it."""
        prof = self.profile
        t = prof.timings
        total = 0.0
        for seg in segments:
            total += prof.battery_ma(seg.states) * seg.seconds / 3600.0
            if seg.fix:
                seconds = {"hot": t.gnss_ttff_hot_s, "cold": t.gnss_ttff_cold_s,
                           "rtk": t.gnss_ttff_hot_s + t.gnss_rtk_convergence_s}[seg.fix]
                total += prof.event_mah(prof.part_mj("gnss", "acquisition", seconds))
            if seg.attach:
                total += prof.event_mah(t.modem_attach_mj if seg.attach == "full" else t.modem_psm_wake_mj)
            total += prof.event_mah(t.modem_kb_mj * seg.bytes_sent / 1000.0)
        return total

    def fix_start(self, interval_h: float, gnss_standby: str) -> str:
        """Hot while the receiver keeps an ephemeris that is still valid, else cold."""
        fresh = interval_h <= self.profile.timings.gnss_ephemeris_valid_h
        return "hot" if gnss_standby == "backup" and fresh else "cold"

    def bump_mah(self) -> float:
        """One accelerometer wake the MCU dismisses: MCU running, accelerometer at full rate."""
        base = self.sleep_states(SleepOptions("off", "psm", "backup"))
        busy = {**base, "mcu": "run", "accel": "active"}
        return (self.profile.battery_ma(busy) - self.profile.battery_ma(base)) \
            * self.policy.mcu_confirm_s / 3600.0

    def tow_latency_s(self, soc: str, modem: str) -> float:
        """Motion start → event published, with the SoC asleep: the MCU's accelerometer interrupt
        (one sample period), its confirmation window, SoC wake, then the agent reading the MCU's
        log (the MCU's MOTION is the EMERGENCY: edge/detect's own tow detector needs minutes to
        re-arm after a boot) and the modem wake in parallel, then the publish."""
        t = self.profile.timings
        p = self.policy
        return (1.0 / t.accel_wake_odr_hz + p.mcu_confirm_s + self._soc_wake_s(soc)
                + max(p.mcu_read_s, self._modem_wake_s(modem)) + p.publish_s)

    # ------------------------------------------------------------------ the four states

    def driving(self) -> Plan:
        p = self.policy
        rtk = p.rtk_when_driving and self.profile.parts["gnss"].ma("rtk") > 0
        states = {"soc": "active", "mcu": "run", "modem": "connected", "gnss": "rtk" if rtk else "tracking",
                  "can": "normal", "accel": "active"}
        reasons = ["the alternator powers the tracker: full rates, nothing is charged to the parked budget",
                   "RTK on: lane-level tracks cost no battery while driving" if rtk else
                   "RTK off (policy or profile): single-band fixes"]
        return Plan(PowerMode.DRIVING, "awake", "connected", "rtk" if rtk else "tracking", "backup", None,
                    300.0, 1.0, self.profile.battery_ma(states), p.detector_latency_s + p.publish_s, 1.0,
                    0.0, tuple(reasons))

    def watch_mah(self) -> float:
        """One PARKED_WATCH phase: SoC awake and idle, modem in e-I-DRX, a hot fix per interval."""
        p = self.policy
        seconds = p.watch_h * 3600.0
        if seconds <= 0:
            return 0.0
        fixes = max(1, int(seconds // p.watch_fix_interval_s)) if p.watch_fix_interval_s > 0 else 0
        states = self.awake_states(modem="edrx", gnss="backup")
        return self.segments_mah([Segment(seconds, states)] + [
            Segment(0.0, states, fix="hot", attach="psm", bytes_sent=p.position_bytes)] * fixes)

    def watch(self) -> Plan:
        p = self.policy
        t = self.profile.timings
        avg = self.watch_mah() / p.watch_h if p.watch_h > 0 else 0.0
        reasons = [f"for {p.watch_h:g} h after ignition off the SoC stays up with every detector armed "
                   f"(the owner may be back, a tow usually comes early); modem in e-I-DRX "
                   f"({t.modem_edrx_cycle_s:g} s to reach us), a position every {p.watch_fix_interval_s:g} s"]
        return Plan(PowerMode.PARKED_WATCH, "awake", "edrx", "per_wake", "backup", None,
                    p.heartbeat_interval_h * 3600.0, p.watch_fix_interval_s, avg,
                    p.detector_latency_s + p.publish_s + t.modem_psm_wake_s,
                    p.watch_fix_interval_s + t.gnss_ttff_hot_s, t.modem_edrx_cycle_s, tuple(reasons))

    def sleep_plan(self, options: SleepOptions, interval_h: float) -> Plan:
        """One PARKED_SLEEP candidate: its average draw includes wakes, heartbeats and bumps."""
        p = self.policy
        t = self.profile.timings
        fix = self.fix_start(interval_h, options.gnss)
        heartbeat_every = max(1, int(p.heartbeat_interval_h // interval_h))
        with_hb = self.segments_mah(self.wake_segments(options, fix=fix, heartbeat=True))
        without = self.segments_mah(self.wake_segments(options, fix=fix, heartbeat=False))
        per_wake = (with_hb + (heartbeat_every - 1) * without) / heartbeat_every
        awake_s = sum(s.seconds for s in self.wake_segments(options, fix=fix, heartbeat=False))
        floor = self.profile.battery_ma(self.sleep_states(options))
        hours = interval_h
        avg = floor * (hours - awake_s / 3600.0) / hours + per_wake / hours \
            + self.bump_mah() * p.bumps_per_day / 24.0
        command = t.modem_edrx_cycle_s if options.modem == "edrx" else interval_h * 3600.0
        ttff = t.gnss_ttff_hot_s if fix == "hot" else t.gnss_ttff_cold_s
        age = interval_h * 3600.0 + self._soc_wake_s(options.soc) + ttff
        return Plan(PowerMode.PARKED_SLEEP, options.soc, options.modem, "per_wake", options.gnss,
                    interval_h * 3600.0, heartbeat_every * interval_h * 3600.0, interval_h * 3600.0, avg,
                    self.tow_latency_s(options.soc, options.modem), age, command)

    def critical(self) -> Plan:
        p = self.policy
        options = SleepOptions("off", "off", "off")
        hb = self.segments_mah(self.wake_segments(options, fix="cold", heartbeat=True))
        floor = self.profile.battery_ma(self.sleep_states(options))
        avg = floor + hb / p.critical_heartbeat_h + self.bump_mah() * p.bumps_per_day / 24.0
        reasons = [f"battery within {p.critical_margin_pct:g} % of its cranking limit: the car must still "
                   "start. SoC, modem and GNSS off; only an EMERGENCY from the MCU (tow, unplug) wakes "
                   f"the SoC, plus a heartbeat every {p.critical_heartbeat_h:g} h with a cold fix"]
        return Plan(PowerMode.CRITICAL, "off", "off", "on_emergency", "off", p.critical_heartbeat_h * 3600.0,
                    p.critical_heartbeat_h * 3600.0, None, avg, self.tow_latency_s("off", "off"), None,
                    p.critical_heartbeat_h * 3600.0, tuple(reasons))

    # ------------------------------------------------------------------ on the backup cell

    def cell_ma(self, states: Mapping[str, str]) -> float:
        """Cell current with each part in `states`. Unplugged, the 12 V buck and the parts on the
        car's supply (`direct`) have no power; the cell feeds the modem's VBAT directly and the
        3.3 V rails through a linear regulator, so it carries the sum of the rail currents."""
        return sum(part.ma(states[name]) for name, part in self.profile.parts.items() if not part.direct)

    def cell_segments_mah(self, segments: list[Segment]) -> float:
        """What segments cost the cell (events' energy at their part's rail, linear path)."""
        prof = self.profile
        t = prof.timings
        modem_v = prof.parts["modem"].rail_v
        total = 0.0
        for seg in segments:
            total += self.cell_ma(seg.states) * seg.seconds / 3600.0
            if seg.fix:
                seconds = {"hot": t.gnss_ttff_hot_s, "cold": t.gnss_ttff_cold_s,
                           "rtk": t.gnss_ttff_hot_s + t.gnss_rtk_convergence_s}[seg.fix]
                total += prof.parts["gnss"].ma("acquisition") * seconds / 3600.0
            if seg.attach:
                mj = t.modem_attach_mj if seg.attach == "full" else t.modem_psm_wake_mj
                total += mj / modem_v / 3600.0
            total += t.modem_kb_mj * seg.bytes_sent / 1000.0 / modem_v / 3600.0
        return total

    def backup_plan(self, options: SleepOptions, interval_s: float, cell_soc_pct: float = 100.0) -> Plan:
        """One BACKUP candidate: a position every `interval_s`, a heartbeat daily, on the cell."""
        p = self.policy
        t = self.profile.timings
        interval_h = interval_s / 3600.0
        fix = self.fix_start(interval_h, options.gnss)
        heartbeat_every = max(1, int(p.heartbeat_interval_h // interval_h))
        with_hb = self.cell_segments_mah(self.wake_segments(options, fix=fix, heartbeat=True))
        without = self.cell_segments_mah(self.wake_segments(options, fix=fix, heartbeat=False))
        per_wake = (with_hb + (heartbeat_every - 1) * without) / heartbeat_every
        awake_s = sum(s.seconds for s in self.wake_segments(options, fix=fix, heartbeat=False))
        floor = self.cell_ma(self.sleep_states(options))
        avg = floor * max(0.0, interval_h - awake_s / 3600.0) / interval_h + per_wake / interval_h
        usable = max(0.0, min(100.0, cell_soc_pct)) / 100.0 * self.profile.backup_cell.capacity_mah
        endurance = usable / avg if avg > 0 else math.inf
        ttff = t.gnss_ttff_hot_s if fix == "hot" else t.gnss_ttff_cold_s
        command = t.modem_edrx_cycle_s if options.modem == "edrx" else interval_s
        return Plan(PowerMode.BACKUP, options.soc, options.modem, "per_wake", options.gnss, interval_s,
                    heartbeat_every * interval_s, interval_s, avg,
                    self.tow_latency_s(options.soc, options.modem),
                    interval_s + self._soc_wake_s(options.soc) + ttff, command, endurance_h=endurance)

    def backup(self, cell_soc_pct: float = 100.0) -> Plan:
        """After an unplug: the freshest positions that let the cell last `backup_hours_min`."""
        p = self.policy
        cell = self.profile.backup_cell
        allowed = [self.backup_plan(o, s, cell_soc_pct) for s in BACKUP_LADDER_S
                   if s >= p.backup_position_interval_min_s for o in SLEEP_OPTIONS]
        if not allowed:  # the policy's minimum is above the ladder: its longest rung
            allowed = [self.backup_plan(o, BACKUP_LADDER_S[-1], cell_soc_pct) for o in SLEEP_OPTIONS]
        lasting = [c for c in allowed if (c.endurance_h or 0.0) >= p.backup_hours_min]
        if lasting:
            best = min(lasting, key=lambda c: (c.position_interval_s, c.avg_current_ma))
        else:
            best = max(allowed, key=lambda c: (c.endurance_h or 0.0, -(c.position_interval_s or 0.0)))
        assert best.wake_interval_s is not None and best.endurance_h is not None
        duty = self.wake_segments(SleepOptions(best.soc, best.modem, best.gnss_standby),
                                  fix=self.fix_start(best.wake_interval_s / 3600.0, best.gnss_standby),
                                  heartbeat=False)
        awake_s = sum(s.seconds for s in duty)
        why = [f"unplugged: the {cell.capacity_mah:g} mAh cell at {cell_soc_pct:.0f} % runs the tracker "
               f"(the car's supply and the 12 V buck are gone; the cell feeds the rails linearly: "
               f"{best.avg_current_ma:.2f} mA at the cell)",
               f"a position every {_seconds(best.wake_interval_s)}, SoC {best.soc} and modem "
               f"{best.modem} between (awake {awake_s:.0f} s per wake, a duty cycle of "
               f"{100.0 * awake_s / best.wake_interval_s:.2f} %): the cell lasts "
               f"{best.endurance_h:.0f} h"]
        if lasting:
            why.append(f"the freshest positions that keep the cell going for backup_hours_min = "
                       f"{p.backup_hours_min:g} h (no fresher than {p.backup_position_interval_min_s:g} s)")
            fresher = [c for c in allowed if c.position_interval_s is not None
                       and best.position_interval_s is not None
                       and c.position_interval_s < best.position_interval_s]
            if fresher:
                alt = max(fresher, key=lambda c: (c.position_interval_s or 0.0, c.endurance_h or 0.0))
                assert alt.wake_interval_s is not None
                why.append(f"a position every {_seconds(alt.wake_interval_s)} would last only "
                           f"{alt.endurance_h or 0.0:.0f} h")
        else:
            why.append(f"no plan lasts backup_hours_min = {p.backup_hours_min:g} h: the longest-lasting "
                       "is taken")
        return replace(best, reasons=tuple(why))

    # ------------------------------------------------------------------ the budget and the choice

    def self_discharge_ma(self) -> float:
        b = self.battery
        return b.self_discharge_pct_per_h() / 100.0 * b.available_ah * 1000.0

    def candidates(self) -> Iterator[Plan]:
        for interval in WAKE_LADDER_H:
            for options in SLEEP_OPTIONS:
                yield self.sleep_plan(options, interval)

    def choose_sleep(self, budget_ma: float) -> Plan:
        p = self.policy
        shortest_s = p.position_interval_min_h * 3600
        allowed = [c for c in self.candidates()
                   if c.position_interval_s is not None and c.position_interval_s >= shortest_s]

        def promises(c: Plan) -> bool:
            return (c.tow_latency_s <= p.tow_latency_max_s and c.position_interval_s is not None
                    and c.position_interval_s <= p.position_interval_max_h * 3600
                    and c.heartbeat_interval_s <= p.heartbeat_interval_h * 3600)

        fits = [c for c in allowed if c.avg_current_ma <= budget_ma]
        if fits:
            best = min(fits, key=lambda c: (not promises(c), c.position_interval_s, c.avg_current_ma))
        else:  # nothing fits: the cheapest that still keeps the promises, or the cheapest of all
            best = min(allowed, key=lambda c: (not promises(c), c.avg_current_ma))
        return replace(best, reasons=tuple(self._explain(best, budget_ma, bool(fits), promises(best))))

    def _explain(self, chosen: Plan, budget_ma: float, fits: bool, promised: bool) -> list[str]:
        p = self.policy
        assert chosen.wake_interval_s is not None
        interval_h = chosen.wake_interval_s / 3600.0
        why = []
        if not fits:
            why.append(f"no plan fits the budget of {budget_ma:.3f} mA: the cheapest is taken and the "
                       "battery will fall short of the horizon")
        elif not promised:
            why.append(f"no plan within the budget of {budget_ma:.3f} mA keeps every promise "
                       f"(a position every {p.position_interval_max_h:g} h, "
                       f"tow ≤ {p.tow_latency_max_s:g} s): the freshest affordable one is taken")
        if interval_h <= p.position_interval_min_h:
            why.append(f"a position every {interval_h:g} h: the freshest the policy asks for "
                       f"(position_interval_min_h = {p.position_interval_min_h:g}; between fixes only "
                       "motion can move a parked car, and motion wakes the MCU)")
        else:
            why.append(f"a position every {interval_h:g} h: the freshest that fits {budget_ma:.3f} mA")
        options = SleepOptions(chosen.soc, chosen.modem, chosen.gnss_standby)
        for label, variant in (("soc", ("off", "suspend")), ("modem", ("psm", "edrx", "off")),
                               ("gnss", ("backup", "off"))):
            for value in variant:
                if getattr(options, label) == value:
                    continue
                other = self.sleep_plan(replace(options, **{label: value}), interval_h)
                delta = other.avg_current_ma - chosen.avg_current_ma
                gain = ""
                if other.tow_latency_s < chosen.tow_latency_s - 0.5:
                    gain = f", tow {other.tow_latency_s:.0f} s instead of {chosen.tow_latency_s:.0f} s"
                if other.command_latency_s < chosen.command_latency_s - 0.5:
                    gain += f", commands within {other.command_latency_s:.0f} s"
                if other.tow_latency_s > p.tow_latency_max_s:
                    gain += f", tow {other.tow_latency_s:.0f} s breaks the {p.tow_latency_max_s:g} s promise"
                why.append(f"{label} {value} instead of {getattr(options, label)}: {delta:+.3f} mA{gain}")
        fix = self.fix_start(interval_h, chosen.gnss_standby)
        why.append(f"GNSS: a {fix} start per wake" + (
            " (the receiver keeps its ephemeris in backup)" if fix == "hot" else
            " (an ephemeris older than "
            f"{self.profile.timings.gnss_ephemeris_valid_h:g} h is useless)") +
            "; RTK never while parked: its convergence costs more than a parked car's position gains")
        return why

    def plan_all(self, soc_pct: float | None = None) -> PlanSet:
        """Plans for every state from the estimated (or given) state of charge."""
        p = self.policy
        soc = self.estimator.soc_pct if soc_pct is None else soc_pct
        horizon_h = p.horizon_days * 24.0
        usable = self.battery.usable_mah(soc, margin_pct=p.critical_margin_pct)
        sd_ma = self.self_discharge_ma()
        watch = self.watch_mah()
        budget_ma = max(0.0, (usable - (sd_ma + p.vehicle_quiescent_ma) * horizon_h - watch) / horizon_h)
        sleep = self.choose_sleep(budget_ma)
        plans = {PowerMode.DRIVING: self.driving(), PowerMode.PARKED_WATCH: self.watch(),
                 PowerMode.PARKED_SLEEP: sleep, PowerMode.CRITICAL: self.critical(),
                 PowerMode.BACKUP: self.backup()}
        draw = sleep.avg_current_ma + sd_ma + p.vehicle_quiescent_ma
        forecast = (p.watch_h / 24.0 + max(0.0, usable - watch) / draw / 24.0) if draw > 0 else math.inf
        spent_horizon = watch + (sleep.avg_current_ma + sd_ma + p.vehicle_quiescent_ma) * horizon_h
        soc_end = max(0.0, soc - 100.0 * spent_horizon / (self.battery.available_ah * 1000.0))
        reasons = (
            f"battery {self.battery.capacity_ah:g} Ah ({self.battery.available_ah:g} Ah at "
            f"{self.battery.temperature_c:g} °C) at {soc:.1f} %; cranking limit "
            f"{self.battery.crank_soc_pct:g} % + margin {p.critical_margin_pct:g} % "
            f"leaves {usable / 1000:.2f} Ah",
            f"self-discharge {sd_ma:.2f} mA-equivalent, the car's own draw {p.vehicle_quiescent_ma:g} mA "
            f"(policy), one watch phase {watch:.0f} mAh: the tracker may draw {budget_ma:.3f} mA "
            f"for {p.horizon_days:g} days",
            f"parked forecast: {forecast:.0f} days to the cranking limit, {soc_end:.1f} % at day "
            f"{p.horizon_days:g}",
        )
        return PlanSet(plans, soc, budget_ma, usable, sd_ma, forecast, soc_end, reasons)

    # ------------------------------------------------------------------ live use

    def mode_for(self, *, ignition_on: bool, parked_s: float, soc_pct: float | None = None) -> PowerMode:
        """The state to be in now."""
        soc = self.estimator.soc_pct if soc_pct is None else soc_pct
        if ignition_on:
            return PowerMode.DRIVING
        if soc <= self.battery.crank_soc_pct + self.policy.critical_margin_pct:
            return PowerMode.CRITICAL
        if parked_s < self.policy.watch_h * 3600.0:
            return PowerMode.PARKED_WATCH
        return PowerMode.PARKED_SLEEP

    def consume(self, mah: float, hours: float) -> None:
        """Tell the estimator what the ledger charged over `hours`."""
        self.estimator.consume(mah + self.policy.vehicle_quiescent_ma * hours, hours)

    def observe_rest(self, volts: float) -> bool:
        """A rested battery voltage; re-plans (True) when it shows a weaker battery than counted."""
        before = self.estimator.soc_pct
        if not self.estimator.observe_rest(volts):
            return False
        self.replans += 1
        plan = self.plan_all()
        note = (f"re-planned: a rested {volts:.2f} V means {self.estimator.soc_pct:.1f} %, "
                f"not the {before:.1f} % counted")
        self.current = replace(plan, reasons=(note, *plan.reasons))
        return True


def _seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
