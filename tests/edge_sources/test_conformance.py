"""Every kind of source through the same checks (River's estimator_checks idea).

Each is built from its registry config on a fake device (virtual CAN + ECU emulator, a DBC bus,
an NMEA file, a fake sysfs) and must: open via the runner, deliver only catalog signals with
finite values at the clock's time, return a sane delay, survive close() twice, reopen after a
stop, and hand out health snapshots that are copies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import can
import pytest

from edge.sources.base import HealthState, Source, SourceRunner
from edge.sources.registry import SourceContext, build_source
from edge.sources.sysfs import FakeSysfs
from hil.ecu import EcuEmulator, demo_vehicle
from hil.gnss import drive, epoch_sentences
from lienwatch.clock import SystemClock
from protocol.catalog import default_catalog

from .conftest import REPO, Collect
from .test_gnss import START


@pytest.fixture(params=["obd", "dbc", "gnss", "power", "motion"])
def built(
    request: pytest.FixtureRequest, tmp_path: Path, channel: str, bus_factory: Callable[[], can.BusABC]
) -> Iterator[tuple[Source, Callable[[], None]]]:
    kind: str = request.param
    feed: Callable[[], None] = lambda: None  # noqa: E731
    emulator: EcuEmulator | None = None
    table: dict[str, Any]
    if kind == "obd":
        emulator = EcuEmulator(bus_factory(), demo_vehicle()).start()
        table = {
            "kind": "obd",
            "interface": "virtual",
            "channel": channel,
            "timeout_s": 0.2,
            "pids": [{"pid": 0x0D, "period_s": 0.01}, {"pid": 0x0C, "period_s": 0.01}],
        }
    elif kind == "dbc":
        table = {
            "kind": "dbc",
            "manifest": str(REPO / "hil" / "vehicle_manifest.toml"),
            "interface": "virtual",
            "channel": channel,
        }
        car = bus_factory()
        feed = lambda: car.send(can.Message(arbitration_id=960, data=b"\x03", is_extended_id=False))  # noqa: E731
    elif kind == "gnss":
        log = tmp_path / "drive.nmea"
        log.write_text("\r\n".join(s for e in drive(START, 3) for s in epoch_sentences(e)) + "\r\n")
        table = {"kind": "gnss", "device": str(log), "loop_file": True}
    elif kind == "power":
        sysfs = FakeSysfs(tmp_path)
        table = {
            "kind": "power",
            "supply": {"kind": "hwmon", "path": sysfs.hwmon_voltage(12.7)},
            "backup_battery": sysfs.power_supply("battery", voltage_now=4_100_000, capacity=99),
        }
    else:
        table = {"kind": "motion", "device": FakeSysfs(tmp_path).accel(0.1, 0.2, 9.8)}
    source = build_source(table, SourceContext(clock=SystemClock()))
    assert source.kind == kind
    yield source, feed
    if emulator is not None:
        emulator.stop()


def run(
    runner: SourceRunner, feed: Callable[[], None], done: Callable[[], bool], max_s: float = 5.0
) -> list[float]:
    """Step the runner (feeding the fake device) until `done()` and at least 0.2 s have passed."""
    delays = []
    start = time.monotonic()
    while time.monotonic() - start < max_s and not (done() and time.monotonic() - start >= 0.2):
        feed()
        delays.append(runner.step())
        time.sleep(min(delays[-1], 0.005))
    return delays


def test_source_conformance(built: tuple[Source, Callable[[], None]]) -> None:
    source, feed = built
    catalog = default_catalog()
    sink = Collect()
    runner = SourceRunner(source, sink)
    before = time.monotonic_ns()
    delays = run(runner, feed, lambda: len(sink.samples) > 0)
    assert runner.is_open, source.health.detail
    assert source.health.state is not HealthState.FAILED
    assert all(math.isfinite(d) and 0 <= d <= 60 for d in delays)
    assert sink.samples, f"{source.kind} produced no sample"
    for sample in sink.samples:
        assert sample.signal_id in catalog
        assert math.isfinite(sample.value)
        assert before <= sample.mono_ns <= time.monotonic_ns()
    assert source.health.samples == len(sink.samples)
    snapshot = runner.health()
    snapshot.counters["tampered"] = 1
    snapshot.samples = -1
    assert "tampered" not in source.health.counters and source.health.samples >= 0
    assert isinstance(snapshot.as_dict()["state"], str)
    runner.stop()
    source.close()  # a second close is harmless
    assert runner.health().state is HealthState.FAILED and runner.health().detail == "stopped"
    count = len(sink.samples)
    run(runner, feed, lambda: len(sink.samples) > count)  # reopens
    assert runner.is_open and len(sink.samples) > count
    runner.stop()
