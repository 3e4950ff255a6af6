"""The Linux side of the supervisor's UART link: set thresholds, sync time, read the MCU's events.

The frames are edge/mcu/frame.py's, the same code the MCU runs. Every request waits for its ACK
(or the events before it) on the injected clock; a silent or refusing MCU raises `McuLinkError`.
Events logged while the SoC slept become `Finding`s with their original times: the MCU's Unix
time once synced, else estimated from its uptime (said so in the finding). Garbage, truncated
and replayed frames are refused and counted in `counters()`.
"""

from __future__ import annotations

import os
import struct
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.detect.base import Finding
from edge.mcu import eventlog, frame
from edge.mcu.supervisor import (
    ACK,
    ACK_OK,
    EVENTS,
    HELLO,
    READ_EVENTS,
    SET_CONFIG,
    SLEEP,
    SYNC_TIME,
    Config,
)
from lienwatch.clock import Clock
from lienwatch.errors import LienwatchError
from protocol.messages import Severity


class McuLinkError(LienwatchError):
    """The supervisor did not answer, refused a request, or sent something unusable."""


class Transport(Protocol):
    def read(self, timeout_s: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...


class SerialTransport:
    """A tty (the SoC's UART to the MCU) in raw mode; `read` waits at most `timeout_s`."""

    def __init__(self, path: Path, baudrate: int = 115200) -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as error:
            raise McuLinkError(f"cannot open the MCU's UART {path}: {error.strerror}") from None
        try:
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            speed = getattr(termios, f"B{baudrate}", None)
            if speed is None:
                raise McuLinkError(f"unsupported baud rate {baudrate}")
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        except termios.error as error:
            os.close(self.fd)
            raise McuLinkError(f"{path} is not a serial port: {error}") from None

    def read(self, timeout_s: float) -> bytes:
        import select

        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        if not ready:
            return b""
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True, slots=True)
class McuEvent:
    index: int
    kind: str
    value: int
    time_ns: int  # UTC
    time_estimated: bool  # from the MCU's uptime: its clock was not synced yet


# What an MCU event means to the lender; bumps, plug-ins and boots are only counted.
_FINDINGS: dict[str, tuple[str, Severity, str]] = {
    "motion": ("mcu.tow", Severity.EMERGENCY, "motion held through the MCU's confirmation window "
                                               "while parked ({value} % of samples)"),
    "unplug": ("mcu.unplug", Severity.EMERGENCY, "supply fell to {value} mV: the tracker was unplugged"),
    "tilt": ("mcu.tilt", Severity.ALERT, "the car tilted {value}° while parked (a wheel lift?)"),
    "low_supply": ("mcu.low_supply", Severity.WARNING, "vehicle supply down to {value} mV while parked"),
}


