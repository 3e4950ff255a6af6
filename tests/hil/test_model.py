"""The emulated car's physics: bounded acceleration, odometer and fuel, route legs, 12 V and backup cell."""

from __future__ import annotations

import itertools
import random

from hil.model import OFF, ON, START, VehicleModel, distance_m


def _run(model: VehicleModel, seconds: float, dt: float = 1.0) -> None:
    rng = random.Random(3)
    for _ in range(round(seconds / dt)):
        model.tick(dt, rng)


def test_a_start_cranks_with_a_dip_then_charges() -> None:
    car = VehicleModel()
    resting = car.supply_v
    car.start_engine()
    assert car.ignition == START and car.supply_v < resting - 2.5
    _run(car, 1.0, 0.5)
    assert car.ignition == ON and car.supply_v == 14.2 and car.rpm >= 700


def test_speed_follows_the_target_at_bounded_acceleration_and_the_odometer_integrates() -> None:
    car = VehicleModel()
    car.start_engine()
    car.target_kmh = 100.0
    _run(car, 1.0)
    speeds = []
    for _ in range(20):
        _run(car, 1.0)
        speeds.append(car.speed_kmh)
    assert all(b - a <= 2.0 * 3.6 + 1e-9 for a, b in itertools.pairwise(speeds))  # 2 m/s²
    assert speeds[-1] == 100.0
    start_odo, start_fuel = car.odometer_m, car.fuel_pct
    _run(car, 360.0)
    assert abs(car.odometer_m - start_odo - 10_000.0) < 1.0  # 100 km/h for 6 min
    assert 0 < start_fuel - car.fuel_pct < 2.0


def test_a_route_leg_arrives_and_stops_there() -> None:
    car = VehicleModel(lat=47.3769, lon=8.5417)
    target = (47.4102, 8.5489)
    car.start_engine()
    car.target_kmh, car.to = 40.0, target
    _run(car, 15 * 60)
    assert car.to is None and distance_m(car.lat, car.lon, *target) < 10.0  # braked in time
    assert car.speed_kmh < 10.0


def test_parked_the_battery_decays_and_an_unplugged_tracker_drains_its_backup_cell() -> None:
    car = VehicleModel(battery_decay_v_per_day=0.25)
    car.start_engine()
    _run(car, 60)
    car.stop_engine()
    assert car.ignition == OFF and car.speed_kmh == 0.0
    _run(car, 4 * 86400, 600)
    assert 11.7 < car.supply_v < 11.8  # 12.72 V less 4 × 0.25 V; the surface charge gone
    car.plugged = False
    backup = car.backup_v
    assert car.supply_v == 0.0
    _run(car, 10 * 3600, 600)
    assert car.backup_v < backup - 0.2


def test_the_state_survives_a_round_trip() -> None:
    car = VehicleModel()
    car.start_engine()
    car.target_kmh, car.to = 50.0, (47.5, 8.6)
    _run(car, 30)
    again = VehicleModel.from_dict(car.to_dict())
    assert again == car
