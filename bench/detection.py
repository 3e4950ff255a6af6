"""Detection benchmark: labelled scenarios and 30 days of normal use through the real agent.

Every run is `hil.scenario.ScenarioCar`: the real `Agent.step` on a `ManualClock` with every
registered detector enabled (their defaults), samples from the synthetic car and GNSS from
`hil.gnss` (NMEA text through the real parser in the scenarios; assembled epochs in the long
normal-use run, which would otherwise spend most of its time parsing text). Per scenario: did
the expected detector fire with the expected severity, how long after the anomaly began, and
did anything else raise an ALERT or EMERGENCY. Then `--days` of normal use (commutes, garages
without GNSS, crank and alternator dips, multipath jumps, tunnels, a rotary car-park lift, a
ferry): every ALERT/EMERGENCY there is a false alarm. Goals (issue 14): every scenario detected
with the right severity, tow ≤ 60 s, zero false ALERT/EMERGENCY in 30 days.

Adding a scenario: decorate a function `(car) -> None` with `@scenario(name, detector,
severity)`; it drives the car and calls `car.mark()` when the anomaly starts. Normal use:
`normal_day()` below is the place for more everyday behaviour.

    python -m bench.detection [--days 30] [--only tow]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.report import print_json_line, print_table
from edge.detect.registry import BUILTIN
from hil.scenario import ACC, ON, START, ScenarioCar, utc
from protocol.messages import Event, Severity, Transition

HOME = (47.3769, 8.5417)
VIN = "WVWZZZ1JZXW000001"
VEHICLE = {
    "vin": VIN, "time_zone": "Europe/Zurich",
    "contract_region": [[46.8, 8.0], [46.8, 9.4], [47.8, 9.4], [47.8, 8.0]],
    "places": [{"name": "Automarkt Nord", "class": "used_car_market", "lat": 47.4102, "lon": 8.5489,
                "radius_m": 300.0}],
}
MONDAY = utc(2026, 1, 5, 0, 0) - 3600 * 10**9  # 2026-01-05 00:00 in Zurich (UTC+1)


@dataclass(frozen=True)
class Scenario:
    """A labelled stream: `script` drives the car and marks the anomaly's onset."""

    name: str
    detector: str
    severity: Severity
    script: Callable[[ScenarioCar], None]
    also: frozenset[str] = frozenset()  # other detectors that may rightly fire too
    nmea: bool = True


SCENARIOS: list[Scenario] = []


def scenario(name: str, detector: str, severity: Severity, *, also: tuple[str, ...] = (),
             nmea: bool = True) -> Callable[[Callable[[ScenarioCar], None]], Callable[[ScenarioCar], None]]:
    def register(script: Callable[[ScenarioCar], None]) -> Callable[[ScenarioCar], None]:
        SCENARIOS.append(Scenario(name, detector, severity, script, frozenset(also), nmea))
        return script
    return register


def all_detectors() -> list[dict[str, object]]:
    """Every shipped detector at its defaults (not kinds registered at run time, e.g. by tests)."""
    return [{"kind": kind} for kind in sorted(BUILTIN)]


def new_car(*, nmea: bool = True, start_ns: int = MONDAY + 2 * 3600 * 10**9) -> ScenarioCar:
    car = ScenarioCar(all_detectors(), vehicle=VEHICLE, nmea=nmea, start_ns=start_ns)
    car.set(vin=VIN).gnss(lat=HOME[0], lon=HOME[1])
    return car


def drive_then_park(car: ScenarioCar, drive_s: float = 240.0, park_s: float = 400.0) -> None:
    car.set(supply_v=14.2).drive(45).run(drive_s)
    car.park().set(supply_v=12.6).run(park_s)


# -- labelled scenarios -------------------------------------------------------------------------


@scenario("tow: hook lift at night", "tow", Severity.EMERGENCY)
def _tow_hook(car: ScenarioCar) -> None:
    drive_then_park(car)
    car.mark().tilt(9.0, vibration_ms2=0.4).run(40)
    car.gnss(speed_kmh=35.0).run(120)


@scenario("tow: flatbed (short ramp, level transport)", "tow", Severity.EMERGENCY)
def _tow_flatbed(car: ScenarioCar) -> None:
    drive_then_park(car)
    car.mark().tilt(12.0, vibration_ms2=0.3).run(15)
    car.tilt(0.5, vibration_ms2=0.1).run(10)
    car.gnss(speed_kmh=50.0).run(120)