class McuLink:
    def __init__(self, transport: Transport, clock: Clock, *, timeout_s: float = 1.0,
                 wall_ns: Callable[[], int] | None = None) -> None:
        self.transport = transport
        self.clock = clock
        self.timeout_s = timeout_s
        self._wall_ns = wall_ns or clock.wall_ns
        self.decoder = frame.Decoder()
        self.sender = frame.Sender(int.from_bytes(os.urandom(2), "big"))
        self.boot_id = int.from_bytes(os.urandom(4), "big")
        self.mcu_boot: int | None = None
        self._mcu_uptime: tuple[int, int] | None = None  # (MCU uptime ms, our wall ns) at its HELLO
        self.next_index = 0  # the first MCU event not yet read
        self.unanswered = 0
        self.malformed = 0
        self._pending: list[tuple[int, int, bytes]] = []

    def counters(self) -> dict[str, int]:
        return {**self.decoder.counters(), "unanswered": self.unanswered, "malformed": self.malformed}

    # ------------------------------------------------------------------ frames

    def _receive(self, until: Callable[[list[tuple[int, int, bytes]]], bool]) -> list[tuple[int, int, bytes]]:
        deadline = self.clock.monotonic_ns() + int(self.timeout_s * 1e9)
        reads_left = int(self.timeout_s / 0.05) + 2  # a clock that does not move (tests) ends too
        got = self._pending
        self._pending = []
        while not until(got):
            now = self.clock.monotonic_ns()
            reads_left -= 1
            if now >= deadline or reads_left < 0:
                self.unanswered += 1
                self._pending = got
                raise McuLinkError(f"the MCU did not answer within {self.timeout_s:g} s")
            data = self.transport.read(min(0.05, (deadline - now) / 1e9))
            for item in self.decoder.feed(data, now // 1_000_000):
                self._note_hello(item)
                got.append(item)
            self.decoder.expire(self.clock.monotonic_ns() // 1_000_000)
        return got

    def _note_hello(self, item: tuple[int, int, bytes]) -> None:
        kind, _, payload = item
        if kind == HELLO:
            if len(payload) != 12:
                self.malformed += 1
                return
            boot, uptime_ms = struct.unpack(">IQ", payload)
            self.mcu_boot = boot
            self._mcu_uptime = (uptime_ms, self._wall_ns())

    def _request(self, kind: int, payload: bytes = b"") -> list[tuple[int, int, bytes]]:
        data = self.sender.frame(kind, payload)
        seq = self.sender.seq
        self.transport.write(data)

        def acked(items: list[tuple[int, int, bytes]]) -> bool:
            return any(k == ACK and len(p) == 3 and struct.unpack(">HB", p)[0] == seq for k, _, p in items)

        items = self._receive(acked)
        status = next(struct.unpack(">HB", p)[1] for k, _, p in items
                      if k == ACK and len(p) == 3 and struct.unpack(">HB", p)[0] == seq)
        if status != ACK_OK:
            raise McuLinkError(f"the MCU refused request kind {kind} (status {status})")
        return items

    # ------------------------------------------------------------------ requests

    def hello(self) -> int:
        """Introduce ourselves (a new session for the MCU's replay check); the MCU's boot id."""
        self.transport.write(self.sender.frame(HELLO, struct.pack(">I", self.boot_id)))
        self._receive(lambda items: any(k == HELLO for k, _, _ in items))
        assert self.mcu_boot is not None
        return self.mcu_boot

    def sync_time(self) -> None:
        self._request(SYNC_TIME, struct.pack(">q", self._wall_ns() // 1_000_000))

    def set_config(self, config: Config) -> None:
        self._request(SET_CONFIG, config.pack())

    def sleep(self) -> None:
        """Tell the MCU the SoC goes down: it takes the current gravity as the tilt reference."""
        self._request(SLEEP)

    def read_events(self) -> list[McuEvent]:
        """The events logged since the last read, oldest first."""
        items = self._request(READ_EVENTS, struct.pack(">I", self.next_index))
        events = []
        for kind, _, payload in items:
            if kind != EVENTS:
                continue
            try:
                records = eventlog.unpack_many(payload)
            except ValueError:
                self.malformed += 1
                continue
            for index, time_ms, code, value in records:
                if index < self.next_index:
                    continue
                self.next_index = index + 1
                events.append(self._event(index, time_ms, code, value))
        return events

    def _event(self, index: int, time_ms: int, code: int, value: int) -> McuEvent:
        name = eventlog.KIND_NAMES.get(code, f"kind{code}")
        if time_ms >= 0:
            return McuEvent(index, name, value, time_ms * 1_000_000, False)
        uptime_then = -time_ms
        if self._mcu_uptime is None:
            return McuEvent(index, name, value, self._wall_ns(), True)
        uptime_now, wall_at = self._mcu_uptime
        return McuEvent(index, name, value, wall_at - (uptime_now - uptime_then) * 1_000_000, True)


class McuPoller:
    """The agent's use of the link: introduce itself and sync time on first contact, then read
    the MCU's events every `interval_s` as findings. Link errors are counted, never raised."""

    def __init__(self, link: McuLink, clock: Clock, interval_s: float = 10.0,
                 resume: tuple[int, int] | None = None) -> None:
        self.link = link
        self.clock = clock
        self.interval_ns = int(interval_s * 1e9)
        self._next_ns = clock.monotonic_ns()
        self.in_session = False
        self._session_boot: int | None = None
        #: (MCU boot id, first unread index) an earlier agent process had read up to
        self.resume = resume
        self.errors = 0
        self.last_error = ""
        self.events = 0

    @classmethod
    def open(cls, path: str, clock: Clock) -> McuPoller:
        return cls(McuLink(SerialTransport(Path(path)), clock, timeout_s=0.3), clock)

    def poll(self) -> list[Finding]:
        now = self.clock.monotonic_ns()
        if now < self._next_ns:
            return []
        self._next_ns = now + self.interval_ns
        try:
            if not self.in_session:
                self._session_boot = self.link.hello()
                if self.resume is not None and self.resume[0] == self._session_boot:
                    # the same MCU boot an earlier agent read: its log goes on where that one
                    # stopped. Another boot id (the MCU restarted, its log may have been reset)
                    # reads from 0: repeated events rather than lost ones.
                    self.link.next_index = max(self.link.next_index, self.resume[1])
                self.resume = None
                self.link.sync_time()
                self.in_session = True
            events = self.link.read_events()
            if self.link.mcu_boot != self._session_boot:
                self.in_session = False  # the MCU restarted: introduce ourselves and sync again
        except McuLinkError as error:
            self.errors += 1
            self.last_error = str(error)
            self.in_session = False
            return []
        self.events += len(events)
        return findings(events)

    def poll_now(self) -> None:
        """Make the next `poll()` read the log whatever the interval (the SoC just woke)."""
        self._next_ns = self.clock.monotonic_ns()

    def cursor(self) -> tuple[int, int] | None:
        """(MCU boot id, first unread index) of what this poller has read, once in a session."""
        if self._session_boot is None:
            return None
        return self._session_boot, self.link.next_index

    def snapshot(self) -> dict[str, object]:
        return {"in_session": self.in_session, "events": self.events, "errors": self.errors,
                "last_error": self.last_error, "next_index": self.link.next_index, **self.link.counters()}


def findings(events: list[McuEvent]) -> list[Finding]:
    """The MCU's events as detector findings, with their original times."""
    out = []
    for event in events:
        rule = _FINDINGS.get(event.kind)
        if rule is None:
            continue
        detector, severity, text = rule
        detail = text.format(value=event.value)
        if event.time_estimated:
            detail += " (time estimated from the MCU's uptime)"
        out.append(Finding(detector, severity, event.time_ns, {"mcu_value": float(event.value),
                                                               "mcu_index": float(event.index)}, detail))
    return out
