"""The `gnss` source: NMEA 0183 from a serial device, a pty or a file (replay).

Bytes are read without blocking, split into lines at LF, CRLF or CR (a line longer than 4 KiB
is one corrupt line, its rest dropped; memory stays bounded), parsed by `NmeaParser` and
assembled into `GnssFix`es. Each fix becomes catalog samples (position, altitude, heading,
accuracy, fix type, speed, satellites, HDOP, mean C/N0), is handed whole to `on_fix` (the agent
batches fixes into telemetry) and disciplines the wall clock through `discipline`.

Slow sentences (GSA, GSV, GST, ZDA; VTG when RMC has speed and course) are parsed at most about
once per `slow_sentence_interval_s` (default 1 s; 0 parses every sentence), see `throttle.py`;
with a 10 Hz receiver that is about 30 % less CPU for this thread. Fixes keep their rate and their
position, time, speed and fix type; HorizontalAccuracy and MeanCN0 samples come from parsed
GST/GSV only (a fix's reused values, `GnssFix.reused`, are not sent again as new samples). Health
counts the lines not parsed as `sentences_skipped`.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import termios
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO

from edge.sources.base import HealthState, SampleSink, Source, SourceError
from edge.sources.gnss.clock import ClockDiscipline, ClockQuality, DisciplineHook
from edge.sources.gnss.fix import EpochAssembler, GnssFix
from edge.sources.gnss.nmea import NmeaParser
from edge.sources.gnss.throttle import SlowSentenceThrottle, check_interval
from edge.sources.registry import Option, SourceContext, SourceSpec
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog, default_catalog

MAX_PENDING = 4096
MAX_READ_INTERVAL_S = 0.25
"""Longest rest between reads: the tty's 4 KiB line buffer fills in ~0.35 s at 115,200 baud."""
_BAUD = {
    4800: termios.B4800,
    9600: termios.B9600,
    19200: termios.B19200,
    38400: termios.B38400,
    57600: termios.B57600,
    115200: termios.B115200,
    230400: termios.B230400,
    460800: termios.B460800,
}


class LineSplitter:
    """Bytes in, complete lines out, ended by LF, CRLF or a lone CR (some receivers send CR only).

    Memory is bounded: a line that grows past `max_pending` bytes without an end is handed on
    once as its first `max_pending + 1` bytes (which the parser counts as one corrupt line) and
    the rest of it is dropped up to its end; `overflows` counts such lines.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._buffer = b""
        self._skipping = False  # inside an over-long line already handed on
        self.overflows = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self._buffer + data).splitlines(keepends=True)  # bytes: splits on \n, \r\n, \r
        rest = lines.pop() if lines and lines[-1][-1:] not in (b"\n", b"\r") else b""
        if self._skipping and lines:  # the end of the over-long line
            lines.pop(0)
            self._skipping = False
        if self._skipping:
            rest = b""
        elif len(rest) > self.max_pending:
            lines.append(rest[: self.max_pending + 1])
            rest, self._skipping = b"", True
            self.overflows += 1
        self._buffer = rest
        return [line.rstrip(b"\r\n") for line in lines]

    def flush(self) -> list[bytes]:
        rest, self._buffer, self._skipping = self._buffer, b"", False
        return [rest] if rest else []


def read_lines(stream: BinaryIO, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a file or pipe, read in large chunks, each line bounded (`LineSplitter`)."""
    splitter = LineSplitter()
    while chunk := stream.read(chunk_bytes):
        yield from splitter.feed(chunk)
    yield from splitter.flush()


class NmeaLog:
    """A parser and an epoch assembler for a finite log, with its stats afterwards. `undecoded`
    types are checked and counted but not decoded (`gnss parse` prints nothing from GSV or GST)."""

    def __init__(self, *, undecoded: frozenset[str] = frozenset()) -> None:
        self.parser = NmeaParser(undecoded=undecoded)
        self.assembler = EpochAssembler()

    def fixes(self, lines: Iterable[bytes], mono_ns: Callable[[], int] | None = None) -> Iterator[GnssFix]:
        for counter, line in enumerate(lines, 1):
            for sentence in self.parser.sentences(line):
                yield from self.assembler.feed(sentence, mono_ns() if mono_ns else counter)
        yield from self.assembler.flush()