@scenario("tow: tracker without accelerometer", "tow", Severity.EMERGENCY)
def _tow_gnss_only(car: ScenarioCar) -> None:
    car.set(accel=None)
    drive_then_park(car)
    car.mark().gnss(speed_kmh=30.0).run(120)


@scenario("unplug: parked", "unplug", Severity.EMERGENCY)
def _unplug_parked(car: ScenarioCar) -> None:
    drive_then_park(car, park_s=60)
    car.mark().set(supply_v=0.2, external_power=0.0, backup_v=3.9).run(30)


@scenario("unplug: while driving", "unplug", Severity.EMERGENCY, also=("tamper",))
def _unplug_driving(car: ScenarioCar) -> None:
    car.set(supply_v=14.2).drive(60).run(200)
    car.mark().set(supply_v=0.0, external_power=0.0).run(30)


@scenario("jamming: collapse, then fix lost in motion", "gnss_jamming", Severity.EMERGENCY)
def _jamming(car: ScenarioCar) -> None:
    car.drive(70).run(240)
    car.mark().gnss(cn0=20).run(20)
    car.gnss(quality=0, cn0=10).run(90)


@scenario("jamming: collapse while the fix holds", "gnss_jamming", Severity.WARNING)
def _jamming_warning(car: ScenarioCar) -> None:
    car.drive(70).run(240)
    car.mark().gnss(cn0=22).run(60)
    car.gnss(cn0=42).run(60)


@scenario("spoofing: position jumps 30 km and stays", "gnss_jamming", Severity.ALERT)
def _spoof_jump(car: ScenarioCar) -> None:
    car.drive(60).run(240)
    car.mark().teleport(car.gnss_state.lat + 0.27, car.gnss_state.lon).run(60)


@scenario("spoofing: GNSS speed while the car stands", "gnss_jamming", Severity.ALERT)
def _spoof_speed(car: ScenarioCar) -> None:
    car.drive(60).run(240)
    car.set(speed_kmh=0.0, rpm=800.0).gnss(speed_kmh=0.0).run(30)
    car.mark().gnss(speed_kmh=80.0).run(60)


@scenario("tamper: CAN wires cut while driving", "tamper", Severity.EMERGENCY)
def _tamper_can(car: ScenarioCar) -> None:
    car.set(supply_v=14.2).drive(60).run(240)
    car.mark().set(speed_kmh=None, rpm=None, ignition=None).run(90)


@scenario("tamper: tracker moved to another car (VIN)", "tamper", Severity.EMERGENCY)
def _tamper_vin(car: ScenarioCar) -> None:
    car.set(supply_v=14.2).drive(40).run(120)
    car.mark().set(vin="WAUZZZ8V5KA000002").run(30)


@scenario("tamper: riding in a car it is not wired to", "tamper", Severity.EMERGENCY)
def _tamper_other_car(car: ScenarioCar) -> None:
    car.set(speed_kmh=None, rpm=None, ignition=None, supply_v=14.1).run(30)
    car.mark().gnss(speed_kmh=70.0).run(150)


@scenario("tamper: tied to a bike", "tamper", Severity.EMERGENCY, also=("unplug",))
def _tamper_bike(car: ScenarioCar) -> None:
    car.mark().set(speed_kmh=None, rpm=None, ignition=None, supply_v=0.0, external_power=0.0).run(30)
    car.gnss(speed_kmh=18.0).run(420)


PAWN = (47.3600, 8.5000)
DTC = "Vehicle.OBD.DistanceSinceDTCClear"
CELL_MIN, CELL_MAX = ("Vehicle.Powertrain.TractionBattery.CellVoltage.Min",
                      "Vehicle.Powertrain.TractionBattery.CellVoltage.Max")


@scenario("odometer: rolled back while parked", "odometer", Severity.ALERT)
def _odometer_rollback(car: ScenarioCar) -> None:
    drive_then_park(car)
    assert car.state.odometer_m is not None
    car.mark().set(odometer_m=car.state.odometer_m - 30_000_000.0).run(10)  # 42,000 km -> 12,000 km


