"""Which NMEA sentences are worth decoding: the slow ones about once per interval.

A 10 Hz receiver repeats GSA (one per constellation), GST, VTG and often GSV and ZDA every epoch,
but what they carry (2D/3D mode and DOP, accuracy, satellites and C/N0, the date) changes slowly,
and parsing them was most of the GNSS source's CPU. `SlowSentenceThrottle.admit(kind)` decides
from the sentence type alone, before any field is decoded (checksums are still verified first):

- RMC and GGA (position, time, speed/course, RTK quality; they also delimit epochs and discipline
  the clock) are always parsed.
- GSA, GSV, GST and ZDA are parsed when their type was last parsed at least `interval_s` before
  the current epoch. The decision is made once per type and epoch: all GSAs of an epoch (one
  per constellation) and every part of its GSV cycles are parsed together, or none is.
- VTG repeats RMC's speed and course, and the epoch assembler prefers RMC's: it is skipped when
  the epoch's RMC carried both, and parsed otherwise (a receiver without RMC, or with empty fields).

The epoch is the UTC time of day of the last RMC/GGA, so the interval is measured in the
receiver's own epoch time: a type the receiver sends exactly once per interval (GSV at 1 Hz) is
never skipped, which arrival times measured by polling (jittering by a poll period) could not
promise. Epochs without a time (a receiver that does not know it yet) fall back to the injected
clock. `interval_s = 0` admits everything.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping

from lienwatch.clock import Clock
from lienwatch.errors import ConfigError

ALWAYS_PARSED = frozenset({"RMC", "GGA", "GLL"})
SLOW = frozenset({"GSA", "GSV", "GST", "ZDA"})
_DAY_MS = 86_400_000

# An epoch: (True, ms of the UTC day) from the receiver, or (False, ms of the injected monotonic clock).
Epoch = tuple[bool, int]


def check_interval(interval_s: object, where: str) -> float:
    """`interval_s` as a float if it is a finite number >= 0, else `ConfigError` naming `where`."""
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
        raise ConfigError(f"{where} must be a number of seconds >= 0, got {interval_s!r}")
    value = float(interval_s)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a finite number of seconds >= 0 (0 = parse every sentence), "
                          f"got {interval_s!r}")
    return value


class SlowSentenceThrottle:
    """Admits RMC/GGA always, VTG when RMC lacked speed/course, other slow types once per interval."""

    def __init__(self, interval_s: float, clock: Clock) -> None:
        self.interval_ms = check_interval(interval_s, "slow_sentence_interval_s") * 1000.0
        self.clock = clock
        self._epoch: Epoch | None = None
        self._window: dict[str, Epoch] = {}  # type → the epoch it was last admitted in
        self._rmc_motion: Epoch | None = None  # the epoch whose RMC carried speed and course
        self._admit: dict[str, Callable[[str], bool]] = {
            **dict.fromkeys(ALWAYS_PARSED, _always),
            **dict.fromkeys(SLOW, self._slow),
            "VTG": self._vtg,
        }

    def admit(self, kind: str) -> bool:
        """Whether a sentence of this type (`GSA`), about to be parsed, is worth parsing."""
        if self.interval_ms <= 0:
            return True
        return self._admit.get(kind, _always)(kind)

    def observe(self, kind: str, msg: Mapping[str, object]) -> None:
        """Learn the epoch from a parsed RMC/GGA (its decoded fields); other types are ignored."""
        if kind not in ALWAYS_PARSED:
            return
        time_of_day = msg.get("time")
        if isinstance(time_of_day, dt.time):
            ms = ((time_of_day.hour * 60 + time_of_day.minute) * 60 + time_of_day.second) * 1000
            self._epoch = (True, ms + time_of_day.microsecond // 1000)
        else:
            self._epoch = (False, self.clock.monotonic_ns() // 1_000_000)
        if kind == "RMC":
            moving = msg.get("spd") is not None and msg.get("cog") is not None
            self._rmc_motion = self._epoch if moving else None

    def _slow(self, kind: str) -> bool:
        epoch = self._epoch
        if epoch is None:  # no RMC/GGA yet: nothing to measure the interval against
            return True
        last = self._window.get(kind)
        if last == epoch:  # the window of this epoch is open: the rest of the group
            return True
        if last is None or last[0] != epoch[0] or self._elapsed_ms(last, epoch) >= self.interval_ms:
            self._window[kind] = epoch
            return True
        return False

    def _vtg(self, kind: str) -> bool:
        return self._epoch is None or self._rmc_motion != self._epoch

    @staticmethod
    def _elapsed_ms(last: Epoch, now: Epoch) -> int:
        if now[0]:  # time of day: across midnight, and a receiver or a replay going back, count forward
            return (now[1] - last[1]) % _DAY_MS
        return now[1] - last[1]


def _always(kind: str) -> bool:
    return True
