"""Scenario toolkit: a synthetic car driving the real agent (`Agent.step`) on a `ManualClock`.

The detector tests and `bench/detection.py` use it the same way:

    with ScenarioCar(detectors=[{"kind": "tow"}]) as car:
        car.park(ignition_off=True)
        car.run(600)                       # ten minutes parked, armed
        car.set(speed_kmh=0).gnss(speed_kmh=15, moving=True)
        car.run(60)
        (event,) = car.events_of("tow")    # decoded from the wire bytes the agent queued

What goes in is what the agent would get from its sources: CAN/OBD/power/IMU samples (the
values in `car.state`, emitted on every tick) and NMEA from `hil.gnss` parsed by the real
`GnssSource` (1 Hz epochs, fix, C/N0 per constellation). What comes out is every message the
agent put in its outbox, decoded (`car.events`). Nothing leaves the process: the agent has no
broker (its link never connects), its state directory is a temporary one.
"""

from __future__ import annotations

import atexit
import datetime as dt
import math
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.agent.config import parse_config
from edge.agent.runtime import Agent
from edge.detect.base import Detector
from edge.sources.base import Sample, SampleSink, Source
from edge.sources.gnss.fix import Constellation, FixType, GnssFix
from edge.sources.gnss.source import GnssSource
from edge.sources.obd.source import ObdDiagnostics
from edge.uplink.queue import Channel, Priority
from hil.gnss import NmeaEpoch, default_sats, epoch_sentences
from hil.services import REPO_ROOT
from lienwatch.clock import ManualClock
from protocol import decode, encode
from protocol.catalog import default_catalog
from protocol.messages import Command, CommandAck, CommandAction, Event, Severity, Transition
from protocol.signing import generate_key, public_key_to_pem, sign_command

DEVICE = "veh-scenario"
T0_NS = 1_767_254_400_000_000_000  # 2026-01-01T08:00:00Z, a Thursday morning
_CATALOG = default_catalog()
# Ignition (Vehicle.LowVoltageSystemState): 1 LOCK, 2 OFF, 3 ACC, 4 ON, 5 START.
LOCK, OFF, ACC, ON, START = 1, 2, 3, 4, 5
_M_PER_DEG = 111_320.0


@dataclass
class CarState:
    """What the car's buses and sensors say now; `None` = that signal is silent."""

    speed_kmh: float | None = 0.0  # CAN / OBD vehicle speed
    rpm: float | None = 0.0
    ignition: float | None = OFF
    supply_v: float | None = 12.6
    backup_v: float | None = 4.1
    external_power: float | None = 1.0
    accel: tuple[float, float, float] | None = (0.0, 0.0, 9.81)  # longitudinal, lateral, vertical
    vibration_ms2: float = 0.02  # standard deviation of the noise on every axis
    odometer_m: float | None = 42_000_000.0
    doors_open: float | None = 0.0  # driver door
    vin: str | None = None  # what the OBD source read (mode 09)
    extra: dict[str, float] = field(default_factory=dict)  # any other catalog path -> value


@dataclass
class GnssState:
    """The GNSS receiver: position, speed over ground and course, fix quality, C/N0."""

    lat: float = 47.3769
    lon: float = 8.5417
    speed_kmh: float = 0.0
    course_deg: float = 90.0
    quality: int = 1  # GGA quality: 0 = no fix
    cn0: int = 42  # mean-ish C/N0 of every constellation (dB-Hz)
    silent: bool = False  # the receiver says nothing at all (unplugged antenna cable, removed)
    move: bool = True  # advance the position by speed × time


_PKI_CACHE: dict[str, Path] = {}


