"""The `obd` source: discovers ECUs, polls PIDs on schedule, reads DTCs and the VIN.

The supported-PID bitmaps decide the poll plan: a configured PID no ECU supports is dropped
(counted as `pid_0x.._unsupported`), and with `poll_supported` every other supported PID of the
J1979 table joins the plan at `supported_period_s` and the lowest priority. The bus-load cap
(`max_bus_load`) holds whatever the plan's size: each request is charged the frames it really
puts on the bus (`request_frames`: its single frame, and per answering ECU the ISO-TP frames of
the reply, which the table's PID lengths give, plus the flow control a multi-frame reply needs).

Health: ok while ECUs answer; degraded when the bus is silent or off, when no ECU answers
(ignition off — then it only probes every `asleep_probe_s`) or some ECUs time out; failed when
the bus cannot be opened (the runner reopens it with backoff).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import can

from edge.sources.base import HealthState, SampleSink, Source
from edge.sources.can_bus import BusMonitor, check_channel, multicast_port, open_bus
from edge.sources.obd.client import ObdClient
from edge.sources.obd.pids import (
    CALIBRATION_IDS,
    CVNS,
    ECU_NAME,
    IPT_COMPRESSION,
    IPT_SPARK,
    PIDS,
    decode_pid,
)
from edge.sources.obd.scheduler import PollScheduler, PollSpec, TokenBucket
from edge.sources.registry import Option, SourceContext, SourceSpec
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from protocol.catalog import Catalog, default_catalog

# Default polling plan: (pid, period_s, priority). Speed and RPM drive the tow/ignition logic.
DEFAULT_PLAN: tuple[tuple[int, float, int], ...] = (
    (0x0D, 1.0, 0),
    (0x0C, 1.0, 0),
    (0x42, 5.0, 1),
    (0xA6, 10.0, 1),
    (0x05, 10.0, 2),
    (0x04, 5.0, 3),
    (0x10, 5.0, 3),
    (0x0F, 30.0, 4),
    (0x46, 60.0, 4),
    (0x5C, 30.0, 4),
    (0x2F, 60.0, 2),
    (0x1F, 30.0, 5),
    (0x21, 300.0, 3),
    (0x31, 300.0, 3),
    (0x01, 300.0, 3),
)


@dataclass(frozen=True, slots=True)
class ObdDiagnostics:
    """The latest DTCs, VIN and mode 09 data (strings, so they travel beside samples, not as samples).

    `calibration_ids`, `cvns` and `ecu_names` are per ECU label (`0x7E8`); `in_use_counters` are
    the in-use performance tracking counters (mode 09 PID 08 or 0B) per ECU label.
    """

    mono_ns: int
    vin: str | None
    stored_dtcs: tuple[str, ...]
    pending_dtcs: tuple[str, ...]
    calibration_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cvns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ecu_names: Mapping[str, str] = field(default_factory=dict)
    in_use_counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass
class ObdConfig:
    interface: str = "socketcan"
    channel: str = "can0"
    bitrate: int = 500_000
    extended_29bit: bool = False
    timeout_s: float = 0.1
    max_bus_load: float = 0.05
    dtc_period_s: float = 300.0
    read_vin: bool = True
    asleep_probe_s: float = 10.0
    silent_after_s: float = 5.0
    port: int | None = None  # udp_multicast only
    ecus: str = "primary"  # "primary": each PID from one ECU; "all": from every ECU that has it
    coalesce: float = 0.5  # PIDs up to this share of their period early ride along (scheduler docstring)
    poll_supported: bool = True  # also poll every other supported PID of the table (module docstring)
    supported_period_s: float = 60.0
    supported_priority: int = 9
    plan: list[PollSpec] = field(default_factory=lambda: [PollSpec(*row) for row in DEFAULT_PLAN])


class ObdSource(Source):
    """Polls J1979 PIDs, each from its primary ECU (see edge.sources.obd.client), emits catalog samples."""

    kind = "obd"

    def __init__(self, name: str, clock: Clock, config: ObdConfig, catalog: Catalog | None = None) -> None:
        super().__init__(name, clock)
        self.config = config
        self.catalog = catalog or default_catalog()
        for spec in config.plan:
            if spec.pid not in PIDS:
                raise ConfigError(f"sources.{name}.pids: no decoder for PID 0x{spec.pid:02X}")
        self.bus: can.BusABC | None = None
        self.client: ObdClient | None = None
        self.monitor: BusMonitor | None = None
        self.scheduler: PollScheduler | None = None
        self.bucket: TokenBucket | None = None
        self.diagnostics: ObdDiagnostics | None = None
        self._discovered = False
        self._next_discovery_ns = 0
        self._next_dtc_ns = 0

    def open(self) -> None:
        cfg = self.config
        # Only OBD responses reach this bus (in the kernel on SocketCAN): passive traffic is the
        # dbc source's, and error frames come through SocketCAN's separate error filter.
        response_filter = (
            {"can_id": 0x18DAF100, "can_mask": 0x1FFFFF00, "extended": True}
            if cfg.extended_29bit
            else {"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False}
        )
        extra: dict[str, Any] = {"port": cfg.port} if cfg.port and cfg.interface == "udp_multicast" else {}
        self.bus = open_bus(
            cfg.interface, cfg.channel, bitrate=cfg.bitrate, can_filters=[response_filter], **extra
        )
        self.monitor = BusMonitor(self.clock, silent_after_s=cfg.silent_after_s)
        self.client = ObdClient(
            self.bus,
            self.clock,
            extended_29bit=cfg.extended_29bit,
            timeout_s=cfg.timeout_s,
            monitor=self.monitor,
            primary_only=cfg.ecus == "primary",
        )
        self.scheduler = PollScheduler(cfg.plan, self.clock, cfg.coalesce)
        self.bucket = TokenBucket.for_bus_load(self.clock, cfg.bitrate, cfg.max_bus_load)
        self._discovered = False
        self._next_discovery_ns = self.clock.monotonic_ns()

    def close(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.shutdown()
        self.client = None

    def poll(self, sink: SampleSink) -> float:
        assert self.client is not None and self.scheduler is not None and self.bucket is not None
        client = self.client
        now = self.clock.monotonic_ns()
        if not self._discovered or self._all_asleep():
            if now < self._next_discovery_ns:
                client.pump(0)
                self._update_health()
                return min(0.5, (self._next_discovery_ns - now) / 1e9)
            self._discover()
            self._update_health()
            return 0.0 if self._discovered and not self._all_asleep() else self.config.asleep_probe_s
        due = self.scheduler.due()
        if not due:
            client.pump(0)  # keep the receive queue drained and the bus monitor current
        ecus = max(1, sum(1 for s in client.ecus.values() if not s.silent))
        polled: set[int] = set()
        wanted = set(due)
        # Due PIDs in as few requests as the client can; PIDs due soon ride along in free places.
        for request in self.scheduler.coalesce(due, client.plan):
            answering = 1 if request.target is not None else ecus
            if not self.bucket.try_take(request_frames(request.pids, answering)):
                # Riders make a reply longer: under the cap, send the due PIDs without them.
                bare = tuple(p for p in request.pids if p in wanted)
                if len(bare) == len(request.pids) or not self.bucket.try_take(
                    request_frames(bare, answering)
                ):
                    break
                request = replace(request, pids=bare)
            values: dict[int, dict[int, bytes]] = {}
            client.read(request, values)
            for data in values.values():
                for pid, raw in data.items():
                    if pid in PIDS:
                        for value in decode_pid(pid, raw):
                            self.emit(sink, self.catalog.id_of(value.vss), value.value)
            polled.update(request.pids)
        self.scheduler.done(polled)
        if self.clock.monotonic_ns() >= self._next_dtc_ns:
            self._read_dtcs(sink)
        self._update_health()
        return min(self.scheduler.next_due_s(), 0.5) if not due or polled else self.bucket.wait_s(2)

    def plan_for(self, supported: set[int]) -> list[PollSpec]:
        """The configured plan, plus (with `poll_supported`) every other supported PID of the table."""
        cfg = self.config
        plan = list(cfg.plan)
        if cfg.poll_supported:
            planned = {s.pid for s in plan}
            plan += [PollSpec(pid, cfg.supported_period_s, cfg.supported_priority)
                     for pid in sorted(supported) if pid in PIDS and pid not in planned]
        return plan

    def _all_asleep(self) -> bool:
        assert self.client is not None
        return bool(self.client.ecus) and all(s.silent for s in self.client.ecus.values())

    def _discover(self) -> None:
        assert self.client is not None and self.scheduler is not None
        client = self.client
        client.ecus.clear()
        client.discover()
        self._next_discovery_ns = self.clock.monotonic_ns() + round(self.config.asleep_probe_s * 1e9)
        self._discovered = bool(client.ecus)
        if not client.ecus:
            self.health.count("discovery_timeouts")
            return
        supported = set().union(*(s.supported for s in client.ecus.values()))
        self.scheduler = PollScheduler(self.plan_for(supported), self.clock, self.config.coalesce)
        for pid in self.scheduler.restrict(supported):
            self.health.count(f"pid_0x{pid:02X}_unsupported")
        if self.config.read_vin:
            client.read_vin()
            client.read_vehicle_info()
        self._next_dtc_ns = self.clock.monotonic_ns()

    def _read_dtcs(self, sink: SampleSink) -> None:
        assert self.client is not None
        client = self.client
        stored = client.read_dtcs(0x03)
        pending = client.read_dtcs(0x07)
        codes = tuple(sorted({c for cs in stored.values() for c in cs}))
        vins = [s.vin for s in client.ecus.values() if s.vin]
        label = client.addressing.ecu_label
        info = {label(e): s.vehicle_info for e, s in sorted(client.ecus.items())}
        self.diagnostics = ObdDiagnostics(
            self.clock.monotonic_ns(),
            vins[0] if vins else None,
            codes,
            tuple(sorted({c for cs in pending.values() for c in cs})),
            calibration_ids={e: i[CALIBRATION_IDS].texts for e, i in info.items() if CALIBRATION_IDS in i},
            cvns={e: i[CVNS].texts for e, i in info.items() if CVNS in i},
            ecu_names={e: i[ECU_NAME].texts[0] for e, i in info.items() if ECU_NAME in i},
            in_use_counters={e: (i.get(IPT_SPARK) or i[IPT_COMPRESSION]).counters for e, i in info.items()
                             if IPT_SPARK in i or IPT_COMPRESSION in i},
        )
        if stored:
            self.emit(sink, self.catalog.id_of("Vehicle.Diagnostics.DTCCount"), float(len(codes)))
        self._next_dtc_ns = self.clock.monotonic_ns() + round(self.config.dtc_period_s * 1e9)

    def _update_health(self) -> None:
        assert self.client is not None and self.monitor is not None
        client, health = self.client, self.health
        health.timeouts = sum(s.timeouts for s in client.ecus.values()) + health.counters.get(
            "discovery_timeouts", 0
        )
        health.counters["stale_replies"] = client.stale_replies
        health.counters["malformed_replies"] = client.malformed_replies
        health.counters["error_frames"] = self.monitor.error_frames
        health.counters["bus_off_events"] = self.monitor.bus_off_events
        health.frames = self.monitor.frames
        for ecu, state in client.ecus.items():
            health.counters[f"ecu_{client.addressing.ecu_label(ecu)}_timeouts"] = state.timeouts
            for nrc, n in state.negative.items():
                health.counters[f"ecu_{client.addressing.ecu_label(ecu)}_nrc_0x{nrc:02X}"] = n
        bus = self.monitor.status(self.bus)
        if bus.state is not HealthState.OK and not (client.ecus and not self._all_asleep()):
            health.set(bus.state, bus.detail)
        elif not self._discovered or not client.ecus:
            health.set(HealthState.DEGRADED, "no ECU answered (ignition off?)")
        elif self._all_asleep():
            health.set(HealthState.DEGRADED, "all ECUs silent (ignition off?)")
        elif any(s.silent for s in client.ecus.values()):
            silent = ", ".join(client.addressing.ecu_label(e) for e, s in client.ecus.items() if s.silent)
            health.set(HealthState.DEGRADED, f"ECU {silent} not answering")
        elif bus.state is not HealthState.OK:
            health.set(bus.state, bus.detail)
        else:
            health.set(HealthState.OK, "")


def request_frames(pids: tuple[int, ...] | list[int], answering: int) -> int:
    """CAN frames one mode 01 request for `pids` costs: 1, plus per answering ECU its reply's frames.

    A reply of n bytes (`41` and each PID with its data) is one ISO-TP single frame up to 7 bytes,
    else a first frame (6 bytes), consecutive frames of 7 and our flow control frame.
    """
    n = 1 + sum(1 + (PIDS[p].length if p in PIDS else 4) for p in pids)
    reply = 1 if n <= 7 else 2 + -(-(n - 6) // 7)
    return 1 + answering * reply


def _plan_from_config(name: str, rows: list[Any]) -> list[PollSpec]:
    plan = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "pid" not in row:
            raise ConfigError(
                f"sources.{name}.pids[{i}] must be a table like {{ pid = 0x0C, period_s = 1.0 }}"
            )
        unknown = set(row) - {"pid", "period_s", "priority"}
        if unknown:
            raise ConfigError(f"sources.{name}.pids[{i}]: unknown key(s) {sorted(unknown)}")
        try:
            plan.append(
                PollSpec(int(row["pid"]), float(row.get("period_s", 1.0)), int(row.get("priority", 5)))
            )
        except (TypeError, ValueError):
            raise ConfigError(
                f"sources.{name}.pids[{i}]: pid, period_s and priority must be numbers"
            ) from None
    return plan


def _factory(name: str, options: Mapping[str, Any], context: SourceContext) -> Source:
    check_channel(options["interface"], options["channel"])
    plan = _plan_from_config(name, options["pids"]) if options["pids"] else ObdConfig().plan
    if not options["supported_period_s"] > 0:
        raise ConfigError(f"sources.{name}.supported_period_s must be > 0")
    if options["ecus"] not in ("primary", "all"):
        raise ConfigError(f'sources.{name}.ecus must be "primary" or "all", not {options["ecus"]!r}')
    config = ObdConfig(
        interface=options["interface"],
        channel=options["channel"],
        bitrate=options["bitrate"],
        extended_29bit=options["extended_29bit"],
        timeout_s=options["timeout_s"],
        max_bus_load=options["max_bus_load"],
        dtc_period_s=options["dtc_period_s"],
        read_vin=options["read_vin"],
        asleep_probe_s=options["asleep_probe_s"],
        silent_after_s=options["silent_after_s"],
        port=multicast_port(name, options["port"]),
        ecus=options["ecus"],
        poll_supported=options["poll_supported"],
        supported_period_s=options["supported_period_s"],
        plan=plan,
    )
    return ObdSource(name, context.clock, config, context.catalog)


SPEC = SourceSpec(
    kind="obd",
    description="OBD-II (SAE J1979) PIDs, DTCs and VIN over ISO-TP on a CAN bus",
    options=(
        Option("interface", str, "socketcan", "python-can interface (socketcan, virtual, udp_multicast)"),
        Option("channel", str, "can0", "CAN channel; for udp_multicast an ff11:: group"),
        Option("bitrate", int, 500_000, "bus bitrate in bit/s (also sizes the bus-load cap)"),
        Option("extended_29bit", bool, False, "29-bit addressing (0x18DB33F1 / 0x18DAF1xx)"),
        Option("timeout_s", float, 0.1, "wait for ECU replies per request"),
        Option("max_bus_load", float, 0.05, "share of the bus the poller may use (0..1)"),
        Option("dtc_period_s", float, 300.0, "read stored/pending DTCs this often"),
        Option("read_vin", bool, True, "read the VIN (mode 09) after discovery"),
        Option("asleep_probe_s", float, 10.0, "when no ECU answers, probe this often"),
        Option("silent_after_s", float, 5.0, "no CAN frame for this long = bus silent"),
        Option("port", int, 0, "udp_multicast only: UDP port (0 = python-can's 43113)"),
        Option(
            "ecus",
            str,
            "primary",
            'which ECUs answer a PID: "primary" (one each: the lowest live response id that has it) or "all"',
        ),
        Option("poll_supported", bool, True,
               "also poll every other supported PID of the J1979 table, at supported_period_s"),
        Option("supported_period_s", float, 60.0, "period of the PIDs poll_supported adds"),
        Option(
            "pids",
            list,
            [],
            "polling plan: [{ pid = 0x0C, period_s = 1.0, priority = 0 }, ...]; empty = built-in plan",
        ),
    ),
    factory=_factory,
)
