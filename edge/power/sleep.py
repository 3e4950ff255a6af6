"""The SoC's sleep between planned wakes: the agent's "about to sleep" moment and its way back.

When the planner says PARKED_SLEEP and a wake has done its work (at least `min_awake_s`, and the
outbox delivered or `max_awake_s` spent trying), `Sleeper.step()`:
1. persists what the agent holds (open telemetry batch, held warnings, detector state, outbox
   synced to flash, the MCU log cursor);
2. hands the MCU its thresholds and the SLEEP request — the MCU takes the car's attitude now as
   its tilt reference (edge.power.mcuwatch); without an MCU that took both, the SoC stays awake,
   because nothing else would watch for a tow;
3. records the state change in the energy ledger (the sleep plan's part states);
4. suspends through the `SleepAction` until the next planned wake (or the MCU's GPIO wakes the
   SoC sooner) — on a board a command such as `rtcwake -m mem -s {seconds}`, in tests a fake
   that moves the injected clock;
5. on wake, charges the time a suspend hid from CLOCK_MONOTONIC, switches the ledger back to
   the awake states and reads the MCU's log at once.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from edge.power.manager import PowerManager
from edge.power.mcuwatch import McuWatch
from edge.power.planner import PowerMode
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError, LienwatchError

MIN_SLEEP_S = 60.0  # a shorter sleep costs more in wake-up than it saves
RETRY_S = 60.0  # after a refused or failed sleep, try again this much later
PLACEHOLDERS = ("seconds", "soc")


class SleepError(LienwatchError):
    """The sleep action failed (the command is missing or exited non-zero)."""


class SleepAction(Protocol):
    def __call__(self, seconds: float, soc: str) -> float:
        """Put the SoC to sleep (`soc`: "suspend" or "off") for about `seconds`; return when it is
        awake again, with the seconds slept that the agent's monotonic clock did not count."""
        ...


class CommandSleep:
    """Runs a command that suspends the SoC and returns after the wake (`rtcwake -m mem -s N`).

    The time asleep the monotonic clock missed is CLOCK_BOOTTIME's growth over CLOCK_MONOTONIC's
    while the command ran (both injectable)."""

    def __init__(self, argv: Sequence[str], *,
                 boottime_ns: Callable[[], int] = lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME),
                 monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if not argv:
            raise ConfigError("power.sleep.command must name a program")
        for arg in argv:
            try:
                arg.format(seconds=0, soc="suspend")
            except (KeyError, IndexError, ValueError) as error:
                raise ConfigError(f"power.sleep.command: {arg!r} has an unknown placeholder "
                                  f"({error}); known: {{seconds}}, {{soc}}") from None
        self.argv = tuple(argv)
        self._boottime_ns, self._monotonic_ns = boottime_ns, monotonic_ns

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> CommandSleep | None:
        command = str(values["power.sleep.command"])
        if not command.strip():
            return None
        try:
            argv = shlex.split(command)
        except ValueError as error:
            raise ConfigError(f"power.sleep.command: {error}") from None
        return cls(argv)

    def __call__(self, seconds: float, soc: str) -> float:
        argv = [arg.format(seconds=max(1, int(seconds)), soc=soc) for arg in self.argv]
        boot0, mono0 = self._boottime_ns(), self._monotonic_ns()
        try:
            done = subprocess.run(argv, capture_output=True, timeout=seconds + 300.0, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SleepError(f"power.sleep.command {argv[0]}: {error}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()[:200]
            raise SleepError(f"power.sleep.command {argv[0]} exited {done.returncode}: {detail}")
        unseen = (self._boottime_ns() - boot0) - (self._monotonic_ns() - mono0)
        return max(0.0, unseen / 1e9)


class Sleeper:
    """Decides when the SoC may sleep, prepares it, sleeps through `action`, resumes."""

    def __init__(self, action: SleepAction, power: PowerManager, mcu: McuWatch | None, clock: Clock,
                 persist: Callable[[], None], *, min_awake_s: float = 30.0,
                 max_awake_s: float = 300.0) -> None:
        self.action, self.power, self.mcu, self.clock = action, power, mcu, clock
        self.persist = persist
        self.min_awake_ns = round(min_awake_s * 1e9)
        self.max_awake_ns = round(max_awake_s * 1e9)
        self._woke_ns = clock.monotonic_ns()  # this awake period began (start or last wake)
        self._retry_ns = 0
        self.refused: dict[str, int] = {}
        self.last_refusal = ""
        self.failures = 0
        self.early_wakes = 0  # woken before the planned time (the MCU's GPIO)

    @classmethod
    def from_config(cls, values: Mapping[str, Any], power: PowerManager, mcu: McuWatch | None,
                    clock: Clock, persist: Callable[[], None],
                    action: SleepAction | None = None) -> Sleeper | None:
        """From `power.sleep.*`; None when no action is configured (the SoC never sleeps)."""
        action = action or CommandSleep.from_config(values)
        if action is None:
            return None
        return cls(action, power, mcu, clock, persist,
                   min_awake_s=float(values["power.sleep.min_awake_s"]),
                   max_awake_s=float(values["power.sleep.max_awake_s"]))

    def step(self, undelivered: int) -> bool:
        """Called once per run-loop tick; sleeps (and returns True after the wake) when due."""
        now = self.clock.monotonic_ns()
        if self.power.mode not in (PowerMode.PARKED_SLEEP, PowerMode.BACKUP):
            self._woke_ns = now  # a wake's window counts from the moment sleeping is planned
            return False
        awake_ns = now - self._woke_ns
        if now < self._retry_ns or awake_ns < self.min_awake_ns:
            return False
        if undelivered and awake_ns < self.max_awake_ns:
            return False  # give the uplink its chance; without coverage, sleep anyway (on flash)
        self.persist()
        if self.mcu is None:
            return self._refuse("no MCU configured ([power.mcu] device): nothing would watch", now)
        why = self.mcu.prepare_sleep()
        if why is not None:
            return self._refuse(why, now)
        plan = self.power.enter_sleep()
        assert plan.wake_interval_s is not None
        seconds = max(MIN_SLEEP_S, plan.wake_interval_s - awake_ns / 1e9)
        unseen, failed = 0.0, True
        try:
            unseen = self.action(seconds, plan.soc)
            failed = False
        except SleepError as error:
            self.failures += 1
            self.last_refusal = str(error)
            self._retry_ns = self.clock.monotonic_ns() + round(RETRY_S * 1e9)
        finally:
            self.power.leave_sleep(unseen, slept=not failed)
            self.mcu.woke()
        slept = (self.clock.monotonic_ns() - now) / 1e9 + unseen
        if not failed and slept < seconds - 1.0:
            self.early_wakes += 1
        self._woke_ns = self.clock.monotonic_ns()
        return True

    def _refuse(self, why: str, now: int) -> bool:
        key = why.split(":")[0]
        self.refused[key] = self.refused.get(key, 0) + 1
        self.last_refusal = why
        self._retry_ns = now + round(RETRY_S * 1e9)
        return False

    def snapshot(self) -> dict[str, object]:
        return {"sleeps": self.power.sleeps, "slept_s": round(self.power.slept_s, 1),
                "early_wakes": self.early_wakes, "failures": self.failures,
                "refused": dict(self.refused), "last_refusal": self.last_refusal}
