"""The starter interrupt: armed by a signed command, engaged only while the car is parked.

States (protocol `InterruptState`): RELEASED → (arm) → ARMED → (parked for `hold_s`) → ENGAGED;
release from any state → RELEASED; a valid emergency code → OVERRIDDEN for `override_s`, then
ARMED again. The relay output is active only in ENGAGED. The interlocks (docs/actuators.md):

1. Engage only with positive evidence of a parked car, all of it at once, held for `hold_s`:
   ignition known OFF, no fresh engine speed above 0, the last CAN vehicle speed the bus said is 0,
   and a fresh GNSS fix slower than `walking_kmh`. Anything unknown counts as "not parked".
2. A running car stays running: arming while driving only arms; while ENGAGED, any sign of a
   running or moving car (engine speed, CAN speed, GNSS speed) drops the output at once (ARMED).
3. At start (reboot, power back) the output is driven inactive before anything else: the agent
   cannot know yet whether the engine runs. `on_reboot = "rearm"` resumes an armed interrupt as
   ARMED (it engages again only after a new parked hold), `"release"` drops it.
4. With `on_power_loss = "release_output"` a lost external supply drops the output (ARMED) and
   keeps it from engaging until the supply is back (the coil would drain the backup battery).
5. Every change and every refusal is an `InterruptEvent` with its evidence.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.actuators.output import DigitalOutput, OutputError
from lienwatch.clock import Clock
from protocol.messages import InterruptState
from protocol.override import match_counter

log = logging.getLogger("lienwatch.actuators")

STATE_FILE = "starter_interrupt.json"
ENGAGE_RETRY_NS = 60 * 10**9  # after a relay that did not read back, try again this much later


@dataclass(frozen=True, slots=True)
class VehicleReading:
    """What the agent knows of the vehicle right now (None: not known, or too old to trust)."""

    ignition_on: bool | None = None
    engine_rpm: float | None = None  # fresh engine speed; None when the ECU is silent
    can_speed_kmh: float | None = None  # the last vehicle speed the bus said (a parked bus sleeps)
    gnss_speed_kmh: float | None = None  # speed of a fresh GNSS fix; None without a fresh fix
    external_power: bool | None = None  # the vehicle's 12 V supply reaches the tracker

    def evidence(self) -> dict[str, float]:
        """The known values as event features (booleans as 0/1)."""
        out: dict[str, float] = {}
        for name, value in (("ignition_on", self.ignition_on), ("engine_rpm", self.engine_rpm),
                            ("can_speed_kmh", self.can_speed_kmh), ("gnss_speed_kmh", self.gnss_speed_kmh),
                            ("external_power", self.external_power)):
            if value is not None:
                out[name] = float(value)
        return out


@dataclass(frozen=True, slots=True)
class InterruptSettings:
    hold_s: float = 30.0  # parked this long (all interlocks true, continuously) before engaging
    walking_kmh: float = 4.0  # GNSS speed below this counts as standing (parked GNSS drifts ~1-2 km/h)
    on_reboot: str = "rearm"  # "rearm" | "release": what an armed interrupt becomes after a restart
    on_power_loss: str = "release_output"  # "release_output" | "hold"
    override_s: float = 86400.0  # an emergency code releases the starter this long
    override_uses: int = 2  # valid codes accepted per period
    override_period_s: float = 30 * 86400.0
    override_look_ahead: int = 10  # codes issued but never typed that may be skipped
    max_wrong_codes: int = 5  # wrong codes per hour before codes are refused for the hour


@dataclass(frozen=True, slots=True)
class InterruptEvent:
    """One change or refusal, for the uplink: `kind` is the event's condition."""

    kind: str  # armed, engaged, released, dropped, rearmed, overridden, override_ended, refused, fault
    state: InterruptState
    detail: str
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a command or a code did: the state afterwards and why (for the ack)."""

    state: InterruptState
    detail: str
    refused: bool = False


def not_parked(reading: VehicleReading, settings: InterruptSettings) -> str | None:
    """Why the car does not count as parked, or None when every interlock says parked."""
    if reading.ignition_on is None:
        return "ignition unknown"
    if reading.ignition_on:
        return "ignition on"
    if reading.engine_rpm is not None and reading.engine_rpm > 0:
        return f"engine turning ({reading.engine_rpm:.0f} rpm)"
    if reading.can_speed_kmh is None:
        return "no CAN vehicle speed known"
    if reading.can_speed_kmh > 0:
        return f"CAN speed {reading.can_speed_kmh:.1f} km/h"
    if reading.gnss_speed_kmh is None:
        return "no fresh GNSS fix"
    if reading.gnss_speed_kmh >= settings.walking_kmh:
        return f"GNSS speed {reading.gnss_speed_kmh:.1f} km/h"
    if reading.external_power is False and settings.on_power_loss == "release_output":
        return "external power lost"
    return None


def running(reading: VehicleReading, settings: InterruptSettings) -> str | None:
    """Evidence that the engine runs or the car moves (an engaged output must drop), or None."""
    if reading.engine_rpm is not None and reading.engine_rpm > 0:
        return f"engine turning ({reading.engine_rpm:.0f} rpm)"
    if reading.can_speed_kmh is not None and reading.can_speed_kmh > 0:
        return f"CAN speed {reading.can_speed_kmh:.1f} km/h"
    if reading.gnss_speed_kmh is not None and reading.gnss_speed_kmh >= settings.walking_kmh:
        return f"GNSS speed {reading.gnss_speed_kmh:.1f} km/h"
    return None


class StarterInterrupt:
    """The state machine; `update(reading)` once per agent tick, commands and codes in between.

    Persistent state (`state_dir/starter_interrupt.json`, fsynced on every change): whether it is
    armed, the override window, the uses of codes in the period, the next HOTP counter.
    """

    def __init__(self, output: DigitalOutput, clock: Clock, state_dir: Path,
                 settings: InterruptSettings | None = None, *,
                 on_event: Callable[[InterruptEvent], None] | None = None,
                 override_secret: bytes | None = None) -> None:
        self.output = output
        self.clock = clock
        self.settings = settings or InterruptSettings()
        self.state_file = state_dir / STATE_FILE
        self.on_event = on_event or (lambda event: None)
        self.override_secret = override_secret
        self.state = InterruptState.RELEASED
        self.override_until_ns = 0  # wall clock: survives a reboot
        self.override_uses_ns: list[int] = []  # wall times of accepted codes (within the period)
        self.wrong_codes_ns: list[int] = []
        self.next_counter = 0
        self.parked_since_ns: int | None = None  # monotonic, while every interlock says parked
        self._engage_fault_ns: int | None = None  # the relay failed to engage: retry a minute later
        self.waiting_for = "no reading yet"
        self._last = VehicleReading()
        self._start()

    # ------------------------------------------------------------------ start / persistence

    def _start(self) -> None:
        # Interlock 3: the output is inactive before anything else happens.
        self._drive(False, "start")
        armed = self._load()
        now = self.clock.wall_ns()
        if not armed:
            return
        if self.settings.on_reboot == "release":
            self.state = InterruptState.RELEASED
            self._save()
            self._emit("released", "released at start (on_reboot = release): a new arm command is needed")
            return
        if self.override_until_ns > now:
            self.state = InterruptState.OVERRIDDEN
            self._emit("rearmed", "armed before the restart; the emergency override still runs")
            return
        self.state = InterruptState.ARMED
        self._emit("rearmed", "armed before the restart: engages again only after a new parked hold")

    def _load(self) -> bool:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            armed = data["armed"]
            until, uses, wrong, counter = (data["override_until_ns"], data["override_uses_ns"],
                                           data["wrong_codes_ns"], data["next_counter"])
            if (type(armed) is not bool or type(until) is not int or type(counter) is not int or counter < 0
                    or not all(type(t) is int for t in [*uses, *wrong])):
                raise ValueError("a value of the wrong type")
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError) as error:
            # Unknown whether it was armed: start released (never immobilise on a guess) and say so.
            log.error("starter interrupt state unreadable; starting released", extra={"detail": str(error)})
            os.replace(self.state_file, self.state_file.with_suffix(".rejected"))
            self._emit("fault", f"state file unreadable ({type(error).__name__}); started released, "
                                "arm again if it was armed")
            return False
        self.override_until_ns, self.override_uses_ns, self.wrong_codes_ns = until, list(uses), list(wrong)
        self.next_counter = counter
        return armed

    def _save(self) -> None:
        data = {"armed": self.state is not InterruptState.RELEASED,
                "override_until_ns": self.override_until_ns, "override_uses_ns": self.override_uses_ns,
                "wrong_codes_ns": self.wrong_codes_ns, "next_counter": self.next_counter}
        tmp = self.state_file.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_file)

    # ------------------------------------------------------------------ helpers

    def _emit(self, kind: str, detail: str, evidence: dict[str, float] | None = None) -> None:
        features = evidence if evidence is not None else self._last.evidence()
        event = InterruptEvent(kind, self.state, detail, features)
        log.warning("starter interrupt", extra={"kind": kind, "state": self.state.name, "detail": detail})
        self.on_event(event)

    def _drive(self, active: bool, why: str) -> bool:
        """Set the relay; False (and a fault event) if the line does not hold the level."""
        try:
            self.output.set(active)
        except OutputError as error:
            self._emit("fault", f"{why}: {error}")
            return False
        return True

    def _parked_for_s(self) -> float:
        since = self.parked_since_ns
        return 0.0 if since is None else (self.clock.monotonic_ns() - since) / 1e9

    # ------------------------------------------------------------------ commands

    def arm(self) -> Answer:
        """A verified ArmStarterInterrupt: ARMED, or ENGAGED at once if already parked long enough."""
        if self.state is InterruptState.OVERRIDDEN:
            left_s = (self.override_until_ns - self.clock.wall_ns()) / 1e9
            return Answer(self.state, f"armed; an emergency override runs for {left_s:.0f} s more, then it "
                                      "engages once parked")
        if self.state is InterruptState.ENGAGED:
            return Answer(self.state, "already engaged")
        if self.state is InterruptState.RELEASED:
            self.state = InterruptState.ARMED
            self._save()
            self._emit("armed", f"armed by command; waits for: {self.waiting_for}"
                       if self.waiting_for else "armed by command")
        self._evaluate()
        if self.state is InterruptState.ENGAGED:
            return Answer(self.state, f"engaged: parked for {self._parked_for_s():.0f} s")
        return Answer(self.state, f"armed; engages when parked (now: {self.waiting_for})")

    def release(self) -> Answer:
        """A verified ReleaseStarterInterrupt: the output drops, whatever the state was."""
        before = self.state
        ok = self._drive(False, "release")
        self.state = InterruptState.RELEASED
        self.override_until_ns = 0
        self._save()
        if before is not InterruptState.RELEASED:
            self._emit("released", f"released by command (was {before.name})")
        if not ok:
            return Answer(self.state, "released, but the relay output did not read back inactive",
                          refused=True)
        return Answer(self.state, f"released (was {before.name})")

    def note_refused(self, detail: str) -> None:
        """A command for the interrupt that the agent refused (signature, expiry, replay): an event."""
        self._emit("refused", detail)

    def enter_code(self, code: str) -> Answer:
        """A borrower's emergency code: OVERRIDDEN for `override_s`, limited uses per period."""
        settings = self.settings
        now = self.clock.wall_ns()
        hour_ago = now - 3600 * 10**9
        self.wrong_codes_ns = [t for t in self.wrong_codes_ns if t > hour_ago]
        period_start = now - int(settings.override_period_s * 1e9)
        self.override_uses_ns = [t for t in self.override_uses_ns if t > period_start]
        reason: str | None = None
        if self.override_secret is None:
            reason = "emergency codes are not set up on this device"
        elif self.state is InterruptState.RELEASED:
            reason = "the starter interrupt is not armed"
        elif self.state is InterruptState.OVERRIDDEN:
            reason = "an emergency override already runs"
        elif len(self.wrong_codes_ns) >= settings.max_wrong_codes:
            reason = f"{len(self.wrong_codes_ns)} wrong codes in the last hour; try again later"
        elif len(self.override_uses_ns) >= settings.override_uses:
            reason = (f"emergency codes already used {len(self.override_uses_ns)} times in the last "
                      f"{settings.override_period_s / 86400:.0f} days")
        counter = None
        if reason is None and self.override_secret is not None:
            counter = match_counter(self.override_secret, code, self.next_counter,
                                    settings.override_look_ahead)
            if counter is None:
                self.wrong_codes_ns.append(now)
                reason = "wrong or already used code"
        if reason is not None or counter is None:
            if self.state is not InterruptState.RELEASED:
                self._save()  # wrong codes count across a reboot too
            text = reason or "refused"
            self._emit("refused", f"emergency code refused: {text}")
            return Answer(self.state, text, refused=True)
        self.next_counter = counter + 1
        self.override_uses_ns.append(now)
        self.override_until_ns = now + int(settings.override_s * 1e9)
        self._drive(False, "emergency override")
        self.state = InterruptState.OVERRIDDEN
        self._save()
        left = settings.override_uses - len(self.override_uses_ns)
        self._emit("overridden", f"emergency code {counter} accepted: starter released for "
                                 f"{settings.override_s / 3600:.0f} h ({left} use(s) left in the period)",
                   {**self._last.evidence(), "code_counter": float(counter), "uses_left": float(left)})
        return Answer(self.state, f"released for {settings.override_s / 3600:.0f} h")

    # ------------------------------------------------------------------ the tick

    def update(self, reading: VehicleReading) -> None:
        """Follow the vehicle: keep the parked hold, engage, drop, end an override."""
        self._last = reading
        self.waiting_for = not_parked(reading, self.settings) or ""
        if self.waiting_for:
            self.parked_since_ns = None
        elif self.parked_since_ns is None:
            self.parked_since_ns = self.clock.monotonic_ns()
        self._evaluate()

    def _evaluate(self) -> None:
        settings, reading = self.settings, self._last
        if self.state is InterruptState.OVERRIDDEN and self.clock.wall_ns() >= self.override_until_ns:
            self.state = InterruptState.ARMED
            self.override_until_ns = 0
            self._save()
            self._emit("override_ended", "the emergency override ended: armed, engages once parked")
        if self.state is InterruptState.ENGAGED:
            moving = running(reading, settings)
            power_lost = reading.external_power is False and settings.on_power_loss == "release_output"
            if moving is None and power_lost:
                moving = "external power lost"
            if moving is not None:
                self._drive(False, "drop")
                self.state = InterruptState.ARMED
                self._emit("dropped", f"output released: {moving}; engages again once parked")
            return
        if self.state is not InterruptState.ARMED or self.waiting_for:
            return
        held_s = self._parked_for_s()
        if held_s < settings.hold_s:
            self.waiting_for = f"parked {held_s:.0f} of {settings.hold_s:.0f} s"
            return
        now = self.clock.monotonic_ns()
        if self._engage_fault_ns is not None and now - self._engage_fault_ns < ENGAGE_RETRY_NS:
            self.waiting_for = "relay output fault; retrying"
            return
        if self._drive(True, "engage"):
            self._engage_fault_ns = None
            self.state = InterruptState.ENGAGED
            self._emit("engaged", f"engaged: parked for {held_s:.0f} s (ignition off, no speed)",
                       {**reading.evidence(), "parked_s": round(held_s, 1)})
        else:
            self._engage_fault_ns = now
            self._drive(False, "engage failed")

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state.name, "waiting_for": self.waiting_for,
                "parked_s": round(self._parked_for_s(), 1), "override_until_ns": self.override_until_ns,
                "override_uses_in_period": len(self.override_uses_ns), "output_active": self._output_active()}

    def _output_active(self) -> bool | None:
        try:
            return self.output.get()
        except OutputError:
            return None