@scenario("odometer: blocked on a 15 km trip", "odometer", Severity.ALERT, nmea=False)
def _odometer_blocked(car: ScenarioCar) -> None:
    car.mark().drive(90).run(2)
    stuck = car.state.odometer_m
    for _ in range(600):  # the cluster counts a fifth of the way
        car.set(odometer_m=stuck).run(1)
        stuck = (stuck or 0.0) + 5.0
    car.park().run(10)


@scenario("odometer: fault codes cleared", "odometer", Severity.ALERT)
def _odometer_codes_cleared(car: ScenarioCar) -> None:
    car.set(extra={DTC: 2210.0}).drive(40).run(60)
    car.mark().set(extra={DTC: 0.0}).run(10)


@scenario("risky place: 72 h at a used-car market", "risky_places", Severity.ALERT, nmea=False)
def _risky_stay(car: ScenarioCar) -> None:
    car.teleport(47.4110, 8.5480).mark().park().run(73 * 3600, tick_s=300.0)


@scenario("geofence: nearing the contract region's border", "geofence", Severity.WARNING, nmea=False)
def _geofence_near(car: ScenarioCar) -> None:
    car.teleport(47.77, 8.5).drive(80, course_deg=0.0).run(55)  # 2.1 km from the border
    car.mark().run(20).park().run(120)  # parked 1.7 km from it


@scenario("geofence: leaving the contract region", "geofence", Severity.ALERT, nmea=False)
def _geofence_out(car: ScenarioCar) -> None:
    car.teleport(47.75, 8.5).drive(100, course_deg=0.0).run(180)
    car.mark().run(120)  # crossed the border about here


@scenario("geofence: a commanded circle left", "geofence", Severity.ALERT, nmea=False)
def _geofence_circle(car: ScenarioCar) -> None:
    from protocol.messages import Geofence, SetGeofence

    car.command(SetGeofence(Geofence(1, HOME[0], HOME[1], 2000.0)))
    car.drive(60, course_deg=90.0).run(120)
    car.mark().run(120)  # 2 km out about here


@scenario("night cabin: doors opened five times at 02:00", "night_cabin", Severity.ALERT)
def _night_doors(car: ScenarioCar) -> None:
    car.park().run(30).mark()
    for _ in range(5):
        car.set(doors_open=1.0).run(20).set(doors_open=0.0).run(40)


@scenario("battery: resting below the cranking reserve", "battery", Severity.WARNING)
def _battery_low(car: ScenarioCar) -> None:
    drive_then_park(car, park_s=600)
    car.mark().set(supply_v=12.1).run(300)


@scenario("battery: deep discharge at rest", "battery", Severity.ALERT)
def _battery_flat(car: ScenarioCar) -> None:
    drive_then_park(car, park_s=600)
    car.mark().set(supply_v=11.6).run(300)


@scenario("battery: traction cells 90 mV apart", "battery", Severity.WARNING)
def _battery_cells(car: ScenarioCar) -> None:
    car.set(extra={CELL_MAX: 3.71, CELL_MIN: 3.70}).drive(50).run(120)
    car.mark().set(extra={CELL_MAX: 3.74, CELL_MIN: 3.65}).run(120)


@scenario("crash at 60 km/h (4 g)", "driving", Severity.EMERGENCY)
def _crash(car: ScenarioCar) -> None:
    car.drive(60).run(60)
    car.mark().set(accel=(-4.0 * 9.81, 1.0 * 9.81, 9.81)).run(0.2, tick_s=0.1)
    car.set(accel=(0.0, 0.0, 9.81)).park().run(30)


@scenario("usage: suddenly driven every night", "usage", Severity.ALERT, nmea=False)
def _usage_nights(car: ScenarioCar) -> None:
    usage = next(d for d in car.agent.detection.detectors if d.kind == "usage")
    history = [{"km": 38.0 + d % 5, "night_min": 0.0, "trips": 2.0, "places": 2.0} for d in range(20)]
    usage.restore_state({"history": history})  # 20 days of commuting, as kept in the state dir
    car.park().run(3600, tick_s=600.0).mark()
    for _ in range(4):  # every night 03:00-04:30 a drive (out and back); days otherwise as before
        car.drive(60, 90.0).run(45 * 60, tick_s=30.0).drive(60, 270.0).run(45 * 60, tick_s=30.0)
        car.park().run(4 * 3600, tick_s=600.0)
        for course in (0.0, 180.0):
            car.drive(60, course).run(20 * 60, tick_s=30.0).park().run(8 * 3600, tick_s=600.0)
        car.run(24 * 3600 - 90 * 60 - 4 * 3600 - 2 * (20 * 60 + 8 * 3600), tick_s=600.0)


