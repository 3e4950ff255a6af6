"""The real agent for the fault-injection run (bench/faults.py), with a journal of what it accepted.

    python -m bench.fault_agent AGENT_TOML JOURNAL STOP_FLAG

Runs `edge.agent.runtime.Agent` from the TOML config with a synthetic speed source (50 Hz) and a
detector raising a WARNING or ALERT every ~1.5 s, so both receiver lanes carry traffic. After every
`outbox.append` returned (the record is accepted: on flash), one line `boot seq channel` goes to
JOURNAL (O_APPEND; the oracle the accounting checks against). On start it writes
`recovered torn_records N` (what the outbox counted as lost while replaying a torn tail). Once
STOP_FLAG exists, the source stops emitting: the outbox drains. SIGTERM stops the agent cleanly.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from edge.agent import logs
from edge.agent.config import load_config
from edge.agent.runtime import Agent
from edge.detect.base import Detector, Finding, Observation
from edge.sources.base import SampleSink, Source
from edge.uplink.queue import Channel, Priority
from lienwatch.clock import Clock, SystemClock
from protocol.catalog import default_catalog
from protocol.messages import Severity
from protocol.receipts import uplink_key

SPEED = default_catalog().id_of("Vehicle.Speed")
RPM, VOLTS = 3, 40  # engine speed and supply voltage (protocol/signals.toml)


class Speed(Source):
    """Speed, engine speed and supply voltage every 20 ms, until the stop flag appears."""

    kind = "fault-speed"

    def __init__(self, clock: Clock, stop_flag: Path) -> None:
        super().__init__("speed", clock)
        self.stop_flag = stop_flag
        self.value = 0.0
        self.polls = 0

    def open(self) -> None:
        pass

    def poll(self, sink: SampleSink) -> float:
        self.polls += 1
        if self.polls % 50 == 0 and self.stop_flag.exists():
            return 0.5
        self.value = (self.value + 0.5) % 130
        self.emit(sink, SPEED, self.value)
        self.emit(sink, RPM, 800.0 + 20 * self.value)
        self.emit(sink, VOLTS, 13.8 + (self.polls % 7) * 0.01)
        return 0.02

    def close(self) -> None:
        pass


class Every(Detector):
    """A finding every `period_s`: WARNING and ALERT in turn (events on the urgent lane)."""

    kind = "fault-every"

    def __init__(self, clock: Clock, period_s: float, stop_flag: Path) -> None:
        super().__init__("fault-every")
        self.clock = clock
        self.period_ns = int(period_s * 1e9)
        self.next_ns = clock.monotonic_ns() + self.period_ns
        self.count = 0
        self.stop_flag = stop_flag

    def observe(self, observation: Observation) -> Sequence[Finding]:
        now = self.clock.monotonic_ns()
        if now < self.next_ns or self.stop_flag.exists():
            return ()
        self.next_ns = now + self.period_ns
        self.count += 1
        severity = Severity.ALERT if self.count % 2 else Severity.WARNING
        return (Finding("fault-every", severity, observation.wall_ns, {"n": float(self.count)}),)


def main(argv: list[str]) -> int:
    config_path, journal_path, stop_flag = (Path(a) for a in argv)
    clock = SystemClock()
    logs.configure("info")
    agent = Agent(load_config(config_path), clock=clock, sources=[Speed(clock, stop_flag)],
                  detectors=[Every(clock, 1.5, stop_flag)])
    journal = os.open(journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(journal, f"recovered torn_records {agent.outbox.stats.torn_records}\n".encode())
    append = agent.outbox.append

    def journaled(payload: bytes, *, priority: Priority, channel: Channel,
                  key: tuple[int, int] | None = None) -> int:
        record_id = append(payload, priority=priority, channel=channel, key=key)
        found = key or uplink_key(payload)
        if found is not None:
            os.write(journal, f"{found[0]} {found[1]} {channel.name}\n".encode())
        return record_id

    agent.outbox.append = journaled  # type: ignore[method-assign]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return agent.run(stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
