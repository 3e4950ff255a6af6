"""Power and motion sources against the file-backed fake sysfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.sources.base import HealthState, SourceRunner
from edge.sources.power import STATE_OFF, STATE_ON, MotionSource, PowerSource, infer_ignition
from edge.sources.registry import SourceContext, build_source
from edge.sources.sysfs import AccelReader, FakeSysfs, GpioReader, VoltageReader
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError

from .conftest import Collect


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path)


def test_voltage_readers_follow_the_kernel_abi(sysfs: FakeSysfs) -> None:
    prefix = sysfs.iio_voltage(12.6, divider=11.0)
    assert VoltageReader("iio", Path(prefix), 11.0).read_v() == pytest.approx(12.6, abs=0.01)
    Path(f"{prefix}_offset").write_text("10\n")  # (raw + offset) * scale
    assert VoltageReader("iio", Path(prefix), 11.0).read_v() == pytest.approx(
        12.6 + 10 * 0.805664062e-3 * 11, abs=0.01
    )
    hwmon = sysfs.hwmon_voltage(13.9)
    assert VoltageReader("hwmon", Path(hwmon)).read_v() == pytest.approx(13.9)
    battery = sysfs.power_supply("battery", voltage_now=3_912_000, capacity=81)
    assert VoltageReader("power_supply", Path(battery)).read_v() == pytest.approx(3.912)


def test_ignition_inference() -> None:
    assert infer_ignition(14.1, None) is True  # alternator charging
    assert infer_ignition(12.4, None) is False
    assert infer_ignition(12.4, 750.0) is True  # engine turns (start-stop at a light)
    assert infer_ignition(None, 0.0) is False
    assert infer_ignition(None, None) is None


def test_power_source_emits_supply_backup_external_and_inferred_ignition(sysfs: FakeSysfs) -> None:
    clock = ManualClock()
    supply = sysfs.iio_voltage(14.2, divider=11.0)
    battery = sysfs.power_supply("battery", voltage_now=3_900_000, capacity=76, status="Charging")
    source = build_source(
        {
            "kind": "power",
            "supply": {"kind": "iio", "path": supply, "divider": 11.0},
            "backup_battery": battery,
        },
        SourceContext(clock=clock),
    )
    assert isinstance(source, PowerSource)
    sink = Collect()
    runner = SourceRunner(source, sink)
    assert runner.step() == 1.0
    values = {path: v[-1] for path, v in sink.by_path().items()}
    assert values["Vehicle.LowVoltageBattery.CurrentVoltage"] == pytest.approx(14.2, abs=0.01)
    assert values["Vehicle.Telematics.BackupBattery.CurrentVoltage"] == pytest.approx(3.9)
    assert values["Vehicle.Telematics.BackupBattery.StateOfCharge"] == 76.0
    assert values["Vehicle.Telematics.IsExternalPowerConnected"] == 1.0
    assert values["Vehicle.LowVoltageSystemState"] == STATE_ON
    sysfs.iio_voltage(12.3, divider=11.0)  # engine off
    clock.advance(1.0)
    runner.step()
    assert sink.by_path()["Vehicle.LowVoltageSystemState"][-1] == STATE_OFF
    source.observe_rpm(800.0, clock.monotonic_ns())  # OBD says the engine runs
    clock.advance(1.0)
    runner.step()
    assert sink.by_path()["Vehicle.LowVoltageSystemState"][-1] == STATE_ON
    clock.advance(10.0)  # that rpm reading is stale now
    runner.step()
    assert sink.by_path()["Vehicle.LowVoltageSystemState"][-1] == STATE_OFF
    sysfs.iio_voltage(0.0, divider=11.0)  # unplugged from the car: backup battery only
    clock.advance(1.0)
    runner.step()
    assert sink.by_path()["Vehicle.Telematics.IsExternalPowerConnected"][-1] == 0.0


def test_ignition_gpio_and_external_power_supply(sysfs: FakeSysfs) -> None:
    clock = ManualClock()
    gpio = sysfs.gpio(17, False)
    ac = sysfs.power_supply("ac", online=1)
    source = PowerSource(
        "power", clock, ignition_gpio=GpioReader(Path(gpio), active_low=True), external_power=Path(ac)
    )
    sink = Collect()
    SourceRunner(source, sink).step()
    values = {path: v[-1] for path, v in sink.by_path().items()}
    assert values["Vehicle.LowVoltageSystemState"] == STATE_ON  # active low: 0 = on
    assert values["Vehicle.Telematics.IsExternalPowerConnected"] == 1.0


def test_a_failing_read_is_counted_and_the_source_stays_open(sysfs: FakeSysfs) -> None:
    clock = ManualClock()
    prefix = sysfs.iio_voltage(12.0)
    source = PowerSource("power", clock, supply=VoltageReader("iio", Path(prefix)))
    runner = SourceRunner(source, Collect())
    runner.step()
    Path(f"{prefix}_raw").write_text("garbage\x00\xff", "latin-1")
    clock.advance(1)
    runner.step()
    assert runner.is_open
    assert source.health.state is HealthState.DEGRADED
    assert "does not hold a number" in source.health.detail
    assert source.health.errors == 1
    Path(f"{prefix}_raw").unlink()
    clock.advance(1)
    runner.step()
    assert source.health.errors == 2


def test_missing_paths_fail_at_open(tmp_path: Path) -> None:
    source = PowerSource("power", ManualClock(), supply=VoltageReader("hwmon", tmp_path / "in1_input"))
    runner = SourceRunner(source, Collect())
    runner.step()
    assert source.health.state is HealthState.FAILED
    assert "missing sysfs paths" in source.health.detail


def test_motion_source_maps_sensor_axes_to_the_vehicle_frame(sysfs: FakeSysfs) -> None:
    clock = ManualClock()
    device = sysfs.accel(1.5, -0.3, 9.81)
    source = MotionSource(
        "imu",
        clock,
        reader=AccelReader(Path(device)),
        axes={"longitudinal": "y", "lateral": "-x", "vertical": "z"},
    )
    sink = Collect()
    assert SourceRunner(source, sink).step() == 0.1
    values = {path: v[-1] for path, v in sink.by_path().items()}
    assert values["Vehicle.Acceleration.Longitudinal"] == pytest.approx(-0.3, abs=0.001)
    assert values["Vehicle.Acceleration.Lateral"] == pytest.approx(-1.5, abs=0.001)
    assert values["Vehicle.Acceleration.Vertical"] == pytest.approx(9.81, abs=0.001)


@pytest.mark.parametrize(
    "supply",
    [
        {"kind": "adc", "path": "/x"},
        {"kind": "iio"},
        {"kind": "iio", "path": "/x", "divider": 0},
        {"kind": "iio", "path": "/x", "gain": 2},
    ],
)
def test_bad_supply_config_is_refused(supply: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        build_source({"kind": "power", "supply": supply}, SourceContext(clock=ManualClock()))