# -- normal use ---------------------------------------------------------------------------------


def engine_start(car: ScenarioCar, weak: bool) -> None:
    """Key, crank (the supply dips for half a second), run."""
    car.set(ignition=ACC).run(2)
    car.set(ignition=START, rpm=220.0, supply_v=4.8 if weak else 8.9).run(0.5, tick_s=0.5)
    car.set(ignition=ON, rpm=850.0, supply_v=14.3).run(3)


def commute(car: ScenarioCar, course_deg: float, minutes: int, day: int) -> None:
    """Stop-and-go, town and road speeds, alternator dips, multipath jumps, sometimes a tunnel."""
    for minute in range(minutes):
        speed = (30.0, 50.0, 80.0, 0.0, 45.0, 95.0)[(minute + day) % 6]
        car.drive(speed, course_deg).set(supply_v=(14.3, 11.9, 14.6, 13.8)[minute % 4]).run(55)
        if minute == 7 and day % 3 == 0:
            lat, lon = car.gnss_state.lat, car.gnss_state.lon
            car.teleport(lat + 0.004, lon).run(1)  # multipath between tall buildings: 450 m off
            car.teleport(lat, lon)
        if minute == 12 and day % 4 == 1:
            car.gnss(quality=0, cn0=0).run(150)  # a tunnel
            car.gnss(quality=1, cn0=42)
        car.run(5)


def park(car: ScenarioCar, hours: float, *, garage: bool = False, lift: bool = False) -> None:
    car.set(supply_v=13.1).park().run(10)
    car.set(speed_kmh=None, rpm=None, ignition=None, supply_v=12.6)  # the bus sleeps
    if garage:
        car.gnss(quality=0, cn0=0)
    remaining = hours * 3600
    if lift:  # a rotary car-park lift moves the car half-way through
        car.run(remaining / 2, tick_s=30.0)
        for az in (10.3, 9.81, 9.4, 9.81):
            car.set(accel=(0.0, 0.0, az), vibration_ms2=0.15).run(15)
        car.set(vibration_ms2=0.02)
        remaining /= 2
    while remaining > 0:
        chunk = min(remaining, 7200.0)
        car.run(chunk, tick_s=30.0)
        remaining -= chunk
        if not garage and remaining > 0:  # a multipath fix now and then while parked
            lat, lon = car.gnss_state.lat, car.gnss_state.lon
            car.teleport(lat + 0.002, lon).run(30, tick_s=30.0)
            car.teleport(lat, lon)
    if garage:
        car.gnss(quality=1, cn0=38)
        lat, lon = car.gnss_state.lat, car.gnss_state.lon
        car.teleport(lat + 0.0055, lon).run(3)  # the first fix on the way out is 600 m off
        car.teleport(lat, lon)


def ferry(car: ScenarioCar) -> None:
    car.park().run(10)
    car.set(speed_kmh=None, rpm=None, ignition=None, supply_v=12.5)
    car.run(8 * 60, tick_s=10.0)
    car.set(vibration_ms2=0.08).gnss(speed_kmh=25.0, course_deg=120.0).run(50 * 60, tick_s=5.0)
    car.set(vibration_ms2=0.02).gnss(speed_kmh=0.0).run(5 * 60, tick_s=10.0)


def normal_day(car: ScenarioCar, day: int) -> None:
    """One day from local midnight: weekdays commute with a garage at work, weekends errands."""
    weekday = day % 7 < 5
    end_ns = car.clock.monotonic_ns() + 86_400 * 10**9
    park(car, 7.5 if weekday else 9.0)
    engine_start(car, weak=day % 5 == 0)
    if weekday:
        commute(car, 90.0, 25, day)
        park(car, 9.0, garage=True, lift=day % 7 == 2)
        engine_start(car, weak=False)
        commute(car, 270.0, 25, day)
    elif day % 14 == 6:  # a Sunday trip over the lake
        commute(car, 180.0, 20, day)
        ferry(car)
        engine_start(car, weak=False)
        commute(car, 0.0, 20, day)
    else:
        commute(car, 45.0, 15, day)
        park(car, 2.0)
        engine_start(car, weak=False)
        commute(car, 225.0, 15, day)
    park(car, (end_ns - car.clock.monotonic_ns()) / 3600e9)  # the rest of the day at home


