"""The agent process of a HIL run: the real agent and the emulated car on one simulation clock.

    python -m hil.player JOB.json

JOB.json (written by `hil.runner`) names the scenario file, the device, the agent's uplink (the
real broker, mutual TLS), its state directory, the journal file and, after a SIGKILL, where to
resume. The process builds the real `edge.agent.runtime.Agent` on a `ManualClock` with its real
outbox on disk and its real MQTT link, and plays the scenario's timeline on `hil.model`:

- GNSS: NMEA text from `hil.gnss` through the real GNSS source (noise, multipath jumps, RTK
  fixed/float, no fix in garages, jamming = C/N0 collapse, spoofing = a displaced position);
- OBD-II: each PID request and answer carried in an ISO-TP single frame, answered by
  `hil.ecu.EmulatedEcu` (silent while the ignition is off) and decoded by the agent's J1979 table;
- passive CAN: `BodyDoors` and `PowerMode` frames encoded from `hil/vehicle.dbc` and decoded by the
  real `DbcSource` (plus garbage frames on request); power and accelerometer as samples.

The simulation clock waits for the network: while the broker is meant to be up, time stands
still until the link is connected, and at every step's end until the outbox has drained — so
delivery is never what a scenario measures, detection is. Output: JSON lines on stdout (`mark`,
`track`, `request`, `kill_me`, `done`); the runner answers `request`s on stdin.
"""

from __future__ import annotations

import datetime as dt
import faulthandler
import json
import logging
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import can
import cantools

from edge.sources.dbc import DbcSource, load_manifest
from edge.sources.obd.isotp_link import parse_single_frame, single_frame
from edge.sources.obd.pids import decode_response
from edge.sources.sysfs import FakeSysfs  # noqa: F401  (documented alternative for process sources)
from edge.uplink.queue import Channel, Priority
from hil.ecu import EmulatedEcu
from hil.gnss import NmeaEpoch, default_sats
from hil.model import OFF, ON, VehicleModel
from hil.scenario import RecordingAgent, ScenarioCar
from hil.scenario_file import Scenario, Step, load_scenario
from protocol import decode
from protocol.catalog import default_catalog
from protocol.messages import TelemetryBatch

HERE = Path(__file__).resolve().parent
_CATALOG = default_catalog()
_OBD_PIDS = (0x0D, 0x0C, 0x2F, 0xA6)
_TRACK_EVERY_S = 60.0
# Long ticks wait for the store's receipts once this many records are unconfirmed: 16 one-hour
# ticks stay well inside the bench's one-day receipt timeout, and the round trip is paid rarely.
_AWAIT_DEPTH = 16


class JournalAgent(RecordingAgent):
    """The real agent, writing one journal line per telemetry record it accepted onto flash."""

    journal: Path | None = None

    def _queue(self, channel: Channel, priority: Priority, payload: bytes) -> None:
        super()._queue(channel, priority, payload)
        if channel is Channel.TELEMETRY and self.journal is not None:
            batch = decode(payload)
            if isinstance(batch, TelemetryBatch):
                fixes = sum(1 for lat in batch.fixes.lat_deg if lat == lat)
                line = f"{batch.header.boot_id} {batch.header.seq} {fixes} {len(batch.samples.time_ns)}\n"
                with self.journal.open("a") as out:
                    out.write(line)


