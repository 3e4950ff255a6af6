"""The `dbc` source: passive CAN signals decoded with cantools and mapped to VSS by a manifest.

The manifest (TOML, see hil/vehicle_manifest.toml) names the DBC and, per signal, the DBC
message and signal and the catalog VSS path, optionally a `values` map (raw DBC value → catalog
enum value) and a `scale`. Only frames of mapped messages are decoded; a frame that does not
decode (wrong length, unmapped enum value) is counted, never passed on.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can

from edge.sources.base import SampleSink, Source
from edge.sources.can_bus import BusMonitor, check_channel, open_bus
from edge.sources.registry import Option, SourceContext, SourceSpec
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
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
    """A loaded manifest: the cantools database and, per frame id, the signals to take from it."""

    db: Any  # cantools.database.can.Database (cantools ships no type information)
    by_frame: Mapping[int, tuple[SignalMap, ...]]


def load_manifest(path: str | Path, catalog: Catalog | None = None) -> Manifest:
    """Read and check a manifest and its DBC; `ConfigError` naming the entry on any problem."""
    import cantools

    catalog = catalog or default_catalog()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read DBC manifest {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"DBC manifest {path} is not valid TOML: {error}") from None
    dbc_name = data.get("dbc")
    if not isinstance(dbc_name, str):
        raise ConfigError(f'DBC manifest {path}: `dbc = "file.dbc"` is required')
    dbc_path = path.parent / dbc_name
    try:
        db: Any = cantools.database.load_file(str(dbc_path), database_format="dbc")
    except OSError as error:
        raise ConfigError(f"cannot read DBC {dbc_path}: {error.strerror}") from None
    except Exception as error:  # cantools raises its own ParseError and others on a broken DBC
        raise ConfigError(f"DBC {dbc_path} does not parse: {error}") from None
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
        try:
            message = db.get_message_by_name(str(entry.get("message")))
        except KeyError:
            raise ConfigError(f"{where}: message {entry.get('message')!r} is not in {dbc_name}") from None
        signal_name = str(entry.get("signal"))
        if signal_name not in [s.name for s in message.signals]:
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
        scale = entry.get("scale", 1.0)
        if not isinstance(scale, int | float) or isinstance(scale, bool):
            raise ConfigError(f"{where}: scale must be a number")
        by_frame.setdefault(message.frame_id, []).append(
            SignalMap(signal_name, signal_id, values, float(scale))
        )
    return Manifest(db, {k: tuple(v) for k, v in by_frame.items()})


class DbcDecoder:
    """Frame → [(signal id, value)] for the manifest's signals; counts what it rejects."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.decoded = 0
        self.ignored = 0
        self.rejected = 0

    def decode(self, msg: can.Message) -> list[tuple[int, float]]:
        maps = self.manifest.by_frame.get(msg.arbitration_id)
        if maps is None or msg.is_error_frame or msg.is_remote_frame:
            self.ignored += 1
            return []
        try:
            raw = self.manifest.db.decode_message(msg.arbitration_id, bytes(msg.data), decode_choices=False)
        except Exception:  # cantools raises DecodeError, ValueError, KeyError... on a bad frame
            self.rejected += 1
            return []
        out: list[tuple[int, float]] = []
        for entry in maps:
            value = raw.get(entry.signal)
            if not isinstance(value, int | float):
                self.rejected += 1
                continue
            if entry.values is not None:
                mapped = entry.values.get(int(value))
                if mapped is None:
                    self.rejected += 1
                    continue
                value = mapped
            value = float(value) * entry.scale
            if not math.isfinite(value):
                self.rejected += 1
                continue
            out.append((entry.signal_id, value))
        self.decoded += 1
        return out


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
    ) -> None:
        super().__init__(name, clock)
        self.decoder = DbcDecoder(manifest)
        self.interface, self.channel, self.bitrate = interface, channel, bitrate
        self.silent_after_s = silent_after_s
        self.max_frames_per_poll = max_frames_per_poll
        self.bus: can.BusABC | None = None
        self.monitor = BusMonitor(clock, silent_after_s=silent_after_s)

    def open(self) -> None:
        self.bus = open_bus(self.interface, self.channel, bitrate=self.bitrate)
        self.monitor = BusMonitor(self.clock, silent_after_s=self.silent_after_s)

    def close(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.shutdown()

    def poll(self, sink: SampleSink) -> float:
        assert self.bus is not None
        msg = self.bus.recv(0.05)
        n = 0
        while msg is not None:
            self.handle(msg, sink)
            n += 1
            if n >= self.max_frames_per_poll:
                break
            msg = self.bus.recv(0)
        self._update_health()
        return 0.0

    def handle(self, msg: can.Message, sink: SampleSink) -> None:
        """Decode one frame (also usable by another reader of the same bus)."""
        if not self.monitor.observe(msg):
            return
        t = self.clock.monotonic_ns()
        for signal_id, value in self.decoder.decode(msg):
            self.emit(sink, signal_id, value, t)

    def _update_health(self) -> None:
        health = self.health
        health.frames = self.monitor.frames
        health.errors = self.decoder.rejected
        health.counters.update(
            decoded_frames=self.decoder.decoded,
            ignored_frames=self.decoder.ignored,
            error_frames=self.monitor.error_frames,
            bus_off_events=self.monitor.bus_off_events,
        )
        status = self.monitor.status(self.bus)
        health.set(status.state, status.detail)


def _factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    check_channel(options["interface"], options["channel"])
    manifest = load_manifest(options["manifest"], context.catalog)
    return DbcSource(
        name,
        context.clock,
        manifest=manifest,
        interface=options["interface"],
        channel=options["channel"],
        bitrate=options["bitrate"],
        silent_after_s=options["silent_after_s"],
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
    ),
    factory=_factory,
)
