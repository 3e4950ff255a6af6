"""Energy accounting: every state change, GNSS fix, byte sent and CPU second, charged in mAh.

The ledger holds one state per part (see profile.PARTS) and integrates the battery current of
that combination over time on the injected clock; events (a duty-cycled GNSS fix, an attach, a
kB sent, CPU seconds) add their energy on top. CPU time is measured from the process through an
injectable `CpuSeconds` source (default `time.process_time`: all threads, user + system), never
assumed. `spent_mah`, `average_ma()` and `forecast_days()` answer "what have we spent, what is
left".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edge.power.profile import PARTS, PowerProfile, ProfileError
from lienwatch.clock import Clock

CpuSeconds = Callable[[], float]

SLEEP_STATES: Mapping[str, str] = {"soc": "off", "mcu": "stop", "modem": "psm", "gnss": "backup",
                                   "can": "sleep", "accel": "wake_on_motion"}


@dataclass
class Breakdown:
    """mAh spent per part state time and per event kind."""

    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    events: dict[str, float] = field(default_factory=dict)

    def total(self) -> float:
        return sum(self.parts.values()) + sum(self.events.values())


class EnergyLedger:
    """Charges the tracker's consumption to the battery budget, in mAh at the nominal supply."""

    def __init__(self, profile: PowerProfile, clock: Clock, *, states: Mapping[str, str] | None = None,
                 cpu_seconds: CpuSeconds = time.process_time) -> None:
        self.profile = profile
        self.clock = clock
        self.states = dict(SLEEP_STATES if states is None else states)
        self._check(self.states)
        self._cpu_seconds = cpu_seconds
        self._cpu_last = cpu_seconds()
        self._started_ns = self._last_ns = clock.monotonic_ns()
        self.breakdown = Breakdown()
        self.counts: dict[str, int] = {"fixes": 0, "bytes": 0, "attaches": 0, "psm_wakes": 0,
                                       "state_changes": 0}
        self.cpu_s = 0.0

    def _check(self, states: Mapping[str, str]) -> None:
        for part, state in states.items():
            if part not in self.profile.parts:
                raise ProfileError(f"no part {part!r} in profile {self.profile.name}")
            self.profile.parts[part].ma(state)
        missing = set(PARTS) - set(states)
        if missing:
            raise ProfileError(f"ledger states lack {', '.join(sorted(missing))}")

    # ------------------------------------------------------------------ integration

    def _settle(self) -> None:
        """Charge the time since the last call in the current states."""
        now = self.clock.monotonic_ns()
        hours = (now - self._last_ns) / 3.6e12
        self._last_ns = now
        self._charge_hours(hours)

    def hold_unseen(self, seconds: float) -> None:
        """Charge `seconds` the clock did not see in the current states (a suspend: Linux's
        CLOCK_MONOTONIC stops while the SoC is suspended, CLOCK_BOOTTIME does not)."""
        if not seconds >= 0:
            raise ValueError(f"unseen seconds must be >= 0, got {seconds}")
        self._settle()
        self._started_ns -= round(seconds * 1e9)  # the average covers the unseen time too
        self._charge_hours(seconds / 3600.0)

    def _charge_hours(self, hours: float) -> None:
        if hours <= 0:
            return
        # Split the battery current by part in proportion to each part's share of it.
        total_ma = self.profile.battery_ma(self.states)
        rail_mw = {p: self.profile.parts[p].ma(s) * self.profile.parts[p].rail_v
                   for p, s in self.states.items() if not self.profile.parts[p].direct}
        regulated_ma = self.profile.rail_to_battery_ma(sum(rail_mw.values()))
        total_rail = sum(rail_mw.values())
        for part, state in self.states.items():
            p = self.profile.parts[part]
            if p.direct:
                share = p.ma(state)
            else:
                share = regulated_ma * rail_mw[part] / total_rail if total_rail else 0.0
            self.breakdown.parts[part] += share * hours
        quiescent = total_ma - regulated_ma - sum(self.profile.parts[p].ma(s) for p, s in self.states.items()
                                                  if self.profile.parts[p].direct)
        self._event("regulator", quiescent * hours)

    def set_state(self, part: str, state: str) -> None:
        """Change one part's state (what was drawn until now is charged first)."""
        self.set_states({part: state})

    def set_states(self, states: Mapping[str, str]) -> None:
        merged = {**self.states, **states}
        self._check(merged)
        self._settle()
        changed = sum(1 for p, s in states.items() if self.states[p] != s)
        self.counts["state_changes"] += changed
        self.states = merged

    # ------------------------------------------------------------------ events

    def _event(self, kind: str, mah: float) -> None:
        self.breakdown.events[kind] = self.breakdown.events.get(kind, 0.0) + mah

    def charge_fix(self, start: str = "hot") -> float:
        """One duty-cycled GNSS fix (receiver on for its TTFF at acquisition current); its mAh."""
        t = self.profile.timings
        seconds = {"hot": t.gnss_ttff_hot_s, "cold": t.gnss_ttff_cold_s,
                   "rtk": t.gnss_ttff_hot_s + t.gnss_rtk_convergence_s}.get(start)
        if seconds is None:
            raise ValueError(f"fix start must be hot, cold or rtk, got {start!r}")
        mah = self.profile.event_mah(self.profile.part_mj("gnss", "acquisition", seconds))
        self._event("gnss_fix", mah)
        self.counts["fixes"] += 1
        return mah

    def charge_bytes(self, n: int) -> float:
        """Bytes sent over the modem."""
        if n < 0:
            raise ValueError(f"bytes sent must be >= 0, got {n}")
        mah = self.profile.event_mah(self.profile.timings.modem_kb_mj * n / 1000.0)
        self._event("bytes_sent", mah)
        self.counts["bytes"] += n
        return mah

    def charge_attach(self, from_psm: bool = True) -> float:
        """The modem leaving PSM (RRC setup + TAU), or a full attach from off."""
        t = self.profile.timings
        mah = self.profile.event_mah(t.modem_psm_wake_mj if from_psm else t.modem_attach_mj)
        self._event("modem_attach", mah)
        self.counts["psm_wakes" if from_psm else "attaches"] += 1
        return mah

    def sample_cpu(self) -> float:
        """Charge the process's CPU seconds since the last sample (over the SoC's idle draw)."""
        now = self._cpu_seconds()
        busy = max(0.0, now - self._cpu_last)
        self._cpu_last = now
        self.cpu_s += busy
        p = self.profile
        mah = p.event_mah(p.timings.soc_busy_extra_ma * p.parts["soc"].rail_v * busy)
        self._event("cpu", mah)
        return mah

    # ------------------------------------------------------------------ answers

    @property
    def spent_mah(self) -> float:
        self._settle()
        return self.breakdown.total()

    @property
    def elapsed_h(self) -> float:
        return (self.clock.monotonic_ns() - self._started_ns) / 3.6e12

    def average_ma(self) -> float:
        """Average battery current since the ledger started (mA at the nominal supply)."""
        hours = self.elapsed_h
        return self.spent_mah / hours if hours > 0 else self.profile.battery_ma(self.states)

    def forecast_days(self, remaining_mah: float, draw_ma: float | None = None) -> float:
        """Days `remaining_mah` lasts at `draw_ma` (default: the average so far)."""
        draw = self.average_ma() if draw_ma is None else draw_ma
        if draw <= 0:
            return float("inf")
        return max(0.0, remaining_mah) / draw / 24.0

    def snapshot(self) -> dict[str, object]:
        spent = self.spent_mah
        return {"spent_mah": round(spent, 3), "average_ma": round(self.average_ma(), 4),
                "cpu_s": round(self.cpu_s, 3), "states": dict(self.states), "counts": dict(self.counts),
                "by_part_mah": {k: round(v, 3) for k, v in self.breakdown.parts.items()},
                "by_event_mah": {k: round(v, 3) for k, v in self.breakdown.events.items()}}
