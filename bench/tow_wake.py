"""A tow that starts while the SoC sleeps, run rather than modelled (bench/power.py's tow).

The MCU is the real supervisor (edge/mcu) on a simulated board that follows the park's clock,
handed its thresholds and the parked attitude over the real link (edge/power/mculink) at the
sleep moment, as the agent does. It samples the towed car's accelerometer at 10 Hz and wakes the
SoC over its GPIO. The SoC's boot (or resume) and the modem's wake take the profile's times —
that is hardware, nothing here can run it. Then the agent's own detection runs every run-loop
tick on what the SoC sees after the wake: the MCU's log through `McuWatch` (detector "mcu") and
edge/detect's `tow` detector on the accelerometer and GNSS samples, in a real
`DetectionPipeline`. It was armed during the park; after a suspend it is the same object, after
a boot from off a new one that resumes the arming saved at the sleep moment (through JSON, as
the agent's detector_state.json). Either way it confirms after its holds and owner grace. The
tow latency is motion start → the first EMERGENCY raised → published (as
soon as the modem is up).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge.detect.pipeline import DetectionPipeline
from edge.detect.registry import DetectorContext, build_detector
from edge.detect.signals import ACCEL, GNSS_SPEED, IGNITION
from edge.detect.tow import Tow as TowDetector
from edge.mcu.hal import SimHal
from edge.mcu.supervisor import Config, Supervisor
from edge.power.mculink import McuLink, McuPoller
from edge.power.mcuwatch import McuWatch
from edge.power.planner import Plan, Planner, SleepOptions
from edge.sources.base import Sample
from lienwatch.clock import ManualClock
from protocol.catalog import default_catalog
from protocol.messages import FixType, GnssFix, Severity, Transition

G = 9.80665
TICK_S = 0.1  # the agent's run-loop period (agent.tick_s)
MCU_SAMPLE_S = 0.1  # the supervisor's confirmation window samples at 10 Hz
ACCEL_HZ = 10  # the SoC's accelerometer samples
LIMIT_S = 600.0  # watch the SoC-side tow detector at most this long after the wake


@dataclass(frozen=True)
class Tow:
    """What the tow truck does to the car (the same on the MCU's and the SoC's accelerometer)."""

    lift_deg: float = 8.0  # a wheel lift raises the front (the MCU's tilt threshold is 10°)
    vibration_mg: int = 150  # shaking while hooked up and towed
    hookup_s: float = 60.0  # standing, lifted, before the truck drives off
    speed_kmh: float = 30.0  # then towed at this speed (GNSS)


@dataclass
class TowRun:
    latency_s: float  # motion start → the first EMERGENCY published
    detector: str  # which detector raised it ("mcu" or "tow")
    gpio_s: float  # motion start → the MCU's GPIO woke the SoC
    awake_s: float  # motion start → the SoC runs the agent
    raised_s: float  # motion start → the first EMERGENCY raised
    soc_tow_s: float | None  # motion start → edge/detect's tow detector raised (None: not by LIMIT_S)


class _ClockHal(SimHal):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    def ticks_ms(self) -> int:
        return self.clock.monotonic_ns() // 1_000_000


class _Loopback:
    """The UART between the link and the supervisor, in memory: every read or write steps it."""

    def __init__(self, hal: SimHal, supervisor: Supervisor) -> None:
        self.hal, self.supervisor = hal, supervisor

    def write(self, data: bytes) -> None:
        self.hal.rx.extend(data)
        self.supervisor.step()

    def read(self, timeout_s: float) -> bytes:
        self.supervisor.step()
        out = bytes(self.hal.tx)
        self.hal.tx = bytearray()
        return out


def _gravity_mg(degrees: float) -> tuple[int, int, int]:
    r = math.radians(degrees)
    return (round(1000 * math.sin(r)), 0, round(1000 * math.cos(r)))


def tow_after_sleep(clock: ManualClock, planner: Planner, plan: Plan,
                    hold: Callable[[float, Mapping[str, str] | None], None], *,
                    tow: Tow | None = None, seed: int = 41) -> TowRun:
    """Run a tow from its first motion until detected; `hold(seconds, states)` moves the park's
    clock and charges its ledger. Returns when the event is published (the tow goes on)."""
    tow = tow or Tow()
    t = planner.profile.timings
    policy = planner.policy
    rng = random.Random(seed)
    catalog = default_catalog()
    ids = {path: catalog.id_of(path) for path in (*ACCEL, GNSS_SPEED, IGNITION)}
    start_ns = clock.monotonic_ns()

    def since(ns: int | None = None) -> float:
        return ((clock.monotonic_ns() if ns is None else ns) - start_ns) / 1e9

    # the sleep moment: the agent handed the MCU its thresholds and the parked attitude
    hal = _ClockHal(clock)
    supervisor = Supervisor(hal)
    link = McuLink(_Loopback(hal, supervisor), clock, timeout_s=0.3)
    link.hello()
    link.sync_time()
    config = Config()
    config.confirm_ms = round(policy.mcu_confirm_s * 1000)
    link.set_config(config)
    link.read_events()
    link.sleep()
    cursor = (supervisor.hal.boot_id(), link.next_index)

    # the SoC-side detection, the tow detector armed during the park
    tow_detector = build_detector({"kind": "tow"}, DetectorContext(clock=clock, catalog=catalog))
    assert isinstance(tow_detector, TowDetector)
    watch = McuWatch("bench-mcu", clock, interval_s=10.0, timeout_s=0.3)
    pipeline = DetectionPipeline([tow_detector, watch], event_ids=itertools.count(1).__next__,
                                 catalog=catalog)
    latest: dict[int, Sample] = {}
    wall_offset = clock.wall_ns() - start_ns
    arm_s = float(tow_detector.o["arm_delay_s"])
    for back_s in (arm_s + 10.0, 1.0):  # two ticks of the park before the sleep
        mono = start_ns - round(back_s * 1e9)
        samples = _samples(mono, ids, 0.0, 0, rng, accel=True, ignition=True)
        latest.update({s.signal_id: s for s in samples})
        pipeline.step(mono, mono + wall_offset, samples, [], latest, None)
    if plan.soc == "off":  # the SoC boots afresh: a new detector resumes the arming saved at the sleep
        saved = json.loads(json.dumps(tow_detector.saved_state()))
        tow_detector = build_detector({"kind": "tow"}, DetectorContext(clock=clock, catalog=catalog))
        assert isinstance(tow_detector, TowDetector)
        tow_detector.restore_state(saved)
        pipeline = DetectionPipeline([tow_detector, watch], event_ids=itertools.count(1).__next__,
                                     catalog=catalog)
        latest = {}

    # motion: the MCU watches at 10 Hz until it wakes the SoC over its GPIO
    asleep = planner.sleep_states(SleepOptions(plan.soc, plan.modem, plan.gnss_standby))
    hal.gravity = _gravity_mg(tow.lift_deg)
    hal.vibration_mg = tow.vibration_mg
    while hal.wakes == 0 and since() < 120.0:
        hold(MCU_SAMPLE_S, {**asleep, "mcu": "run", "accel": "active"})
        hal.advance(0)  # the accelerometer's wake-on-motion interrupt
        supervisor.step()
    if hal.wakes == 0:  # a bench that cannot measure must say so
        raise RuntimeError("the MCU never woke the SoC: the tow was never detected")
    gpio_s = since()
    hold(t.soc_resume_s if plan.soc == "suspend" else t.soc_boot_s,
         planner.awake_states(modem=plan.modem, gnss=plan.gnss_standby))
    awake_ns = clock.monotonic_ns()
    modem_up_ns = awake_ns + round((t.modem_attach_s if plan.modem == "off" else t.modem_psm_wake_s) * 1e9)
    ttff = t.gnss_ttff_hot_s if plan.gnss_standby == "backup" else t.gnss_ttff_cold_s
    fix_ns = awake_ns + round(ttff * 1e9)

    # the agent runs: it reads the MCU's log (a boot from off: a new link, from the saved cursor)
    if plan.soc == "suspend":
        watch.poller = McuPoller(link, clock, 10.0)
        watch.poller.in_session = True
    else:
        watch.poller = McuPoller(McuLink(_Loopback(hal, supervisor), clock, timeout_s=0.3), clock, 10.0,
                                 resume=cursor)
    raised: tuple[str, int] | None = None
    soc_tow_ns: int | None = None
    tick_s = TICK_S
    next_gnss_ns = fix_ns
    lat, lon = 52.52, 13.405
    while soc_tow_ns is None and since() < gpio_s + LIMIT_S:
        hold(tick_s, planner.awake_states(modem="connected", gnss="tracking"))
        now = clock.monotonic_ns()
        moving = since() >= tow.hookup_s
        n = round(tick_s * ACCEL_HZ)
        samples = [s for k in range(n)
                   for s in _samples(now - round((n - 1 - k) / ACCEL_HZ * 1e9), ids, tow.lift_deg,
                                     tow.vibration_mg, rng, accel=True, ignition=k == n - 1)]
        position = None
        if now >= next_gnss_ns:
            next_gnss_ns = now + 10**9
            speed = tow.speed_kmh if moving else 0.0
            lat += speed / 3.6 / 111_320.0
            samples.append(Sample(now, ids[GNSS_SPEED], speed))
            position = GnssFix(now + wall_offset, lat, lon, 34.0, speed, 0.0, 0.9, 12, FixType.FIX_3D)
        latest.update({s.signal_id: s for s in samples})
        watch.poll_once()
        for detector, update in pipeline.step(now, now + wall_offset, samples, [], latest, position):
            emergency = update.finding.severity is Severity.EMERGENCY
            if update.transition is not Transition.RAISED or not emergency:
                continue
            if raised is None:
                raised = (detector.name, now)
                tick_s = 1.0  # detected: the rest only times edge/detect's own tow detector
            if detector is tow_detector:
                soc_tow_ns = now
    if raised is None:
        raise RuntimeError("the agent never raised the tow: it was never detected")
    published_ns = max(raised[1], modem_up_ns) + round(policy.publish_s * 1e9)
    return TowRun(latency_s=since(published_ns), detector=raised[0], gpio_s=gpio_s, awake_s=since(awake_ns),
                  raised_s=since(raised[1]), soc_tow_s=None if soc_tow_ns is None else since(soc_tow_ns))


def _samples(mono_ns: int, ids: Mapping[str, int], tilt_deg: float, vibration_mg: int, rng: random.Random,
             *, accel: bool, ignition: bool) -> list[Sample]:
    out = []
    if ignition:
        out.append(Sample(mono_ns, ids[IGNITION], 2.0))  # OFF
    if accel:
        r = math.radians(tilt_deg)
        sd = vibration_mg / 1000.0 * G
        gravity = (G * math.sin(r), 0.0, G * math.cos(r))
        out.extend(Sample(mono_ns, ids[path], g + rng.gauss(0.0, sd)) for path, g in zip(ACCEL, gravity,
                                                                                      strict=True))
    return out