class BenchCar(ScenarioCar):
    """`ScenarioCar` whose buses are fed from `VehicleModel` through the real decoders."""

    def __init__(self, model: VehicleModel, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.noise = random.Random(seed)
        self.ecu = EmulatedEcu(index=0, values={}, vin=kwargs.get("vehicle", {}).get("vin"))
        db = cantools.database.load_file(str(HERE / "vehicle.dbc"))
        assert isinstance(db, cantools.database.can.Database)
        self.db = db
        manifest = load_manifest(HERE / "vehicle_manifest.toml", _CATALOG)
        self.dbc = DbcSource("can", self.clock, manifest=manifest, interface="virtual", channel="hil")
        self.garbage_per_s = 0.0
        self.spoof = (0.0, 0.0)
        self.multipath_m = 0.0
        self.rtk = "off"
        self.jam: tuple[int, bool] | None = None
        self.garage = False
        self._obd_due = 0
        self.gnss_state.move = False
        # the buses speak for themselves (OBD, DBC): CarState's scalars stay silent
        self.set(speed_kmh=None, rpm=None, ignition=None, odometer_m=None, doors_open=None)

    def _emit(self, tick_s: float) -> None:
        m, now = self.model, self.clock.monotonic_ns()
        self.set(supply_v=m.supply_v, external_power=1.0 if m.plugged else 0.0, backup_v=m.backup_v,
                 accel=m.accel, vibration_ms2=m.vibration_ms2, extra=dict(m.extra))
        g = self.gnss_state
        g.lat, g.lon, g.speed_kmh, g.course_deg = m.lat, m.lon, m.speed_kmh, m.course_deg
        quality = {"fixed": 4, "float": 5}.get(self.rtk, 1)
        cn0 = 42
        if self.garage:
            quality, cn0 = 0, 0
        elif self.jam is not None:
            cn0 = self.jam[0]
            quality = quality if self.jam[1] else 0
        g.quality, g.cn0 = quality, cn0
        put = self.agent.inbox.put
        if m.bus_awake and now >= self._obd_due:  # the ECUs answer while the bus is awake
            self._obd_due = now + 10**9
            self._obd(put)
        if m.bus_awake:
            self._frames(put, now)
        m.slept(tick_s)
        if self.garbage_per_s > 0:
            for _ in range(max(1, round(self.garbage_per_s * tick_s))):
                # what reaches software from a noisy bus: unknown ids, and known ids cut short
                # (a frame with a bad CRC never leaves the controller; an overlong one decodes)
                ident = self.noise.choice((0x3B0, 0x3C0, self.noise.randrange(0x800)))
                size = 0 if ident in (0x3B0, 0x3C0) else self.noise.randrange(9)
                data = bytes(self.noise.randrange(256) for _ in range(size))
                self.dbc.handle(can.Message(arbitration_id=ident, data=data, is_extended_id=False), put, now)
        super()._emit(tick_s)

    def _obd(self, put: Any) -> None:
        m = self.model
        self.ecu.values.update({0x0D: m.speed_kmh, 0x0C: m.rpm, 0x2F: m.fuel_pct, 0xA6: m.odometer_m})
        for pid in _OBD_PIDS:
            request = parse_single_frame(single_frame(0x7DF, bytes([0x01, pid]), extended=False))
            assert request is not None
            for answer in self.ecu.answer(request):
                frame = single_frame(0x7E8, answer, extended=False) if len(answer) <= 7 else None
                payload = parse_single_frame(frame) if frame is not None else answer
                if payload is None or payload[0] != 0x41:
                    continue
                from edge.sources.base import Sample

                for value in decode_response(payload):
                    put(Sample(self.clock.monotonic_ns(), _CATALOG.id_of(value.vss), value.value))

    def _frames(self, put: Any, now: int) -> None:
        m = self.model
        doors = self.db.get_message_by_name("BodyDoors")
        power = self.db.get_message_by_name("PowerMode")
        frames = (
            (doors.frame_id, doors.encode({"DoorFrontLeftOpen": int(m.doors_open), "DoorFrontRightOpen": 0,
                                           "DoorRearLeftOpen": 0, "DoorRearRightOpen": 0, "HoodOpen": 0,
                                           "TrunkOpen": 0})),
            (power.frame_id, power.encode({"PowerMode": m.ignition - 1})),
        )
        for ident, data in frames:
            self.dbc.handle(can.Message(arbitration_id=ident, data=data, is_extended_id=False), put, now)

    def _epoch(self) -> NmeaEpoch:
        epoch = super()._epoch()
        std = {"fixed": 0.02, "float": 0.3}.get(self.rtk, 1.5)
        north = self.noise.gauss(0.0, std) + self.spoof[0] + self.multipath_m
        east = self.noise.gauss(0.0, std) + self.spoof[1]
        self.multipath_m = 0.0
        epoch.lat += north / 111_320.0
        epoch.lon += east / 75_000.0
        epoch.std_lat_m = epoch.std_lon_m = std
        if self.garage or (self.jam is not None and not self.jam[1]):
            epoch.sats = default_sats(self.jam[0]) if self.jam and self.jam[0] > 0 else {}
        return epoch


class Player:
    """Plays a scenario's timeline on a `BenchCar`, step by step, talking to the runner."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.scenario: Scenario = load_scenario(job["scenario"])
        resume = job.get("resume")
        self.first_step = int(resume["next_step"]) if resume else 0
        start_ns = int(resume["t"]) if resume else self.scenario.start_ns
        model = VehicleModel.from_dict(resume["model"]) if resume else VehicleModel(
            lat=self.scenario.home[0], lon=self.scenario.home[1])
        JournalAgent.journal = Path(job["journal"])
        Path(job["state_dir"]).mkdir(parents=True, exist_ok=True)
        self.fast = bool(job.get("fast", True))
        vehicle = {"time_zone": self.scenario.time_zone, **job.get("vehicle", self.scenario.vehicle)}
        self.car = BenchCar(model, seed=len(self.scenario.name) + self.first_step,
                            detectors=[{"kind": k} for k in job["detectors"]], vehicle=vehicle,
                            start_ns=start_ns, state_dir=Path(job["state_dir"]), device=job["device"],
                            overrides=job.get("overrides", {}), boot_id=None, agent_class=JournalAgent,
                            batch_interval_s=float(job.get("batch_interval_s", 30.0)))
        self.car.set(vin=vehicle.get("vin"))  # what the OBD source read (mode 09)
        if resume and resume.get("bench"):
            self.car.__dict__.update({k: (tuple(v) if isinstance(v, list) else v)
                                      for k, v in resume["bench"].items()})
        self.broker_up = not (resume or {}).get("broker_down", False) and not job.get("offline", False)
        self.zone = ZoneInfo(self.scenario.time_zone)
        self._next_track_ns = 0

    # -- talking to the runner ------------------------------------------------------------------

    def say(self, kind: str, **data: Any) -> None:
        print(json.dumps({"kind": kind, "t": self.car.clock.wall_ns(), **data}), flush=True)

    def ask(self, what: str, **data: Any) -> None:
        self.say("request", what=what, **data)
        answer = sys.stdin.readline().strip()
        if answer != "ok":
            raise SystemExit(f"runner said {answer!r} to {what}")

    # -- the clock waits for the network --------------------------------------------------------

    def settle(self, drain: bool, limit_s: float = 20.0) -> None:
        """Step the agent without moving the clock until its link is up (and, with `drain`, its
        outbox empty), at most `limit_s` of real time."""
        if not self.broker_up:
            return
        agent = self.car.agent
        started = time.monotonic()
        jumps = 0
        while time.monotonic() < started + limit_s:
            agent.step()
            connected = agent.link.connected
            if connected and (not drain or (agent.outbox.depth == 0 and not agent.uplink.in_flight)):
                return
            time.sleep(0.005)
            if not connected:  # the link's reconnect timers run on this clock: let them expire
                self.car.clock.advance(0.005)
            elif (drain and jumps < 2 and time.monotonic() > started + 5.0 * (jumps + 1)
                  and not agent.uplink.in_flight and agent.outbox.depth == agent.outbox.delivered):
                # only records whose stored receipt was lost (an outage) are left: they are sent
                # again once their receipt timeout has passed; let that time pass, the car standing
                jumps += 1
                self.car.clock.advance(float(agent.config["uplink.receipts.timeout_s"]) * jumps + 1.0)

    def await_receipts(self, limit_s: float = 2.0) -> None:
        """Before a long tick: let what the outbox holds be sent and confirmed by the store's
        receipts in real time, so a receipt timeout never expires for records the store has."""
        agent = self.car.agent
        deadline = time.monotonic() + limit_s
        while (self.broker_up and agent.link.connected and agent.outbox.depth
               and time.monotonic() < deadline):
            time.sleep(0.002)
            agent.step()

    # -- playing --------------------------------------------------------------------------------

    def play(self) -> int:
        car = self.car
        car.agent.start()  # the real MQTT link's network thread
        self.settle(drain=False)
        steps = self.scenario.steps
        for index in range(self.first_step, len(steps)):
            step = steps[index]
            self.say("step", index=index)
            if step.mark:
                self.say("mark", name=step.mark)
            if step.action == "kill_agent":
                self.say("kill_me", next_step=index + 1, model=car.model.to_dict(), bench=self._bench_state(),
                         broker_down=not self.broker_up)
                sys.stdin.readline()  # the runner answers with SIGKILL
                return 1
            self.apply(step)
            self.run(step)
            if step.action == "tunnel":
                car.garage = False
            self.settle(drain=True)
        self.settle(drain=True, limit_s=60.0)
        self.track(force=True)
        self.say("done", power=car.agent.power.snapshot(), health=self._health())
        car.agent.shutdown()
        return 0

    def _bench_state(self) -> dict[str, Any]:
        c = self.car
        return {"garbage_per_s": c.garbage_per_s, "spoof": list(c.spoof), "rtk": c.rtk,
                "jam": list(c.jam) if c.jam else None, "garage": c.garage}

    def _health(self) -> dict[str, Any]:
        return {"dbc_rejected": self.car.dbc.decoder.rejected, "dbc_ignored": self.car.dbc.decoder.ignored,
                "dbc_decoded": self.car.dbc.decoder.decoded}

    def apply(self, step: Step) -> None:
        car, m, o = self.car, self.car.model, step.options
        action = step.action
        if action == "drive":
            self.car.garage = False
            m.start_engine()
            m.target_kmh = float(o.get("speed_kmh", 50.0))
            m.course_deg = float(o.get("course_deg", m.course_deg))
            m.to = tuple(o["to"]) if "to" in o else None  # type: ignore[assignment]
            m.stop_and_go = bool(o.get("stop_and_go", False))
        elif action == "park":
            if m.engine_on:
                m.stop_engine()
            m.towed = False
            car.garage = bool(o.get("garage", False))
        elif action == "tow":
            if m.engine_on:
                m.stop_engine()
            m.towed, m.tilt_deg = True, float(o.get("tilt_deg", 8.0))
            m.tow_kmh = float(o.get("speed_kmh", 35.0))
            m.course_deg = float(o.get("course_deg", m.course_deg))
            m.vibration_ms2 = float(o.get("vibration_ms2", 0.4))
        elif action == "tunnel":  # no sky for the step's duration, the drive goes on
            car.garage = True
        elif action == "unplug":
            m.plugged = False
        elif action == "plug":
            m.plugged = True
        elif action == "jam":
            car.jam = (int(o.get("cn0", 18)), bool(o.get("fix", False)))
        elif action == "unjam":
            car.jam, car.spoof = None, (0.0, 0.0)
        elif action == "spoof":
            car.spoof = (float(o["jump_km"]) * 1000.0, 0.0)
        elif action == "multipath":
            car.multipath_m = float(o["jump_m"])
        elif action == "rtk":
            car.rtk = str(o["mode"])
        elif action == "doors":
            self._doors(int(o["count"]), float(o.get("open_s", 20.0)), float(o.get("closed_s", 40.0)))
        elif action == "odometer":
            m.odometer_m = max(0.0, m.odometer_m - float(o["rollback_km"]) * 1000.0)
        elif action == "battery":
            m.battery_rest_v = float(o.get("resting_v", m.battery_rest_v))
            m.battery_decay_v_per_day = float(o.get("decay_v_per_day", m.battery_decay_v_per_day))
        elif action == "bus_garbage":
            car.garbage_per_s = float(o["frames_per_s"])
        elif action in ("broker_down", "broker_up"):
            self.ask(action)
            self.broker_up = action == "broker_up"
        elif action in ("crash", "bump"):
            g = float(o.get("g", 4.0 if action == "crash" else 1.2))
            m.accel = (-g * 9.81, 0.3 * g * 9.81, 9.81) if action == "crash" else (0.0, 0.0, 9.81 * (1 + g))
            car.run(0.1, 0.1)  # the impact itself, one 100 ms sample
            if action == "crash":
                m.stop_engine()
                m.speed_kmh = m.target_kmh = 0.0
        elif action == "place":
            m.lat, m.lon = float(o["lat"]), float(o["lon"])
        elif action == "command":
            self.command(str(o["command"]), str(o["reason"]))

    def command(self, command: str, reason: str, limit_s: float = 20.0) -> None:
        """The runner POSTs `command` to the API (signed there, published to the broker); the clock
        waits (the network's time is not what a scenario measures) until the agent has acted on it:
        the interrupt's state changed (at most `limit_s` of real time)."""
        agent = self.car.agent
        before = self._interrupt_state()
        self.ask("command", command=command, reason=reason)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            agent.step()
            if self._interrupt_state() != before:
                break
            time.sleep(0.005)
        else:
            print(f"hil.player: no effect of {command} within {limit_s:.0f} s", file=sys.stderr)

    def _interrupt_state(self) -> str | None:
        shown = self.car.agent.actuators.snapshot().get("starter_interrupt")
        return str(shown["state"]) if isinstance(shown, dict) else None

    def _doors(self, count: int, open_s: float, closed_s: float) -> None:
        m = self.car.model
        for _ in range(count):
            m.doors_open = True
            m.wake()
            self.advance(open_s, 1.0)
            m.doors_open = False
            m.wake()
            self.advance(closed_s, 1.0)

    def duration_s(self, step: Step) -> float:
        first_drive = next((s for s in self.scenario.steps if s.action == "drive"), None)
        if step is first_drive and self.job.get("first_drive_s"):
            return float(self.job["first_drive_s"])  # `lienwatch demo --seconds N`
        if step.until is None:
            return step.seconds
        now = dt.datetime.fromtimestamp(self.car.clock.wall_ns() / 1e9, self.zone)
        hour, minute = map(int, step.until.split(":"))
        target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= now:
            target += dt.timedelta(days=1)
        return (target - now).total_seconds()

    def run(self, step: Step) -> None:
        seconds = self.duration_s(step)
        if seconds <= 0:
            return
        default = {"park": 60.0, "wait": 10.0}.get(step.action, 1.0)
        tick = float(step.options.get("tick_s", default))
        self.advance(seconds, tick)

    def advance(self, seconds: float, tick: float) -> None:
        car = self.car
        car.nmea = tick <= 5.0  # long parks: assembled epochs (the parser is the slow part)
        remaining = seconds
        while remaining > 1e-9:
            step = min(tick, remaining)
            if step >= 60.0 and car.agent.outbox.depth >= _AWAIT_DEPTH:
                self.await_receipts()
            car.model.tick(step, car.noise)
            car.run(step, step)
            remaining -= step
            if self.broker_up and not car.agent.link.connected:
                self.settle(drain=False, limit_s=5.0)
            self.track()

    def track(self, force: bool = False) -> None:
        now = self.car.clock.wall_ns()
        if not force and now < self._next_track_ns:
            return
        self._next_track_ns = now + int(_TRACK_EVERY_S * 1e9)
        m, power = self.car.model, self.car.agent.power.snapshot()
        self.say("track", lat=round(m.lat, 6), lon=round(m.lon, 6), speed_kmh=round(m.speed_kmh, 1),
                 supply_v=round(m.supply_v, 2), backup_v=round(m.backup_v, 3), soc_pct=power["soc_pct"],
                 ignition=m.ignition in (ON,) or m.engine_on, parked=m.ignition == OFF)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m hil.player JOB.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID`: every thread's stack into the agent log
    logging.getLogger("isotp").setLevel(logging.ERROR)
    job = json.loads(Path(args[0]).read_text())
    return Player(job).play()


if __name__ == "__main__":
    sys.exit(main())