def test_pki() -> Path:
    """A throwaway PKI (deploy/pki/make-test-pki.sh) made once per process: the agent checks
    that its certificate files exist even though the scenario agent never connects."""
    if "etc" not in _PKI_CACHE:
        root = Path(tempfile.mkdtemp(prefix="lienwatch-scenario-pki-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)  # one per process, gone with it
        subprocess.run([str(REPO_ROOT / "deploy/pki/make-test-pki.sh"), str(root), DEVICE],
                       check=True, capture_output=True)
        (root / "pki/devices" / f"{DEVICE}.key").chmod(0o600)
        _PKI_CACHE["etc"] = root
    return _PKI_CACHE["etc"]


class VinSource(Source):
    """Stands in for the OBD source's diagnostics (the VIN it read); never started."""

    kind = "obd"

    def __init__(self, clock: ManualClock) -> None:
        super().__init__("obd", clock)
        self.diagnostics: ObdDiagnostics | None = None

    def open(self) -> None:
        pass

    def poll(self, sink: SampleSink) -> float:
        return 1.0

    def close(self) -> None:
        pass


class RecordingAgent(Agent):
    """The real agent, also keeping a copy of each message it puts in its outbox."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.recorded: list[tuple[Channel, bytes]] = []
        super().__init__(*args, **kwargs)

    def _queue(self, channel: Channel, priority: Priority, payload: bytes) -> None:
        if channel is Channel.EVENT:
            self.recorded.append((channel, payload))
        super()._queue(channel, priority, payload)


class ScenarioCar:
    """A synthetic car and the real agent; `run(seconds)` moves both on one ManualClock."""

    def __init__(self, detectors: Sequence[Mapping[str, Any]] = (), *,
                 vehicle: Mapping[str, Any] | None = None,
                 detector_objects: Sequence[Detector] | None = None, tick_s: float = 1.0,
                 start_ns: int = T0_NS, state_dir: Path | None = None, batch_interval_s: float = 30.0,
                 nmea: bool = True, seed: int = 1, power: Mapping[str, Any] | None = None,
                 device: str = DEVICE, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 boot_id: int | None = 7, agent_class: type[RecordingAgent] | None = None) -> None:
        self.clock = ManualClock(wall_ns=start_ns, monotonic_ns=10**12)
        self.device = device
        self.tick_s = tick_s
        self.nmea = nmea  # GNSS as NMEA text through the parser (else assembled epochs, ~50x faster)
        self._own_tmp = state_dir is None
        # tmpfs when there is one: the outbox's fsyncs are real work on a disk, and weeks of
        # simulated driving would spend most of their time waiting for them
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.work = Path(tempfile.mkdtemp(prefix="lienwatch-scenario-", dir=shm)) if state_dir is None \
            else state_dir
        etc = test_pki()
        key = self.command_key = generate_key()  # signs `command()`s as the lender's backend would
        keys = self.work / "command-keys.pem"
        keys.write_bytes(public_key_to_pem(key.public_key()))
        document: dict[str, Any] = {
            "device": {"id": device},
            "agent": {"state_dir": str(self.work / "state"), "status_file": str(self.work / "status.json"),
                      "status_interval_s": 3600.0, "tick_s": min(max(tick_s, 0.005), 5.0)},
            "uplink": {"mqtt": {"host": "127.0.0.1", "port": 1, "ca_file": str(etc / "pki/ca.crt"),
                                "cert_file": str(etc / f"pki/devices/{DEVICE}.crt"),
                                "key_file": str(etc / f"pki/devices/{DEVICE}.key")},
                       "telemetry": {"batch_interval_s": batch_interval_s}},
            "downlink": {"command_keys": str(keys)},
            "detectors": [dict(t) for t in detectors],
        }
        if vehicle is not None:
            document["vehicle"] = dict(vehicle)
        if power is not None:  # e.g. {"mcu": {"device": pty}}: the MCU link (its thread: agent.mcu.start())
            document["power"] = dict(power)
        for section, table in (overrides or {}).items():  # e.g. a real broker: {"uplink": {"mqtt": ...}}
            _merge(document.setdefault(section, {}), table)
        self.config = parse_config(document)
        self.obd = VinSource(self.clock)
        self.agent = (agent_class or RecordingAgent)(self.config, clock=self.clock, sources=[self.obd],
                                                     detectors=detector_objects, boot_id=boot_id)
        self.gnss_source = GnssSource("gnss", self.clock, device="/dev/null", on_fix=self.agent.fix_inbox.put,
                                      on_clock_discipline=self.agent._on_clock_discipline)
        self.state = CarState()
        self.marks: dict[str, int] = {}
        self.rng = random.Random(seed)
        self.gnss_state = GnssState()
        self._next_gnss_ns = 0
        self._ids = {name: _CATALOG.id_of(path) for name, path in _PATHS.items()}

    # -- the car ------------------------------------------------------------------------------

    def set(self, **values: Any) -> ScenarioCar:
        """Change what the car's buses say (`CarState` fields), e.g. `set(ignition=ON, rpm=800)`."""
        for name, value in values.items():
            if not hasattr(self.state, name):
                raise AttributeError(f"CarState has no {name!r}")
            setattr(self.state, name, value)
        return self

    def gnss(self, **values: Any) -> ScenarioCar:
        """Change what the GNSS receiver says (`GnssState` fields)."""
        for name, value in values.items():
            if not hasattr(self.gnss_state, name):
                raise AttributeError(f"GnssState has no {name!r}")
            setattr(self.gnss_state, name, value)
        return self

    def tilt(self, degrees: float, vibration_ms2: float | None = None) -> ScenarioCar:
        """Pitch the car by `degrees` (a tow hook lifting its front), optionally shaking it."""
        g, r = 9.81, math.radians(degrees)
        self.set(accel=(g * math.sin(r), 0.0, g * math.cos(r)))
        return self if vibration_ms2 is None else self.set(vibration_ms2=vibration_ms2)

    def park(self) -> ScenarioCar:
        """Engine off, ignition off, standing still (GNSS too)."""
        return self.set(speed_kmh=0.0, rpm=0.0, ignition=OFF).gnss(speed_kmh=0.0)

    def drive(self, speed_kmh: float, course_deg: float | None = None) -> ScenarioCar:
        """Ignition on, engine running, CAN and GNSS speed both `speed_kmh`."""
        self.set(speed_kmh=speed_kmh, rpm=900.0 + 25.0 * speed_kmh, ignition=ON)
        return self.gnss(speed_kmh=speed_kmh, **({} if course_deg is None else {"course_deg": course_deg}))

    # -- time ---------------------------------------------------------------------------------

    def run(self, seconds: float, tick_s: float | None = None) -> ScenarioCar:
        """Advance `seconds`: every tick the car's samples and (1 Hz) GNSS go in, then `Agent.step`."""
        tick = tick_s or self.tick_s
        steps = max(1, round(seconds / tick))
        for _ in range(steps):
            self.clock.advance(tick)
            self._emit(tick)
            self.agent.step()
        return self

    def run_until(self, condition: Any, limit_s: float, tick_s: float | None = None) -> float | None:
        """Run tick by tick until `condition(car)` holds; the seconds it took, or None."""
        tick = tick_s or self.tick_s
        waited = 0.0
        while waited < limit_s:
            self.run(tick, tick)
            waited += tick
            if condition(self):
                return waited
        return None

    def _emit(self, tick_s: float) -> None:
        now = self.clock.monotonic_ns()
        put = self.agent.inbox.put
        ids, s = self._ids, self.state
        self.obd.diagnostics = ObdDiagnostics(now, s.vin, (), ())
        scalars = {"speed": s.speed_kmh, "rpm": s.rpm, "ignition": s.ignition, "supply": s.supply_v,
                   "backup": s.backup_v, "external": s.external_power, "odometer": s.odometer_m,
                   "door": s.doors_open}
        for name, value in scalars.items():
            if value is not None:
                put(Sample(now, ids[name], float(value)))
        if s.accel is not None:
            for name, value in zip(("ax", "ay", "az"), s.accel, strict=True):
                put(Sample(now, ids[name], float(value) + self.rng.gauss(0.0, s.vibration_ms2)))
        for path, value in s.extra.items():
            put(Sample(now, _CATALOG.id_of(path), float(value)))
        if s.speed_kmh and s.odometer_m is not None:
            s.odometer_m += s.speed_kmh / 3.6 * tick_s
        g = self.gnss_state
        if now >= self._next_gnss_ns:
            elapsed_s = 1.0 if self._next_gnss_ns else 0.0
            self._next_gnss_ns = now + 10**9
            if g.move and g.speed_kmh > 0:
                metres = g.speed_kmh / 3.6 * max(elapsed_s, tick_s)
                g.lat += metres * math.cos(math.radians(g.course_deg)) / _M_PER_DEG
                g.lon += metres * math.sin(math.radians(g.course_deg)) / (
                    _M_PER_DEG * math.cos(math.radians(g.lat)))
            if g.silent:
                pass
            elif self.nmea:
                self.feed_nmea(self._epoch())
            else:
                self.gnss_source.deliver([self._gnss_fix(now)], self.agent.inbox.put)

    def _epoch(self) -> NmeaEpoch:
        g = self.gnss_state
        when = dt.datetime.fromtimestamp(self.clock.wall_ns() // 10**9, dt.UTC)
        sats = default_sats(g.cn0) if g.cn0 > 0 else {}
        return NmeaEpoch(time=when, lat=g.lat, lon=g.lon, speed_kmh=g.speed_kmh, course_deg=g.course_deg,
                         quality=g.quality, nav_mode=3 if g.quality else 1, sats=sats)

    def _gnss_fix(self, mono_ns: int) -> GnssFix:
        """The epoch the parser would assemble from `_epoch()`'s sentences (same sky, same fix)."""
        g = self.gnss_state
        sky = default_sats(g.cn0) if g.cn0 > 0 else {}
        constellations = {name: Constellation(len(sats), sum(u for _, _, u in sats),
                                              {svid: float(cn0) for svid, cn0, _ in sats})
                          for name, sats in sky.items()}
        has_fix = g.quality != 0
        return GnssFix(mono_ns, time_utc_ns=self.clock.wall_ns() // 10**9 * 10**9,
                       lat=g.lat if has_fix else None, lon=g.lon if has_fix else None,
                       alt_m=499.6 if has_fix else None, speed_kmh=g.speed_kmh if has_fix else None,
                       course_deg=g.course_deg if has_fix else None,
                       fix=FixType.FIX_3D if has_fix else FixType.NONE,
                       sats=sum(c.used for c in constellations.values()) if has_fix else 0,
                       hdop=0.9 if has_fix else None, constellations=constellations)

    def feed_nmea(self, epoch: NmeaEpoch) -> None:
        """One epoch's NMEA through the real GNSS source (samples to the agent's inbox)."""
        data = "".join(f"{line}\r\n" for line in epoch_sentences(epoch)).encode()
        self.gnss_source.feed(data, self.agent.inbox.put)

    def teleport(self, lat: float, lon: float) -> ScenarioCar:
        """Move the GNSS position at once (a spoofer, or a multipath jump)."""
        return self.gnss(lat=lat, lon=lon)

    def mark(self, label: str = "onset") -> ScenarioCar:
        """Remember this moment's wall time (e.g. when the anomaly starts, for latencies)."""
        self.marks[label] = self.clock.wall_ns()
        return self

    def command(self, action: CommandAction) -> CommandAck | None:
        """A signed downlink command (e.g. `SetGeofence`) through the agent's real command handler."""
        now = self.clock.wall_ns()
        command = Command(self.device, os.urandom(16), now, now + 3600 * 10**9, action)
        payload = encode(sign_command(command, self.command_key))
        return self.agent.commands.handle(payload, self.agent.headers.header)

    # -- what came out ------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """Every event transition the agent queued (decoded wire bytes), oldest first."""
        out = []
        for _, payload in self.agent.recorded:
            message = decode(payload)
            if isinstance(message, Event):
                out.append(message)
        return out

    def events_of(self, detector: str, transition: Transition | None = Transition.RAISED,
                  severity: Severity | None = None) -> list[Event]:
        return [e for e in self.events if e.detector == detector
                and (transition is None or e.transition is transition)
                and (severity is None or e.severity is severity)]

    def alarms(self, at_least: Severity = Severity.ALERT) -> list[Event]:
        """Raised or escalated events of at least `at_least` severity (false-alarm counting)."""
        return [e for e in self.events if e.transition is not Transition.CLEARED and e.severity >= at_least]

    def status(self) -> dict[str, Any]:
        return self.agent.status()

    def close(self) -> None:
        if self.agent.mcu is not None:
            self.agent.mcu.stop()
        with suppress(Exception):
            self.agent.outbox.close()
        if self._own_tmp:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> ScenarioCar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PATHS = {
    "speed": "Vehicle.Speed",
    "rpm": "Vehicle.Powertrain.CombustionEngine.Speed",
    "ignition": "Vehicle.LowVoltageSystemState",
    "supply": "Vehicle.LowVoltageBattery.CurrentVoltage",
    "backup": "Vehicle.Telematics.BackupBattery.CurrentVoltage",
    "external": "Vehicle.Telematics.IsExternalPowerConnected",
    "odometer": "Vehicle.TraveledDistance",
    "door": "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen",
    "ax": "Vehicle.Acceleration.Longitudinal",
    "ay": "Vehicle.Acceleration.Lateral",
    "az": "Vehicle.Acceleration.Vertical",
}


def _merge(into: dict[str, Any], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """UTC ns of a calendar time (scenario start times)."""
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * 10**9

