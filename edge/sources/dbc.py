"""The `dbc` source: passive CAN signals decoded with a DBC and mapped to VSS by a manifest.

The manifest (TOML, see hil/vehicle_manifest.toml) names the DBC and, per signal, the DBC
message and signal and the catalog VSS path, optionally a `values` map (raw DBC value → catalog
enum value) and a `scale`. Only frames of mapped messages are decoded (a dict lookup first; on
SocketCAN the kernel drops the others); a frame that does not decode (a length other than the DBC
message's, shorter or longer; an unmapped enum value) is counted, never passed on. The DBC is
compiled by cantools into bit layouts (edge/sources/dbc_layout.py) — in a child process when the
agent builds the source, so the agent never holds cantools — and frames are decoded from those
layouts.

Body and battery messages repeat every 10–100 ms with the same content, so the source emits on
change with a refresh (`DbcDecoder.changes`): a frame whose manifest-mapped bits equal those of
the last cleanly decoded frame of its id is not decoded again; a signal is emitted when its value
differs from the one last emitted, and all of a message's signals again when a frame of it arrives
`refresh_s` or more after their last emission. Bits the manifest does not map (rolling counters,
CRCs) do not count as a change.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from cython_ext.canframe import ChangeDecoder, FrameBatch
from edge.sources.base import Sample, SampleSink, Source
from edge.sources.can_bus import (
    BusMonitor,
    QueuedFrameReader,
    check_channel,
    multicast_port,
    open_bus,
    set_receive_buffer,
)
from edge.sources.dbc_layout import FrameLayout, SignalLayout, compile_dbc, compile_dbc_isolated
from edge.sources.dbc_reference import decode_frame, frame_entries
from edge.sources.registry import Option, SourceContext, SourceSpec
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from lienwatch.tomlfile import parse_toml
from protocol.catalog import Catalog, default_catalog
from protocol.errors import UnknownSignalError


@dataclass(frozen=True, slots=True)
class SignalMap:
    """One manifest entry: DBC signal → catalog signal id, with optional enum map and scale."""

    signal: str
    signal_id: int
    values: Mapping[int, float] | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: per frame id the message's layout and the signals to take from it.

    `masks[frame_id]` has a 1 at every payload bit (int.from_bytes(data, "little") numbering) that
    a mapped signal of that message reads; a multiplexed message's mask covers the whole payload.
    """

    layouts: Mapping[int, FrameLayout]
    by_frame: Mapping[int, tuple[SignalMap, ...]]
    masks: Mapping[int, int] = field(default_factory=dict)

    def can_filters(self) -> list[dict[str, Any]]:
        """python-can filters that pass exactly the mapped frame ids (for the kernel on SocketCAN)."""
        filters: list[dict[str, Any]] = []
        for frame_id in sorted(self.by_frame):
            extended = self.layouts[frame_id].extended
            filters.append({"can_id": frame_id, "can_mask": 0x1FFFFFFF if extended else 0x7FF,
                            "extended": extended})
        return filters


def _message_mask(layout: FrameLayout, signal_names: set[str]) -> int:
    if layout.multiplexed:  # which signals a frame carries depends on its multiplexer
        return (1 << (8 * 64)) - 1
    mask = 0
    for signal in layout.signals:
        if signal.name in signal_names:
            mask |= signal.bits()
    return mask


