"""The source contract: runner, backoff, health, registry — on a ManualClock."""

from __future__ import annotations

import random
import tomllib

import pytest

from edge.sources.base import Backoff, HealthState, Sample, SampleSink, Source, SourceError, SourceRunner
from edge.sources.registry import SourceContext, build_source, get_spec, source_kinds
from lienwatch.clock import Clock, ManualClock
from lienwatch.errors import ConfigError
from protocol.catalog import default_catalog

from .conftest import Collect


class FlakySource(Source):
    """Fails to open `open_failures` times, then emits one sample per poll; `poll_error` raises once."""

    kind = "flaky"

    def __init__(self, clock: Clock, open_failures: int) -> None:
        super().__init__("flaky", clock)
        self.open_failures = open_failures
        self.opens = 0
        self.closes = 0
        self.poll_error: Exception | None = None

    def open(self) -> None:
        self.opens += 1
        if self.open_failures > 0:
            self.open_failures -= 1
            raise SourceError("device not there")

    def poll(self, sink: SampleSink) -> float:
        if self.poll_error is not None:
            error, self.poll_error = self.poll_error, None
            raise error
        self.emit(sink, 1, 42.0)
        return 1.0

    def close(self) -> None:
        self.closes += 1


def test_sample_carries_catalog_id_and_vss_path() -> None:
    sample = Sample(5, default_catalog().id_of("Vehicle.Speed"), 12.5)
    assert sample.path == "Vehicle.Speed"
    assert sample.signal().unit == "km/h"


def test_backoff_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=10.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    jittered = Backoff(initial_s=1.0, jitter=0.1)
    rng = random.Random(1)
    assert all(0.9 <= jittered.delay(1, rng) <= 1.1 for _ in range(100))


def test_runner_retries_opening_with_backoff_and_counts_the_reconnect() -> None:
    clock = ManualClock()
    source = FlakySource(clock, open_failures=3)
    sink = Collect()
    runner = SourceRunner(source, sink, backoff=Backoff(initial_s=1.0, factor=2.0, max_s=60, jitter=0.0))
    assert runner.step() == 1.0
    assert source.health.state is HealthState.FAILED
    assert "device not there" in source.health.detail
    assert runner.step() == pytest.approx(1.0)  # not yet due: no second open attempt
    assert source.opens == 1
    clock.advance(1.0)
    assert runner.step() == 2.0  # second failure
    clock.advance(2.0)
    assert runner.step() == 4.0
    clock.advance(4.0)
    assert runner.step() == 1.0  # opened and polled
    assert source.opens == 4
    assert runner.health().state is HealthState.OK
    assert source.health.reconnects == 1
    assert source.health.errors == 3
    assert [s.value for s in sink.samples] == [42.0]


@pytest.mark.parametrize("error", [RuntimeError("driver bug"), OSError(19, "No such device"), KeyError("x")])
def test_any_exception_in_poll_is_contained_and_the_source_reopened(error: Exception) -> None:
    clock = ManualClock()
    source = FlakySource(clock, open_failures=0)
    runner = SourceRunner(source, Collect(), backoff=Backoff(initial_s=0.5, jitter=0.0))
    runner.step()
    source.poll_error = error
    assert runner.step() == 0.5
    assert source.closes == 1
    assert source.health.state is HealthState.FAILED
    assert type(error).__name__ in source.health.last_error
    clock.advance(0.5)
    runner.step()
    assert runner.health().state is HealthState.OK
    assert source.health.reconnects == 1


def test_threaded_runner_starts_and_stops() -> None:
    clock = ManualClock()
    source = FlakySource(clock, open_failures=0)
    sink = Collect()
    runner = SourceRunner(source, sink)
    runner.start()
    try:
        import time

        deadline = time.monotonic() + 2
        while not sink.samples and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    assert sink.samples
    assert source.closes == 1
    assert runner.health().state is HealthState.FAILED  # stopped


def test_registry_knows_every_builtin_kind() -> None:
    assert {"obd", "dbc", "gnss", "power", "motion"} <= set(source_kinds())


@pytest.mark.parametrize("kind", ["obd", "dbc", "gnss", "power", "motion"])
def test_each_sample_config_is_valid_toml_that_the_schema_accepts(kind: str) -> None:
    spec = get_spec(kind)
    text = spec.sample_config()
    table = tomllib.loads(text)["sources"][0]
    assert table["kind"] == kind
    required = {o.name for o in spec.options if o.required}
    for name in required:
        table[name] = "x"
    options = spec.validate(table)
    assert set(options) == {o.name for o in spec.options}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "kind"),
        ({"kind": "teleport"}, "unknown source kind"),
        ({"kind": "gnss", "baud": 9600}, "unknown option 'baud'"),
        ({"kind": "gnss", "baudrate": "fast"}, "baudrate must be int"),
        ({"kind": "obd", "timeout_s": True}, "timeout_s must be float"),
        ({"kind": "obd", "pids": [{"pid": 12, "rate": 1}]}, "unknown key"),
        ({"kind": "obd", "pids": [{"pid": 0x99}]}, "no decoder for PID 0x99"),
        ({"kind": "obd", "interface": "udp_multicast", "channel": "239.74.163.2"}, "leave this machine"),
        ({"kind": "dbc", "manifest": "x.toml", "interface": "udp_multicast", "channel": "ff0e::1"}, "leave"),
        ({"kind": "dbc"}, "manifest is required"),
        ({"kind": "gnss", "name": ""}, "non-empty"),
        ({"kind": "gnss", "fallback_clock_quality": "atomic"}, "fallback_clock_quality"),
        ({"kind": "motion", "axes": {"longitudinal": "w"}}, "axes"),
    ],
)
def test_bad_source_config_raises_config_error(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_source(table, SourceContext(clock=ManualClock()))
