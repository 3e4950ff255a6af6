"""The actuators as the agent runs them: built from `actuators.*` config, fed one reading per tick.

`Actuators.execute(action)` runs a verified ArmStarterInterrupt / ReleaseStarterInterrupt /
PaymentReminder and says what to acknowledge; `tick(reading, wall_ns)` follows the vehicle and
picks up an emergency code typed on the device (`lienwatch edge override CODE` writes it to
`state_dir/override_code`, which is read and removed once per tick; a keypad or SMS bridge on a
gateway writes the same file). Changes come out through `on_event` as `InterruptEvent`s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.actuators.buzzer import CODE_ACCEPTED, CODE_REFUSED, BuzzerPlayer, PaymentReminders
from edge.actuators.interrupt import InterruptEvent, InterruptSettings, StarterInterrupt, VehicleReading
from edge.actuators.output import open_output
from edge.sources.base import Sample
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog
from protocol.errors import ProtocolError
from protocol.messages import (
    AckStatus,
    ArmStarterInterrupt,
    CommandAction,
    FixType,
    GnssFix,
    InterruptState,
    PaymentReminder,
    ReleaseStarterInterrupt,
)
from protocol.override import load_secret

log = logging.getLogger("lienwatch.actuators")

CODE_FILE = "override_code"
ACTIONS = (ArmStarterInterrupt, ReleaseStarterInterrupt, PaymentReminder)


@dataclass(frozen=True, slots=True)
class Result:
    """What to acknowledge for an actuator action."""

    status: AckStatus
    detail: str
    interrupt: InterruptState | None = None


class Actuators:
    """The starter interrupt and the buzzer of one gateway (either may be absent)."""

    def __init__(self, clock: Clock, state_dir: Path, *, interrupt: StarterInterrupt | None,
                 buzzer: BuzzerPlayer | None, walking_kmh: float = 4.0) -> None:
        self.clock = clock
        self.state_dir = state_dir
        self.interrupt = interrupt
        self.buzzer = buzzer
        self.reminders = None if buzzer is None else PaymentReminders(buzzer, clock, state_dir,
                                                                      walking_kmh=walking_kmh)
        self.code_file = state_dir / CODE_FILE

    @classmethod
    def from_config(cls, values: Mapping[str, Any], clock: Clock, state_dir: Path,
                    on_event: Callable[[InterruptEvent], None]) -> Actuators:
        """From the validated `actuators.*` keys (docs/actuators.md)."""
        prefix = "actuators.starter_interrupt."
        settings = InterruptSettings(
            hold_s=float(values[prefix + "hold_s"]), walking_kmh=float(values[prefix + "walking_kmh"]),
            on_reboot=str(values[prefix + "on_reboot"]), on_power_loss=str(values[prefix + "on_power_loss"]),
            override_s=float(values["actuators.override.duration_s"]),
            override_uses=int(values["actuators.override.uses_per_period"]),
            override_period_s=float(values["actuators.override.period_days"]) * 86400.0)
        relay = open_output(str(values[prefix + "output"]), prefix + "output",
                            bool(values[prefix + "active_low"]))
        secret_file = str(values["actuators.override.secret_file"])
        secret = None
        if secret_file:
            try:
                secret = load_secret(Path(secret_file))
            except ProtocolError as error:
                raise ConfigError(f"actuators.override.secret_file: {error}") from None
        interrupt = None if relay is None else StarterInterrupt(relay, clock, state_dir, settings,
                                                                on_event=on_event, override_secret=secret)
        buzzer_output = open_output(str(values["actuators.buzzer.output"]), "actuators.buzzer.output",
                                    bool(values["actuators.buzzer.active_low"]))
        buzzer = None if buzzer_output is None else BuzzerPlayer(buzzer_output, clock)
        return cls(clock, state_dir, interrupt=interrupt, buzzer=buzzer, walking_kmh=settings.walking_kmh)

    def execute(self, action: CommandAction) -> Result:
        """Run one verified actuator action."""
        if isinstance(action, PaymentReminder):
            if self.reminders is None:
                return Result(AckStatus.REJECTED, "BuzzerUnavailable: no buzzer output configured "
                                                  "(actuators.buzzer.output)")
            return Result(AckStatus.DONE, self.reminders.set(action.due_date, action.pattern))
        if self.interrupt is None:
            return Result(AckStatus.REJECTED, "StarterInterruptUnavailable: no starter interrupt output "
                                              "configured (actuators.starter_interrupt.output)")
        answer = self.interrupt.arm() if isinstance(action, ArmStarterInterrupt) else self.interrupt.release()
        status = AckStatus.FAILED if answer.refused else AckStatus.DONE
        return Result(status, answer.detail, answer.state)

    def refused(self, action: CommandAction, reason: str) -> None:
        """An actuator command the agent did not execute (refused before it was trusted)."""
        if self.interrupt is not None and isinstance(action, ArmStarterInterrupt | ReleaseStarterInterrupt):
            self.interrupt.note_refused(f"{type(action).__name__} refused: {reason}"[:500])

    def tick(self, reading: VehicleReading) -> None:
        """Follow the vehicle once per agent tick."""
        if self.interrupt is not None:
            self._take_code()
            self.interrupt.update(reading)
        if self.reminders is not None:
            self.reminders.update(reading.ignition_on, reading.gnss_speed_kmh)

    def _take_code(self) -> None:
        try:
            code = self.code_file.read_text(encoding="ascii", errors="replace").strip()
        except FileNotFoundError:
            return
        except OSError as error:
            log.error("cannot read the emergency code file", extra={"detail": str(error)})
            return
        os.unlink(self.code_file)
        assert self.interrupt is not None
        answer = self.interrupt.enter_code(code[:32])
        if self.buzzer is not None:
            self.buzzer.play(CODE_REFUSED if answer.refused else CODE_ACCEPTED)

    def snapshot(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.interrupt is not None:
            out["starter_interrupt"] = self.interrupt.snapshot()
        if self.reminders is not None:
            out["payment_reminder"] = {"due_date": self.reminders.due_date,
                                       "pattern": self.reminders.pattern.name, "plays": self.reminders.plays}
        return out


IGNITION_MAX_AGE_NS = 10 * 10**9  # the power source reports every second
RPM_MAX_AGE_NS = 5 * 10**9  # as edge.sources.power: older engine speed says nothing
GNSS_MAX_AGE_NS = 5 * 10**9
STATE_ON = 4.0  # Vehicle.LowVoltageSystemState ON = 4, START = 5 (edge.sources.power)


def vehicle_reading(latest: Mapping[int, Sample], catalog: Catalog, now_mono_ns: int,
                    fix: GnssFix | None, now_wall_ns: int) -> VehicleReading:
    """What the interlocks need, from the agent's latest samples and its last whole GNSS fix.

    Ignition and engine speed count only while fresh; the CAN vehicle speed is the last value the
    bus said (a parked car's bus sleeps); the GNSS speed only from a fresh fix with a position.
    """
    def value(path: str, max_age_ns: int | None = None) -> float | None:
        sample = latest.get(catalog.id_of(path)) if path in catalog else None
        if sample is None or (max_age_ns is not None and now_mono_ns - sample.mono_ns > max_age_ns):
            return None
        return sample.value

    state = value("Vehicle.LowVoltageSystemState", IGNITION_MAX_AGE_NS)
    if fix is not None:
        fresh = fix.fix_type is not FixType.NO_FIX and abs(now_wall_ns - fix.time_ns) <= GNSS_MAX_AGE_NS
        gnss = fix.speed_kmh if fresh else None
    else:
        gnss = value("Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround", GNSS_MAX_AGE_NS)
    external = value("Vehicle.Telematics.IsExternalPowerConnected", IGNITION_MAX_AGE_NS)
    return VehicleReading(
        ignition_on=None if state is None else state >= STATE_ON,
        engine_rpm=value("Vehicle.Powertrain.CombustionEngine.Speed", RPM_MAX_AGE_NS),
        can_speed_kmh=value("Vehicle.Speed"),
        gnss_speed_kmh=gnss,
        external_power=None if external is None else external >= 0.5)


def write_code(state_dir: Path, code: str) -> Path:
    """Hand an emergency code to the running agent (what `lienwatch edge override` does)."""
    if not (len(code) == 8 and code.isascii() and code.isdigit()):
        raise ConfigError("an emergency code is 8 digits")
    path = state_dir / CODE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(code + "\n", encoding="ascii")
    os.replace(tmp, path)
    return path
