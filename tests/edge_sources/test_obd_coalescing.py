"""The OBD source's coalescing end to end: the HIL ECU emulator on a real python-can virtual bus."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from edge.sources.obd.pids import PIDS
from edge.sources.obd.scheduler import PollSpec
from edge.sources.obd.source import ObdConfig, ObdSource
from hil.ecu import EcuEmulator, EmulatedEcu, demo_vehicle
from lienwatch.clock import SystemClock

from .conftest import Collect


def poll_for(source: ObdSource, sink: Collect, seconds: float) -> None:
    """Run the source's poll loop for `seconds` of real time, sleeping as it asks (as the runner does)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(source.poll(sink), 0.5, max(0.0, deadline - time.monotonic())))


def requests_and_samples(channel: str, coalesce: float, seconds: float) -> tuple[int, int, dict[str, int]]:
    # 0x0C and 0x42 (engine ECU only: multi-PID requests) at periods that are not multiples of
    # each other: alone they meet every 0.6 s only, riding along every 0.2 s.
    config = ObdConfig(
        interface="virtual", channel=channel, timeout_s=0.1, read_vin=False, coalesce=coalesce,
        plan=[PollSpec(0x0C, 0.2, 0), PollSpec(0x42, 0.3, 1)],
    )
    source = ObdSource("obd", SystemClock(), config)
    sink = Collect()
    source.open()
    try:
        poll_for(source, sink, 0.5)  # discovery and the first DTC read
        assert source.client is not None and source.client.ecus
        requests, samples = source.client.requests, len(sink.samples)
        poll_for(source, sink, seconds)
        counts = {path: len(values) for path, values in sink.by_path().items()}
        return source.client.requests - requests, len(sink.samples) - samples, counts
    finally:
        source.close()


def test_riding_along_needs_fewer_requests_per_sample_against_the_emulated_ecus(
    emulate: Callable[..., EcuEmulator], channel: str
) -> None:
    # The HIL engine ECU alone: it takes multi-PID requests, so every request here is functional.
    emulate([EmulatedEcu(index=0, values=dict(demo_vehicle()[0].values))])
    seconds = 3.0
    plain_requests, plain_samples, plain_counts = requests_and_samples(channel, 0.0, seconds)
    requests, samples, counts = requests_and_samples(channel, 0.5, seconds)
    # the same samples (5/s + 3.3/s), in 5 requests/s instead of 6.7/s
    assert samples == pytest.approx(plain_samples, rel=0.1)
    assert samples >= 0.9 * seconds * (1 / 0.2 + 1 / 0.3)
    for path, n in counts.items():
        assert n == pytest.approx(plain_counts[path], abs=2), path
    assert plain_requests / plain_samples >= 0.75  # 0.8 expected
    assert requests / samples <= min(0.68, 0.85 * plain_requests / plain_samples)  # 0.6 expected


def test_under_the_bus_load_cap_riders_are_left_out_before_a_due_pid_is(
    emulate: Callable[..., EcuEmulator], channel: str
) -> None:
    emulate([EmulatedEcu(index=0, values=dict(demo_vehicle()[0].values))])
    config = ObdConfig(
        interface="virtual", channel=channel, timeout_s=0.1, read_vin=False,
        max_bus_load=1e-5,  # 0.04 frames/s: the bucket holds what the test puts in it
        plan=[PollSpec(0x0C, 1.0, 0), PollSpec(0xA6, 1.5, 1)], poll_supported=False,
    )
    source = ObdSource("obd", SystemClock(), config)
    rpm, volts = (source.catalog.id_of(PIDS[pid].vss) for pid in (0x0C, 0xA6))
    sink = Collect()
    source.open()
    try:
        source.poll(sink)  # discovery
        source.poll(sink)  # t=0: both due, 4 frames of the bucket's 4
        assert source.scheduler is not None and source.bucket is not None
        assert {s.signal_id for s in sink.samples} >= {rpm, volts}

        def poll_at_next_due(tokens: float) -> set[int]:
            assert source.scheduler is not None and source.bucket is not None
            time.sleep(source.scheduler.next_due_s())
            source.bucket.tokens = tokens
            before = len(sink.samples)
            source.poll(sink)
            return {s.signal_id for s in sink.samples[before:]}

        # t=1.0: 0x0C due, 0xA6 (due at 1.5) may ride; with it the reply is 9 bytes, two frames and
        # our flow control: 4 frames; 0x0C alone 2
        assert poll_at_next_due(2.5) == {rpm}
        # t=1.5: 0xA6 due, 0x0C (due at 2.0) rides, as the bucket has room
        assert poll_at_next_due(4.5) == {rpm, volts}
    finally:
        source.close()
