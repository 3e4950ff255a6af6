"""The agent's power bookkeeping: the current state, the ledger, the battery estimate, the plan.

The run loop calls `observe()` every tick with the ignition, the supply voltage and the uplink's
bytes sent today; every `account_interval_s` the manager charges CPU seconds (measured from the
process) and bytes to the ledger, follows ignition into DRIVING / PARKED_WATCH / PARKED_SLEEP /
CRITICAL, counts parked consumption against the battery estimate and hands rested voltages to
the planner (which re-plans if the battery is weaker than counted). The heartbeat reads
`wire_state`, `forecast_days` and `avg_current_ma`; the status file reads `snapshot()`.

While the agent runs the SoC is awake, so the ledger charges the awake states of the current
mode. When the SoC sleeps (edge.power.sleep), `enter_sleep()` switches the ledger to the sleep
plan's states and `leave_sleep()` back, charging the time a suspend hid from the clock and the
modem leaving its sleep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from edge.power.accounting import CpuSeconds, EnergyLedger
from edge.power.battery import LeadAcidBattery, LiIonCell
from edge.power.planner import Plan, Planner, Policy, PowerMode, SleepOptions
from edge.power.profile import PowerProfile, load_profile
from lienwatch.clock import Clock
from protocol.messages import PowerState

REST_AFTER_S = 4 * 3600.0  # a resting voltage is only one hours after the last load or charge
REST_READING_INTERVAL_S = 3600.0
FORECAST_MAX_DAYS = 36_500.0  # what the wire format carries
MIN_WINDOW_S = 60.0  # below this, the average is the plan's, not a measurement
SUPPLY_LOST_V = 5.25  # no 12 V system sags this far while connected (the unplug detector's level)


class PowerManager:
    """Fed once per agent tick; answers what the heartbeat and the status file say about power."""

    def __init__(self, profile: PowerProfile, clock: Clock, *, battery: LeadAcidBattery | None = None,
                 policy: Policy | None = None, cpu_seconds: CpuSeconds = time.process_time,
                 account_interval_s: float = 10.0) -> None:
        self.clock = clock
        self.planner = Planner(profile, policy, battery)
        self.ledger = EnergyLedger(profile, clock, states=self._states(PowerMode.PARKED_WATCH),
                                   cpu_seconds=cpu_seconds)
        self.mode: PowerMode | None = None  # unknown until the ignition is
        self.account_interval_ns = round(account_interval_s * 1e9)
        now = clock.monotonic_ns()
        self._next_account_ns = now
        self._parked_since_ns = now
        self._last_rest_ns: int | None = None
        self._bytes_today = 0
        self.supply_lost = False  # external supply below SUPPLY_LOST_V: on the backup cell
        self._accounted_mah = 0.0
        self._accounted_ns = now
        self._window = (now, 0.0)
        self.cell_soc_pct: float | None = None  # the backup cell, from its voltage
        self._backup = self.planner.current.plans[PowerMode.BACKUP]
        self._backup_soc = 100.0
        self.asleep = False
        self.sleeps = 0
        self.slept_s = 0.0
        self._slept_since_ns = now

    @classmethod
    def from_config(cls, values: Mapping[str, Any], clock: Clock) -> PowerManager:
        """From the agent config's `power.*` keys; ConfigError if the profile is bad."""
        profile = load_profile(str(values["power.profile"]))
        battery = LeadAcidBattery(capacity_ah=float(values["power.battery_capacity_ah"]),
                                  soc_pct=float(values["power.battery_soc_pct"]))
        policy = Policy(horizon_days=float(values["power.horizon_days"]),
                        vehicle_quiescent_ma=float(values["power.vehicle_quiescent_ma"]),
                        mcu_confirm_s=float(values["power.mcu.confirm_s"]))
        return cls(profile, clock, battery=battery, policy=policy)

    def _states(self, mode: PowerMode) -> dict[str, str]:
        if mode is PowerMode.DRIVING:
            gnss = "rtk" if self.planner.current.plans[PowerMode.DRIVING].gnss == "rtk" else "tracking"
            return {"soc": "active", "mcu": "run", "modem": "connected", "gnss": gnss, "can": "normal",
                    "accel": "active"}
        modem = "edrx" if mode is PowerMode.PARKED_WATCH else "connected"
        return self.planner.awake_states(modem=modem, gnss="backup")

    def observe(self, *, ignition: bool | None, supply_v: float | None, bytes_sent_today: int,
                backup_v: float | None = None) -> None:
        """One run-loop tick's worth of facts; cheap except once per `account_interval_s`."""
        now = self.clock.monotonic_ns()
        if supply_v is not None and math.isfinite(supply_v):
            self.supply_lost = supply_v < SUPPLY_LOST_V
        if backup_v is not None and math.isfinite(backup_v) and backup_v > 0:
            self.cell_soc_pct = LiIonCell.soc_from_voltage(backup_v)
        self._count_bytes(bytes_sent_today)
        if now < self._next_account_ns:
            return
        self._next_account_ns = now + self.account_interval_ns
        self.ledger.sample_cpu()
        spent = self.ledger.spent_mah
        hours = (now - self._accounted_ns) / 3.6e12
        if self.mode not in (None, PowerMode.DRIVING, PowerMode.BACKUP):
            # the alternator pays while driving, the tracker's own cell after an unplug
            self.planner.consume(spent - self._accounted_mah, hours)
        self._accounted_mah, self._accounted_ns = spent, now
        if ignition is None and self.mode is None:
            return
        on = self.mode is PowerMode.DRIVING if ignition is None else ignition  # unknown: as before
        if on or self.mode in (None, PowerMode.DRIVING):
            self._parked_since_ns = now  # driving, or the park starts now (ignition off, or first seen)
        parked_s = (now - self._parked_since_ns) / 1e9
        mode = PowerMode.BACKUP if self.supply_lost \
            else self.planner.mode_for(ignition_on=on, parked_s=parked_s)
        if mode is PowerMode.BACKUP:
            self._plan_backup()
        if mode is not self.mode:
            self.mode = mode
            self.ledger.set_states(self._states(mode))
            self._window = (now, spent)
        reading_due = self._last_rest_ns is None or now - self._last_rest_ns >= REST_READING_INTERVAL_S * 1e9
        rested = mode is not PowerMode.DRIVING and parked_s >= REST_AFTER_S and not self.supply_lost
        if rested and reading_due and supply_v is not None and math.isfinite(supply_v):
            self._last_rest_ns = now
            self.planner.observe_rest(supply_v)

    def _plan_backup(self) -> None:
        """The backup plan for the cell's charge as its voltage says (re-planned per whole %)."""
        soc = 100.0 if self.cell_soc_pct is None else self.cell_soc_pct
        if self._backup.endurance_h is None or abs(soc - self._backup_soc) >= 1.0:
            self._backup = self.planner.backup(soc)
            self._backup_soc = soc

    @property
    def plan(self) -> Plan | None:
        """The plan of the current state (the backup plan from the cell's measured charge)."""
        if self.mode is None:
            return None
        return self._backup if self.mode is PowerMode.BACKUP else self.planner.current.plans[self.mode]

    def enter_sleep(self) -> Plan:
        """The SoC goes down now: the ledger holds the sleep states of the current plan (PARKED_SLEEP
        or BACKUP); that plan."""
        plan = self.plan if self.mode is PowerMode.BACKUP and self.plan is not None \
            else self.planner.current.plans[PowerMode.PARKED_SLEEP]
        self.ledger.set_states(self.planner.sleep_states(SleepOptions(plan.soc, plan.modem,
                                                                      plan.gnss_standby)))
        self.asleep = True
        self._slept_since_ns = self.clock.monotonic_ns()
        return plan

    def leave_sleep(self, unseen_s: float = 0.0, *, slept: bool = True) -> None:
        """The SoC is up again; `unseen_s`: sleep the monotonic clock did not count (a suspend);
        `slept` False: the sleep action failed, the SoC never went down."""
        if not self.asleep:
            return
        plan = self.plan if self.mode is PowerMode.BACKUP and self.plan is not None \
            else self.planner.current.plans[PowerMode.PARKED_SLEEP]
        self.ledger.hold_unseen(unseen_s)
        unseen_ns = round(unseen_s * 1e9)
        self._parked_since_ns -= unseen_ns  # the park went on while the clock stood still
        self._accounted_ns -= unseen_ns
        self._window = (self._window[0] - unseen_ns, self._window[1])
        self.slept_s += (self.clock.monotonic_ns() - self._slept_since_ns) / 1e9 + unseen_s
        self.sleeps += int(slept)
        self.asleep = False
        self.ledger.set_states(self._states(self.mode or PowerMode.PARKED_SLEEP))
        self.ledger.charge_attach(from_psm=plan.modem != "off")  # the modem leaves its sleep

    def _count_bytes(self, bytes_today: int) -> None:
        delta = bytes_today if bytes_today < self._bytes_today else bytes_today - self._bytes_today
        self._bytes_today = bytes_today  # the uplink's counter restarts at each UTC day
        if delta > 0:
            self.ledger.charge_bytes(delta)

    # ------------------------------------------------------------------ answers

    @property
    def wire_state(self) -> PowerState:
        if self.supply_lost:
            return PowerState.BACKUP_BATTERY  # unplugged: the tracker's own cell, whatever the plan
        if self.plan is None:
            return PowerState.UNKNOWN
        return self.plan.wire_state

    def avg_current_ma(self) -> float | None:
        """Measured average since the current state began (the plan's until a minute has passed);
        on the backup cell, the backup plan's current at the cell."""
        if self.mode is None:
            return None
        if self.mode is PowerMode.BACKUP:
            return self._backup.avg_current_ma
        start_ns, start_mah = self._window
        seconds = (self.clock.monotonic_ns() - start_ns) / 1e9
        if seconds < MIN_WINDOW_S:
            return self.planner.current.plans[self.mode].avg_current_ma
        return (self.ledger.spent_mah - start_mah) / (seconds / 3600.0)

    def forecast_days(self) -> float | None:
        """Days to the cranking limit if parked from now, at the planned duty cycle; on the backup
        cell, days until it is empty at the backup plan."""
        if self.mode is PowerMode.BACKUP:
            hours = self._backup.endurance_h
            return None if hours is None or not math.isfinite(hours) \
                else min(hours / 24.0, FORECAST_MAX_DAYS)
        days = self.planner.current.forecast_days
        return None if not math.isfinite(days) else min(days, FORECAST_MAX_DAYS)

    def snapshot(self) -> dict[str, Any]:
        plans = self.planner.current
        avg = self.avg_current_ma()
        backup = self._backup
        return {
            "state": self.mode.value if self.mode else "unknown",
            "wire_state": self.wire_state.name,
            "soc_pct": round(self.planner.estimator.soc_pct, 2),
            "forecast_days": None if (days := self.forecast_days()) is None else round(days, 1),
            "avg_current_ma": None if avg is None else round(avg, 3),
            "budget_ma": round(plans.budget_ma, 3),
            "replans": self.planner.replans,
            "backup": {"cell_soc_pct": None if self.cell_soc_pct is None else round(self.cell_soc_pct, 1),
                       "position_interval_s": backup.position_interval_s,
                       "cell_ma": round(backup.avg_current_ma, 3),
                       "lasts_h": None if backup.endurance_h is None else round(backup.endurance_h, 1)},
            "sleeps": self.sleeps,
            "slept_s": round(self.slept_s, 1),
            "profile": self.planner.profile.name,
            "ledger": self.ledger.snapshot(),
        }
