"""The `uds` source: manufacturer DIDs (UDS 0x22) of one ECU, per a model's table, as catalog samples.

Each DID of the table is read every `period_s` (its signals' shortest), on a grid as the OBD
scheduler keeps one; a DID that is late by more than a period is re-phased, so a silent ECU costs
one read per period, never a burst. Every signal of a DID is decoded from one reply, so a
short reply (fewer bytes than the table's fields reach) is counted `short_replies` and none of its
values is taken. Health: ok while the ECU answers; degraded when it times out (ignition off, not
fitted: after 3 timeouts in a row it is `silent` and only probed every `asleep_probe_s`) or answers
with negative responses (counted per NRC, `nrc_0x31`); failed when the bus cannot be opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import can

from edge.sources.base import HealthState, SampleSink, Source
from edge.sources.can_bus import BusMonitor, check_channel, multicast_port, open_bus
from edge.sources.obd.client import NegativeResponse
from edge.sources.registry import Option, SourceContext, SourceSpec
from edge.sources.uds.client import UdsClient
from edge.sources.uds.didtable import DidTable, load_table
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog, default_catalog


@dataclass
class UdsConfig:
    table: DidTable
    interface: str = "socketcan"
    channel: str = "can0"
    bitrate: int = 500_000
    timeout_s: float = 0.2
    pending_timeout_s: float = 2.0
    asleep_probe_s: float = 30.0
    port: int | None = None  # udp_multicast only


class UdsSource(Source):
    """Reads a model's DIDs from its battery (or any) ECU and emits their signals."""

    kind = "uds"

    def __init__(self, name: str, clock: Clock, config: UdsConfig, catalog: Catalog | None = None) -> None:
        super().__init__(name, clock)
        self.config = config
        self.catalog = catalog or default_catalog()
        self.dids = config.table.dids
        self.bus: can.BusABC | None = None
        self.client: UdsClient | None = None
        self.monitor: BusMonitor | None = None
        self._next_ns: dict[int, int] = {}
        self._failing: dict[int, str] = {}  # DID → why its last read gave no values
        self._period_ns = {did: round(config.table.period_of(did) * 1e9) for did in self.dids}

    def open(self) -> None:
        cfg, table = self.config, self.config.table
        mask = 0x1FFFFFFF if table.extended_29bit else 0x7FF
        response_filter = {"can_id": table.response_id, "can_mask": mask, "extended": table.extended_29bit}
        extra: dict[str, Any] = {"port": cfg.port} if cfg.port and cfg.interface == "udp_multicast" else {}
        self.bus = open_bus(cfg.interface, cfg.channel, bitrate=cfg.bitrate, can_filters=[response_filter],
                            **extra)
        self.monitor = BusMonitor(self.clock)
        self.client = UdsClient(self.bus, self.clock, request_id=table.request_id,
                                response_id=table.response_id, extended_29bit=table.extended_29bit,
                                timeout_s=cfg.timeout_s, pending_timeout_s=cfg.pending_timeout_s,
                                monitor=self.monitor)
        now = self.clock.monotonic_ns()
        self._next_ns = {did: now for did in self.dids}

    def close(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.shutdown()
        self.client = None

    def poll(self, sink: SampleSink) -> float:
        assert self.client is not None
        client = self.client
        now = self.clock.monotonic_ns()
        for did in sorted(self.dids, key=lambda d: self._next_ns[d]):
            if self._next_ns[did] > now:
                break
            self._read(did, sink)
            period = self._period_ns[did]
            if client.stats.silent:
                period = max(period, round(self.config.asleep_probe_s * 1e9))
            following = self._next_ns[did] + period
            now = self.clock.monotonic_ns()
            self._next_ns[did] = following if following > now else now + period
        self._update_health()
        return max(0.0, min(0.5, (min(self._next_ns.values()) - self.clock.monotonic_ns()) / 1e9))

    def _read(self, did: int, sink: SampleSink) -> None:
        assert self.client is not None
        reply = self.client.read_did(did)
        if reply is None:
            return  # a timeout: the ECU's state, not the DID's
        if isinstance(reply, NegativeResponse):
            self._failing[did] = f"NRC 0x{reply.nrc:02X}"
            return
        if len(reply) < self.config.table.data_length(did):
            self.health.count("short_replies")
            self._failing[did] = f"{len(reply)} bytes, the table needs {self.config.table.data_length(did)}"
            return
        self._failing.pop(did, None)
        for signal in self.dids[did]:
            self.emit(sink, self.catalog.id_of(signal.field.vss), signal.field.value(reply))

    def _update_health(self) -> None:
        assert self.client is not None and self.monitor is not None
        stats, health = self.client.stats, self.health
        health.timeouts = stats.timeouts
        health.frames = self.monitor.frames
        health.counters["stale_replies"] = stats.stale
        health.counters["malformed_replies"] = stats.malformed
        for nrc, n in stats.negative.items():
            health.counters[f"nrc_0x{nrc:02X}"] = n
        label = f"{self.config.table.model} at 0x{self.config.table.response_id:X}"
        if stats.silent:
            health.set(HealthState.DEGRADED, f"ECU {label} not answering (ignition off?)")
        elif self._failing:
            why = "; ".join(f"DID 0x{did:04X}: {reason}" for did, reason in sorted(self._failing.items()))
            health.set(HealthState.DEGRADED, f"ECU {label}: {why}")
        elif stats.consecutive_timeouts:
            health.set(HealthState.DEGRADED, f"ECU {label}: {stats.consecutive_timeouts} timeouts in a row")
        else:
            health.set(HealthState.OK, "")


def _factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    check_channel(options["interface"], options["channel"])
    if not options["table"]:
        raise ConfigError(f"sources.{name}.table is required: a DID table file, or one of the shipped "
                          "tables (example-bev)")
    for key in ("timeout_s", "pending_timeout_s", "asleep_probe_s"):
        if not options[key] > 0:
            raise ConfigError(f"sources.{name}.{key} must be > 0")
    config = UdsConfig(
        table=load_table(options["table"], context.catalog),
        interface=options["interface"],
        channel=options["channel"],
        bitrate=options["bitrate"],
        timeout_s=options["timeout_s"],
        pending_timeout_s=options["pending_timeout_s"],
        asleep_probe_s=options["asleep_probe_s"],
        port=multicast_port(name, options["port"]),
    )
    return UdsSource(name, context.clock, config, context.catalog)


SPEC = SourceSpec(
    kind="uds",
    description="manufacturer data identifiers (UDS ReadDataByIdentifier 0x22) per a model's DID table",
    options=(
        Option("table", str, "", "DID table: a TOML file, or a shipped one (example-bev)"),
        Option("interface", str, "socketcan", "python-can interface (socketcan, virtual, udp_multicast)"),
        Option("channel", str, "can0", "CAN channel; for udp_multicast an ff11:: group"),
        Option("bitrate", int, 500_000, "bus bitrate in bit/s"),
        Option("timeout_s", float, 0.2, "wait for the ECU's reply per DID"),
        Option("pending_timeout_s", float, 2.0, "wait after NRC 0x78 (response pending)"),
        Option("asleep_probe_s", float, 30.0, "when the ECU is silent, read each DID this often"),
        Option("port", int, 0, "udp_multicast only: UDP port (0 = python-can's 43113)"),
    ),
    factory=_factory,
)