def load_manifest(path: str | Path, catalog: Catalog | None = None, *, isolate: bool = False) -> Manifest:
    """Read and check a manifest and its DBC; `ConfigError` naming the entry on any problem.

    With `isolate` the DBC is compiled in a child process (cantools never loads into this one).
    """
    catalog = catalog or default_catalog()
    path = Path(path)
    try:
        data = parse_toml(path.read_text("utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read DBC manifest {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"DBC manifest {path} is not valid TOML: {error}") from None
    dbc_name = data.get("dbc")
    if not isinstance(dbc_name, str):
        raise ConfigError(f'DBC manifest {path}: `dbc = "file.dbc"` is required')
    dbc_path = path.parent / dbc_name
    messages = compile_dbc_isolated(dbc_path) if isolate else compile_dbc(dbc_path)
    by_frame: dict[int, list[SignalMap]] = {}
    entries = data.get("signal", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"DBC manifest {path}: no [[signal]] entries")
    for i, entry in enumerate(entries):
        where = f"DBC manifest {path.name} signal[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(entry) - {"message", "signal", "vss", "values", "scale"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        message = messages.get(str(entry.get("message")))
        if message is None:
            raise ConfigError(f"{where}: message {entry.get('message')!r} is not in {dbc_name}")
        signal_name = str(entry.get("signal"))
        if signal_name not in {s.name for s in message.signals}:
            raise ConfigError(f"{where}: signal {signal_name!r} is not in message {message.name}")
        try:
            signal_id = catalog.id_of(str(entry.get("vss")))
        except UnknownSignalError as error:
            raise ConfigError(f"{where}: {error}") from None
        values = entry.get("values")
        if values is not None:
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: values must be a table of raw = catalog value")
            try:
                values = {int(k): float(v) for k, v in values.items()}
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: values must map integers to numbers") from None
            if not all(math.isfinite(v) for v in values.values()):
                raise ConfigError(f"{where}: values must be finite numbers")
        scale = entry.get("scale", 1.0)
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale):
            raise ConfigError(f"{where}: scale must be a finite number")
        by_frame.setdefault(message.frame_id, []).append(
            SignalMap(signal_name, signal_id, values, float(scale))
        )
    layouts = {layout.frame_id: layout for layout in messages.values() if layout.frame_id in by_frame}
    masks = {
        frame_id: _message_mask(layouts[frame_id], {m.signal for m in maps})
        for frame_id, maps in by_frame.items()
    }
    return Manifest(layouts, {k: tuple(v) for k, v in by_frame.items()}, masks)


BATCH_FRAMES = 100
"""Frames the dbc source lets queue between two reads when it cannot learn the socket's buffer."""
FRAME_BUFFER_BYTES = 1024
"""Receive-buffer bytes one queued frame is reckoned to take (measured: ~830 for a udp_multicast
datagram; a SocketCAN frame's socket buffer is of the same order)."""


_INT64 = 1 << 63
_VALUE_IDENTITY, _VALUE_INT, _VALUE_INT_FLOAT, _VALUE_FLOAT = range(4)  # cython_ext.canframe's kinds
_CEntry = tuple[int, bool, int, int, bool, int, int, int, int, float, float, float,
                "tuple[tuple[int, float], ...] | None"]


def _c_entry(layout: FrameLayout, signal: SignalLayout, m: SignalMap) -> _CEntry | None:
    """One manifest entry as cython_ext.canframe.ChangeDecoder decodes it, or None if it cannot
    do so exactly as `FrameDecoder` + `decode_frame` (then the message is decoded in Python)."""
    factor, offset = signal.factor, signal.offset
    identity = type(factor) is int and factor == 1 and offset == 0
    values = None
    if m.values is not None:
        if signal.is_float or not all(-_INT64 <= k < _INT64 for k in m.values):
            return None  # int() of a NaN raises in Python; keys beyond int64 never match in C
        values = tuple(m.values.items())
    if signal.is_float:
        kind = _VALUE_IDENTITY if identity else _VALUE_FLOAT
    else:
        if not signal.signed and signal.length == 64:
            return None  # raw values beyond int64
        top = 1 << (signal.length - 1 if signal.signed else signal.length)
        if identity:
            kind = _VALUE_IDENTITY
        elif type(factor) is int:
            kind = _VALUE_INT if type(offset) is int else _VALUE_INT_FLOAT
            exact = top * abs(factor) + (abs(offset) if type(offset) is int else 0)
            if exact >= _INT64:  # Python's integers do not overflow; int64 would
                return None
        else:
            kind = _VALUE_FLOAT
            if values is not None and not top * abs(factor) + abs(offset) < 1e300:
                return None  # int(inf) raises in Python
    if signal.little_endian:
        shift = signal.start
    else:  # big-endian bit position of the LSB, counted from the end of the payload
        shift = 8 * layout.length - (8 * (signal.start // 8) + 7 - signal.start % 8 + signal.length)
    int_factor = factor if kind in (_VALUE_INT, _VALUE_INT_FLOAT) else 0
    int_offset = offset if kind == _VALUE_INT else 0
    return (m.signal_id, signal.little_endian, shift, signal.length, signal.signed,
            signal.length if signal.is_float else 0, kind, int(int_factor), int(int_offset),
            float(factor), float(offset), m.scale, values)


def compile_messages(manifest: Manifest) -> list[tuple[int, int, bytes, list[_CEntry], Any]]:
    """The manifest's messages as `ChangeDecoder` takes them: native where every mapped signal
    decodes exactly in C, else with a Python fallback (`decode_frame`)."""
    out = []
    for frame_id, maps in manifest.by_frame.items():
        layout = manifest.layouts[frame_id]
        by_name = {s.name: s for s in layout.signals}
        entries = [None if layout.multiplexed else _c_entry(layout, by_name[m.signal], m) for m in maps]
        fallback = None
        if any(entry is None for entry in entries):
            fallback = functools.partial(decode_frame, layout.decoder({m.signal for m in maps}),
                                         frame_entries(layout, maps))
            entries = [(m.signal_id, True, 0, 1, False, 0, 0, 0, 0, 1.0, 0.0, m.scale, None) for m in maps]
        mask = manifest.masks[frame_id] & ((1 << (8 * 64)) - 1)
        out.append((frame_id, layout.length, mask.to_bytes(64, "little"),
                    [entry for entry in entries if entry is not None], fallback))
    return out


class DbcDecoder:
    """Frame → [(signal id, value)] for the manifest's signals; counts what it rejects.

    `decode` decodes every mapped frame; `changes` applies the on-change rule with a refresh
    (module docstring); `process` does that for a whole `FrameBatch` in compiled code
    (cython_ext.canframe; edge/sources/dbc_reference.py is the same in Python). Counters:
    `decoded` frames decoded cleanly, `rejected` frames or signals that did not decode, `ignored`
    frames of unmapped ids (and error/remote frames), `unchanged` frames skipped because their
    mapped bits repeated the last clean frame's.
    """

    def __init__(self, manifest: Manifest, *, refresh_s: float = 1.0) -> None:
        if not refresh_s >= 0:
            raise ConfigError(f"dbc refresh_s must be >= 0, got {refresh_s}")
        self.manifest = manifest
        self.refresh_ns = round(refresh_s * 1e9)
        self.compiled = ChangeDecoder(compile_messages(manifest), self.refresh_ns)
        self._one = FrameBatch(1)

    @property
    def decoded(self) -> int:
        return self.compiled.decoded

    @property
    def rejected(self) -> int:
        return self.compiled.rejected

    @property
    def ignored(self) -> int:
        return self.compiled.ignored

    @property
    def unchanged(self) -> int:
        return self.compiled.unchanged

    def _single(self, msg: can.Message) -> FrameBatch:
        one = self._one
        one.clear()
        one.append_message(msg)
        return one

    def decode(self, msg: can.Message) -> list[tuple[int, float]]:
        self.compiled.process(self._single(msg), 0, None, False)
        return self.compiled.output()

    def changes(self, msg: can.Message, mono_ns: int) -> list[tuple[int, float]]:
        """The samples one frame received at `mono_ns` contributes under the on-change rule.

        With `refresh_s` = 0 every mapped frame is decoded and all its signals returned.
        """
        self.compiled.process(self._single(msg), mono_ns, None, True)
        return self.compiled.output()

    def process(self, batch: FrameBatch, mono_ns: int, monitor: BusMonitor) -> int:
        """`changes` for a batch received at `mono_ns`, each frame accounted in `monitor` first
        (error and remote frames go no further); how many samples `emit` then hands on."""
        return self.compiled.process(batch, mono_ns, monitor, True)

    def emit(self, sink: SampleSink, mono_ns: int) -> int:
        """The last `process`'s samples to `sink`, stamped `mono_ns`; how many."""
        return self.compiled.emit(sink, Sample, mono_ns)


class DbcSource(Source):
    """Listens to a CAN bus and emits the manifest's signals from every matching frame."""

    kind = "dbc"

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        manifest: Manifest,
        interface: str,
        channel: str,
        bitrate: int = 500_000,
        silent_after_s: float = 5.0,
        max_frames_per_poll: int = 2000,
        refresh_s: float = 1.0,
        read_interval_s: float = 0.1,
        kernel_filter: bool = True,
        port: int | None = None,
        receive_buffer_bytes: int = 1 << 20,
    ) -> None:
        super().__init__(name, clock)
        self.decoder = DbcDecoder(manifest, refresh_s=refresh_s)
        self.interface, self.channel, self.bitrate = interface, channel, bitrate
        self.silent_after_s = silent_after_s
        self.max_frames_per_poll = max_frames_per_poll
        self.read_interval_s = read_interval_s
        self.kernel_filter = kernel_filter
        self.port = port
        self.receive_buffer_bytes = receive_buffer_bytes
        self.batch_frames = BATCH_FRAMES
        self.bus: can.BusABC | None = None
        self.reader: QueuedFrameReader | None = None
        self._batch = FrameBatch(max_frames_per_poll)
        self._single = FrameBatch(1)
        self.monitor = BusMonitor(clock, silent_after_s=silent_after_s)
        self._last_read_ns: int | None = None

    def open(self) -> None:
        options: dict[str, Any] = {}
        if self.interface == "socketcan" and self.kernel_filter:
            # The kernel drops unmapped ids (error frames come through SocketCAN's own error
            # filter). Elsewhere python-can would filter in user space after unpacking each
            # frame, which is no cheaper than the decoder's dict lookup and would hide error frames.
            options["can_filters"] = self.decoder.manifest.can_filters()
        if self.port is not None and self.interface == "udp_multicast":
            options["port"] = self.port
        self.bus = open_bus(self.interface, self.channel, bitrate=self.bitrate, **options)
        self.reader = QueuedFrameReader(self.bus, self.interface)
        self.monitor = BusMonitor(self.clock, silent_after_s=self.silent_after_s)
        self._last_read_ns = None
        buffer_bytes = set_receive_buffer(self.bus, self.receive_buffer_bytes)
        self.batch_frames = (
            BATCH_FRAMES if buffer_bytes is None else max(16, buffer_bytes // FRAME_BUFFER_BYTES // 2)
        )
        self.health.counters["receive_buffer_bytes"] = buffer_bytes or 0

    def close(self) -> None:
        if self.reader is not None:
            reader, self.reader = self.reader, None
            reader.close()
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.shutdown()

    def poll(self, sink: SampleSink) -> float:
        """Drain what the bus has queued, then rest while frames queue up in the socket.

        Reading in batches wakes the thread a few dozen times a second instead of once per frame
        (or burst). The rest is `read_interval_s`, shortened so that at the rate just seen at most
        `batch_frames` frames queue meanwhile: half of what the socket's receive buffer holds at
        `FRAME_BUFFER_BYTES` a frame (`BATCH_FRAMES` when the bus has no socket).
        """
        assert self.reader is not None
        since_ns = self._last_read_ns
        batch = self._batch
        n = self.reader.read_into(batch, 0.25, self.max_frames_per_poll)
        now_ns = self._last_read_ns = self.clock.monotonic_ns()
        self._take(batch, sink, now_ns)  # a batch is stamped with the time it was read
        self._update_health()
        if not n:
            return 0.0
        if since_ns is None or now_ns <= since_ns:
            return self.read_interval_s
        rate_per_s = n * 1e9 / (now_ns - since_ns)
        return min(self.read_interval_s, self.batch_frames / rate_per_s)

    def _take(self, batch: FrameBatch, sink: SampleSink, mono_ns: int) -> None:
        if self.decoder.process(batch, mono_ns, self.monitor):
            health = self.health
            health.samples += self.decoder.emit(sink, mono_ns)
            health.last_sample_mono_ns = mono_ns

    def handle(self, msg: can.Message, sink: SampleSink, mono_ns: int | None = None) -> None:
        """Decode one frame received at `mono_ns` (default: now); also usable by another reader."""
        t = self.clock.monotonic_ns() if mono_ns is None else mono_ns
        self._single.clear()
        self._single.append_message(msg)
        self._take(self._single, sink, t)

    def handle_batch(self, batch: FrameBatch, sink: SampleSink, mono_ns: int) -> None:
        """Decode a batch of frames received at `mono_ns` (what `poll` does with each read)."""
        self._take(batch, sink, mono_ns)

    def _update_health(self) -> None:
        health = self.health
        health.frames = self.monitor.frames
        malformed = self.reader.malformed if self.reader is not None else 0
        health.errors = self.decoder.rejected + malformed
        health.counters.update(
            malformed_datagrams=malformed,
            decoded_frames=self.decoder.decoded,
            unchanged_frames=self.decoder.unchanged,
            ignored_frames=self.decoder.ignored,
            error_frames=self.monitor.error_frames,
            bus_off_events=self.monitor.bus_off_events,
        )
        status = self.monitor.status(self.bus)
        health.set(status.state, status.detail)


def _factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    check_channel(options["interface"], options["channel"])
    if options["receive_buffer_bytes"] < 0:
        raise ConfigError(f"sources.{name}.receive_buffer_bytes must be >= 0 (0 = the system default)")
    manifest = load_manifest(options["manifest"], context.catalog, isolate=True)
    return DbcSource(
        name,
        context.clock,
        manifest=manifest,
        interface=options["interface"],
        channel=options["channel"],
        bitrate=options["bitrate"],
        silent_after_s=options["silent_after_s"],
        refresh_s=options["refresh_s"],
        read_interval_s=options["read_interval_s"],
        kernel_filter=options["kernel_filter"],
        port=multicast_port(name, options["port"]),
        receive_buffer_bytes=options["receive_buffer_bytes"],
    )


SPEC = SourceSpec(
    kind="dbc",
    description="passive CAN signals decoded with a DBC and mapped to VSS by a TOML manifest",
    options=(
        Option("manifest", str, help="decoder manifest TOML (names the DBC)"),
        Option("interface", str, "socketcan", "python-can interface"),
        Option("channel", str, "can0", "CAN channel; for udp_multicast an ff11:: group"),
        Option("bitrate", int, 500_000, "bus bitrate in bit/s"),
        Option("silent_after_s", float, 5.0, "no CAN frame for this long = bus silent"),
        Option(
            "refresh_s",
            float,
            1.0,
            "emit a signal on change, and again at least this often while its message repeats; "
            "0 = decode and emit every frame",
        ),
        Option(
            "read_interval_s",
            float,
            0.1,
            f"longest rest between reads of the receive queue (less if {BATCH_FRAMES} frames would queue)",
        ),
        Option(
            "kernel_filter",
            bool,
            True,
            "SocketCAN: the kernel passes only the manifest's frame ids (silent = no mapped frame)",
        ),
        Option("port", int, 0, "udp_multicast only: UDP port (0 = python-can's 43113)"),
        Option(
            "receive_buffer_bytes",
            int,
            1 << 20,
            "kernel receive buffer to ask for (capped by net.core.rmem_max); 0 = the system default",
        ),
    ),
    factory=_factory,
)