class GnssSource(Source):
    """Reads a GNSS receiver's NMEA stream and emits samples and fixes."""

    kind = "gnss"

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        device: str,
        baudrate: int = 9600,
        loop_file: bool = False,
        silent_after_s: float = 5.0,
        no_fix_after_s: float = 10.0,
        fallback_quality: ClockQuality = ClockQuality.UNKNOWN,
        on_fix: Callable[[GnssFix], None] | None = None,
        on_clock_discipline: DisciplineHook | None = None,
        catalog: Catalog | None = None,
        chunk_bytes: int = 4096,
        slow_sentence_interval_s: float = 1.0,
        read_interval_s: float = 0.1,
    ) -> None:
        super().__init__(name, clock)
        if baudrate not in _BAUD:
            raise ConfigError(f"sources.{name}.baudrate {baudrate} is not one of {sorted(_BAUD)}")
        interval_s = check_interval(slow_sentence_interval_s, f"sources.{name}.slow_sentence_interval_s")
        if not 0 < read_interval_s <= MAX_READ_INTERVAL_S:
            raise ConfigError(
                f"sources.{name}.read_interval_s must be > 0 and <= {MAX_READ_INTERVAL_S} s, "
                f"got {read_interval_s}"
            )
        self.read_interval_s = float(read_interval_s)
        self.device = device
        self.baudrate = baudrate
        self.loop_file = loop_file
        self.silent_after_ns = round(silent_after_s * 1e9)
        self.no_fix_after_ns = round(no_fix_after_s * 1e9)
        self.on_fix = on_fix
        self.catalog = catalog or default_catalog()
        self.chunk_bytes = chunk_bytes
        self.discipline = ClockDiscipline(clock, fallback=fallback_quality, hook=on_clock_discipline)
        self.parser = NmeaParser(SlowSentenceThrottle(interval_s, clock) if interval_s > 0 else None)
        self.assembler = EpochAssembler()
        self.splitter = LineSplitter()
        self.latest_fix: GnssFix | None = None
        self._fd: int | None = None
        self._is_file = False
        self._at_eof = False
        self._last_bytes_ns = clock.monotonic_ns()
        self._last_position_ns: int | None = None
        ids = self.catalog.id_of
        self._ids = {
            "lat": ids("Vehicle.CurrentLocation.Latitude"),
            "lon": ids("Vehicle.CurrentLocation.Longitude"),
            "alt": ids("Vehicle.CurrentLocation.Altitude"),
            "heading": ids("Vehicle.CurrentLocation.Heading"),
            "hacc": ids("Vehicle.CurrentLocation.HorizontalAccuracy"),
            "fix": ids("Vehicle.CurrentLocation.GNSSReceiver.FixType"),
            "speed": ids("Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround"),
            "sats": ids("Vehicle.CurrentLocation.GNSSReceiver.SatellitesUsed"),
            "hdop": ids("Vehicle.CurrentLocation.GNSSReceiver.HDOP"),
            "cn0": ids("Vehicle.CurrentLocation.GNSSReceiver.MeanCN0"),
        }

    def open(self) -> None:
        try:
            fd = os.open(self.device, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as error:
            raise SourceError(f"cannot open GNSS device {self.device}: {error.strerror}") from None
        self._is_file = stat.S_ISREG(os.fstat(fd).st_mode)
        if os.isatty(fd):
            with contextlib.suppress(termios.error):
                _configure_tty(fd, self.baudrate)
        self._fd = fd
        self._at_eof = False
        self._last_bytes_ns = self.clock.monotonic_ns()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def poll(self, sink: SampleSink) -> float:
        assert self._fd is not None
        at_eof = self._at_eof
        data = self._read()
        now = self.clock.monotonic_ns()
        if data:
            self._last_bytes_ns = now
            self.feed(data, sink)
        if self._at_eof and not at_eof:  # end of a replayed log: its last epoch is complete
            self._deliver(self.feed_end(), sink)
        self._update_health(now)
        if self._is_file:
            return 0.0 if data else 0.5
        # Bytes queue in the tty meanwhile (N_TTY holds 4 KiB: 0.1 s of a 10 Hz receiver at
        # 115,200 baud is ~1.2 kB). A full read means more is queued: read again at once.
        return 0.0 if len(data) >= self.chunk_bytes else self.read_interval_s

    def _read(self) -> bytes:
        assert self._fd is not None
        if not self._is_file:
            ready, _, _ = select.select([self._fd], [], [], 0)
            if not ready:
                return b""
        try:
            data = os.read(self._fd, self.chunk_bytes)
        except BlockingIOError:
            return b""
        except OSError as error:  # EIO: the pty's other side went away; a USB receiver unplugged
            raise SourceError(f"GNSS device {self.device} read failed: {error.strerror}") from None
        if not data:
            if self._is_file and self.loop_file:
                os.lseek(self._fd, 0, os.SEEK_SET)
            elif self._is_file:
                self._at_eof = True
            else:
                raise SourceError(f"GNSS device {self.device} closed")
        return data

    def feed(self, data: bytes, sink: SampleSink | None) -> list[GnssFix]:
        """Parse raw bytes (any chunking) and deliver the fixes they complete."""
        fixes: list[GnssFix] = []
        for line in self.splitter.feed(data):
            self.health.frames += 1
            for sentence in self.parser.sentences(line):
                fixes.extend(self.assembler.feed(sentence, self.clock.monotonic_ns()))
        self.health.errors = self.parser.stats.skipped  # an over-long line is one corrupt line
        self._deliver(fixes, sink)
        return fixes

    def feed_end(self) -> list[GnssFix]:
        """The epoch in progress, closed (the input ended)."""
        fixes = []
        for line in self.splitter.flush():
            self.health.frames += 1
            for sentence in self.parser.sentences(line):
                fixes.extend(self.assembler.feed(sentence, self.clock.monotonic_ns()))
        return fixes + self.assembler.flush()

    def deliver(self, fixes: list[GnssFix], sink: SampleSink | None) -> None:
        """Hand on epochs assembled elsewhere, exactly as parsed ones are (a HIL bench that
        simulates weeks of driving skips the NMEA text, which costs ~7 ms an epoch)."""
        self._deliver(fixes, sink)

    def _deliver(self, fixes: list[GnssFix], sink: SampleSink | None) -> None:
        for fix in fixes:
            self.latest_fix = fix
            self.discipline.observe(fix)
            if fix.fix.has_position:
                self._last_position_ns = fix.mono_ns
            if sink is not None:
                self._emit_fix(fix, sink)
            if self.on_fix is not None:
                self.on_fix(fix)

    def _emit_fix(self, fix: GnssFix, sink: SampleSink) -> None:
        t, ids = fix.mono_ns, self._ids
        self.emit(sink, ids["fix"], float(fix.fix), t)
        values = {
            "lat": fix.lat,
            "lon": fix.lon,
            "alt": fix.alt_m,
            "heading": fix.course_deg,
            "hacc": fix.h_acc_m,
            "speed": fix.speed_kmh,
            "sats": fix.sats,
            "hdop": fix.hdop,
            "cn0": fix.mean_cn0,
        }
        if not fix.fix.has_position:
            for key in ("lat", "lon", "alt", "heading", "hacc", "speed"):
                values[key] = None
        if fix.reused:  # values of an earlier epoch: already sent as samples then
            if "GST" in fix.reused:
                values["hacc"] = None
            if "GSV" in fix.reused:
                values["cn0"] = None
        for key, value in values.items():
            if value is not None:
                self.emit(sink, ids[key], float(value), t)

    def _update_health(self, now: int) -> None:
        health = self.health
        for reason, n in self.parser.stats.rejected.items():
            health.counters[f"nmea_{reason}"] = n
        health.counters["line_overflows"] = self.splitter.overflows
        health.counters["sentences_skipped"] = sum(self.parser.stats.throttled.values())
        health.counters["epochs"] = self.assembler.epochs
        health.counters["implausible_values"] = sum(self.assembler.implausible.values())
        if self._is_file and self._at_eof:
            health.set(HealthState.DEGRADED, "end of replay file")
        elif now - self._last_bytes_ns >= self.silent_after_ns:
            health.set(HealthState.DEGRADED, "receiver silent")
        elif self._last_position_ns is None or now - self._last_position_ns >= self.no_fix_after_ns:
            health.set(HealthState.DEGRADED, "no position fix")
        else:
            health.set(HealthState.OK, "")


def _configure_tty(fd: int, baudrate: int) -> None:
    """Raw 8N1 at `baudrate`, no echo, no line discipline."""
    attrs = termios.tcgetattr(fd)
    attrs[0] = 0  # iflag
    attrs[1] = 0  # oflag
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag
    attrs[3] = 0  # lflag
    attrs[4] = attrs[5] = _BAUD[baudrate]
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    try:
        quality = ClockQuality[options["fallback_clock_quality"].upper()]
    except KeyError:
        raise ConfigError(
            f"sources.{name}.fallback_clock_quality must be one of {[q.name.lower() for q in ClockQuality]}"
        ) from None
    return GnssSource(
        name,
        context.clock,
        device=options["device"],
        baudrate=options["baudrate"],
        loop_file=options["loop_file"],
        silent_after_s=options["silent_after_s"],
        no_fix_after_s=options["no_fix_after_s"],
        fallback_quality=quality,
        catalog=context.catalog,
        on_fix=context.on_fix,
        on_clock_discipline=context.on_clock_discipline,
        slow_sentence_interval_s=options["slow_sentence_interval_s"],
        read_interval_s=options["read_interval_s"],
    )


SPEC = SourceSpec(
    kind="gnss",
    description="GNSS receiver speaking NMEA 0183 (serial device, pty, or a file replayed)",
    options=(
        Option("device", str, "/dev/ttyACM0", "serial device, pty or NMEA log file"),
        Option("baudrate", int, 9600, "serial speed (ignored for files and ptys)"),
        Option("loop_file", bool, False, "replay a log file again from the start at its end"),
        Option("silent_after_s", float, 5.0, "no byte for this long = receiver silent"),
        Option("no_fix_after_s", float, 10.0, "no position for this long = degraded"),
        Option(
            "fallback_clock_quality", str, "unknown", "clock quality without GNSS time: ntp, rtc, unknown"
        ),
        Option(
            "slow_sentence_interval_s", float, 1.0,
            "parse GSA/GSV/GST/ZDA (and VTG) at most about this often; 0 = parse every sentence",
        ),
        Option(
            "read_interval_s", float, 0.1,
            f"rest between reads of the receiver's tty (bytes queue meanwhile), <= {MAX_READ_INTERVAL_S}",
        ),
    ),
    factory=_factory,
)
