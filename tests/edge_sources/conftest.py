"""Fixtures for the sources' tests: a real python-can virtual bus per test, the HIL ECU emulator."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import can
import pytest

from edge.sources.base import Sample
from hil.ecu import EcuEmulator, EmulatedEcu

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "hil" / "examples"


@pytest.fixture
def channel() -> str:
    """A virtual CAN channel name no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bus_factory(channel: str) -> Iterator[Callable[[], can.BusABC]]:
    buses: list[can.BusABC] = []

    def make() -> can.BusABC:
        bus = can.Bus(interface="virtual", channel=channel)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.shutdown()


@pytest.fixture
def emulate(bus_factory: Callable[[], can.BusABC]) -> Iterator[Callable[..., EcuEmulator]]:
    """Start an ECU emulator on the test's channel: `emulate([EmulatedEcu(...), ...])`."""
    running: list[EcuEmulator] = []

    def start(ecus: list[EmulatedEcu], **kwargs: object) -> EcuEmulator:
        emulator = EcuEmulator(bus_factory(), ecus, **kwargs)  # type: ignore[arg-type]
        running.append(emulator.start())
        return emulator

    yield start
    for emulator in running:
        emulator.stop()


class Collect:
    """A sample sink that keeps everything (tests only)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def __call__(self, sample: Sample) -> None:
        self.samples.append(sample)

    def by_path(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for sample in self.samples:
            out.setdefault(sample.path, []).append(sample.value)
        return out