# -- running ------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    severity: Severity | None
    latency_s: float | None
    false_alarms: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.severity is self.scenario.severity and not self.false_alarms


def run_scenario(item: Scenario) -> Result:
    with new_car(nmea=item.nmea) as car:
        item.script(car)
        onset = car.marks["onset"]
        events = [e for e in car.events if e.transition is not Transition.CLEARED]
    mine = [e for e in events if e.detector == item.detector and e.time_ns >= onset]
    severity = max((e.severity for e in mine), default=None)
    first = [e for e in mine if e.severity is item.severity]
    latency = (first[0].time_ns - onset) / 1e9 if first else None
    wrong = [e for e in events if e.severity >= Severity.ALERT and (
        e.time_ns < onset or (e.detector != item.detector and e.detector not in item.also))]
    return Result(item, severity, latency, [_describe(e) for e in wrong])


def _describe(event: Event) -> str:
    return f"{event.detector}/{event.condition or '-'} {event.severity.name}"


def run_normal(days: int) -> tuple[list[Event], float, int]:
    started = time.monotonic()
    with new_car(nmea=False, start_ns=MONDAY) as car:
        for day in range(days):
            normal_day(car, day)
        events = car.events
        ticks = int((car.clock.monotonic_ns() - 10**12) / 1e9)
    return events, time.monotonic() - started, ticks


def _detector_row(kind: str, results: list[Result], alarms: list[Event],
                  warnings: list[Event]) -> list[object]:
    latencies = [r.latency_s for r in results if r.latency_s is not None]
    return [kind, len(results), sum(r.correct for r in results), max(latencies, default=None),
            sum(e.detector == kind for e in alarms), sum(e.detector == kind for e in warnings)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of simulated normal use")
    parser.add_argument("--only", default=None, help="run only the scenarios of this detector")
    args = parser.parse_args(argv)
    if not 0 <= args.days <= 366:
        parser.error("--days must be in 0..366")
    logging.getLogger("lienwatch").setLevel(logging.ERROR)  # events are counted, not logged

    results = [run_scenario(s) for s in SCENARIOS if args.only in (None, s.detector)]
    print_table("Labelled scenarios through Agent.step on a ManualClock (every detector enabled)",
                ["scenario", "detector", "expected", "got", "latency s", "other alarms", "ok"],
                [[r.scenario.name, r.scenario.detector, r.scenario.severity.name,
                  r.severity.name if r.severity else "none", r.latency_s, ", ".join(r.false_alarms) or "-",
                  "yes" if r.correct else "NO"] for r in results])

    events, seconds, simulated_s = run_normal(args.days)
    alarms = [e for e in events if e.transition is not Transition.CLEARED and e.severity >= Severity.ALERT]
    warnings = [e for e in events if e.transition is Transition.RAISED and e.severity is Severity.WARNING]
    per_detector: dict[str, list[Result]] = {}
    for result in results:
        per_detector.setdefault(result.scenario.detector, []).append(result)
    kinds = sorted(set(per_detector) | {e.detector for e in events})
    print_table(f"Per detector: scenarios, and {args.days} simulated days of normal use "
                f"({simulated_s / 86400:.1f} days in {seconds:.0f} s)",
                ["detector", "scenarios", "detected (TP)", "worst latency s", "false ALERT/EMERGENCY",
                 "WARNINGs"],
                [_detector_row(k, per_detector.get(k, []), alarms, warnings) for k in kinds])
    for alarm in alarms:
        print(f"  false alarm: {_describe(alarm)} at {alarm.time_ns}: {alarm.detail}")
    tow = [r.latency_s for r in results if r.scenario.detector == "tow"]
    print_json_line({
        "scenarios": len(results), "detected_correctly": sum(r.correct for r in results),
        "false_alerts_30d": len(alarms) if args.days == 30 else None,
        "false_alerts": len(alarms), "days": args.days, "warnings": len(warnings),
        "tow_latency_s": None if not tow or None in tow else max(t for t in tow if t is not None),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
