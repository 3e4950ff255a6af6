"""The agent: all wiring in one place (sources → ring buffers → detectors → outbox → MQTT).

Threads: one per source (its `SourceRunner`), the MQTT network thread, the run loop, and `mcu`
with `[power.mcu]` (edge.power.mcuwatch: it only hands the MCU's findings to the run loop). Sources
only append to the bounded `SampleInbox`; paho callbacks only append to the link's event queue;
everything else — ring buffers, detectors, telemetry batches, the flash queue, command handling,
status — happens on the run loop's thread, one `step()` per `agent.tick_s`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from edge.actuators.agent import Actuators, vehicle_reading
from edge.actuators.interrupt import InterruptEvent
from edge.agent import logs
from edge.agent.config import AgentConfig
from edge.agent.downlink import CommandHandler, Outcome, load_command_keys
from edge.agent.messages import HeaderFactory, kernel_clock_quality
from edge.agent.status import write_status
from edge.agent.telemetry import TelemetryBatcher, TelemetrySettings
from edge.agent.watchdog import Notifier
from edge.detect.base import Detector
from edge.detect.driving import Driving
from edge.detect.lifecycle import Update
from edge.detect.pipeline import DetectionPipeline
from edge.detect.registry import DetectorContext, build_detector
from edge.power.manager import PowerManager
from edge.power.mcuwatch import McuWatch
from edge.power.sleep import SleepAction, Sleeper
from edge.sources.base import Sample, Source, SourceRunner
from edge.sources.registry import SourceContext, build_source
from edge.uplink.mqtt import MqttLink, MqttSettings
from edge.uplink.queue import Channel, FlashQueue, Priority, QueueConfig, QueueError
from edge.uplink.sender import DataBudget, ReceiptSettings, Uplink
from lienwatch import __version__
from lienwatch.clock import Clock, SystemClock
from lienwatch.errors import ConfigError, LienwatchError
from protocol import encode
from protocol.bodies import driving_day_fits
from protocol.catalog import default_catalog
from protocol.errors import ProtocolError
from protocol.messages import (
    HEADER_WANTS_RECEIPTS,
    AckStatus,
    ClockQuality,
    DrivingDay,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    MessageKind,
    SampleColumns,
    SetConfig,
    Severity,
    Status,
    TelemetryBatch,
    Transition,
)
from protocol.receipts import uplink_key
from protocol.topics import command_topic, receipt_topic, topic_for

if TYPE_CHECKING:
    from edge.sources.gnss.fix import GnssFix as GnssEpoch

log = logging.getLogger("lienwatch.agent")

_PRIORITY = {Severity.WARNING: Priority.WARNING, Severity.ALERT: Priority.ALERT,
             Severity.EMERGENCY: Priority.EMERGENCY}
_CHANNEL_KIND = {Channel.TELEMETRY: MessageKind.TELEMETRY, Channel.EVENT: MessageKind.EVENT,
                 Channel.STATUS: MessageKind.STATUS, Channel.COMMAND_ACK: MessageKind.COMMAND_ACK}
T = TypeVar("T")
GNSS_HOLDOVER_NS = 600 * 10**9  # GNSS-disciplined time is trusted this long after the last fix
REMOTE_CONFIG_FILE = "remote_config.json"
RECEIPTS_SEEN_FILE = "receipts_seen"  # the cloud confirmed a record once: from now on wait for receipts


class Inbox(Generic[T]):
    """Bounded hand-off from source threads to the run loop; overflow is counted, never blocks."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        self.overflow = 0
        self.received = 0

    def put(self, item: T) -> None:
        if len(self._items) >= self.capacity:
            self.overflow += 1  # shown in status; the run loop is too slow for the sources
            return
        self._items.append(item)
        self.received += 1

    def drain(self) -> list[T]:
        items = self._items
        out = []
        for _ in range(len(items)):
            out.append(items.popleft())
        return out


SampleInbox = Inbox[Sample]


class Agent:
    """The running agent. `start()`, then `step()` per tick (or `run(stop)`), then `shutdown()`."""

    def __init__(self, config: AgentConfig, *, clock: Clock | None = None,
                 sources: Sequence[Source] | None = None, detectors: Sequence[Detector] | None = None,
                 notifier: Notifier | None = None, boot_id: int | None = None,
                 sleep_action: SleepAction | None = None) -> None:
        self.clock = clock or SystemClock()
        self.state_dir = Path(str(config["agent.state_dir"]))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config = self._with_remote_overrides(config)
        cfg = self.config
        self.device_id = cfg.device_id
        self._wall_offset_ns = 0  # GNSS time − system wall time, set by the GNSS clock discipline
        self._last_gnss_time_mono_ns: int | None = None
        self.receipts = self._receipt_settings(cfg)
        self.headers = HeaderFactory(self.device_id, self.clock, boot_id=boot_id,
                                     clock_quality=self._clock_quality, wall_ns=self.wall_ns,
                                     flags=HEADER_WANTS_RECEIPTS if self.receipts.asks else 0)
        self.notifier = notifier or Notifier(self.clock)
        self.catalog = default_catalog()
        self.inbox: Inbox[Sample] = Inbox(int(cfg["agent.sample_inbox"]))
        self.fix_inbox: Inbox[Any] = Inbox(1024)  # whole GNSS fixes (edge.sources.gnss.fix.GnssFix)
        self._last_fix: GnssFix | None = None
        source_context = SourceContext(clock=self.clock, catalog=self.catalog, on_fix=self.fix_inbox.put,
                                       on_clock_discipline=self._on_clock_discipline)
        self.sources = list(sources) if sources is not None else [
            build_source(table, source_context) for table in cfg.sources]
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"sources: names must be unique, got {names}")
        detector_context = DetectorContext(clock=self.clock, catalog=self.catalog, vehicle=cfg.vehicle,
                                           state_dir=self.state_dir, device_id=self.device_id)
        self.detectors = list(detectors) if detectors is not None else [
            build_detector(table, detector_context) for table in cfg.detectors]
        self.mcu = McuWatch.from_config(cfg.values, self.clock, self.wall_ns,  # None: no [power.mcu]
                                        self.state_dir)
        if self.mcu is not None:
            self.detectors.append(self.mcu)  # its findings take the detectors' path to the wire
        self.detection = DetectionPipeline(self.detectors, event_ids=self.headers.event_id,
                                           vehicle=cfg.vehicle, state_dir=self.state_dir,
                                           catalog=self.catalog)
        self._held_warnings: list[bytes] = []  # WARNING transitions ride the next telemetry batch
        self._held_since_ns: int | None = None
        self.runners = [SourceRunner(source, self.inbox.put) for source in self.sources]
        self.outbox = FlashQueue(self.state_dir / "outbox", self._queue_config(cfg), self.clock)
        self.budget = DataBudget(int(cfg["uplink.budget.daily_cap_bytes"]),
                                 float(cfg["uplink.budget.event_reserve_fraction"]), self.clock)
        self.link = MqttLink(self._mqtt_settings(cfg), self.clock)
        topics = {channel: topic_for(kind, self.device_id) for channel, kind in _CHANNEL_KIND.items()}
        self.uplink = Uplink(self.outbox, self.link, topics, self.budget, clock=self.clock,
                             receipts=self.receipts, device_id=self.device_id)
        self.batcher = TelemetryBatcher(self._telemetry_settings(cfg), self.clock)
        self.power = PowerManager.from_config(cfg.values, self.clock)
        self.sleeper = Sleeper.from_config(cfg.values, self.power, self.mcu, self.clock,  # None: never
                                           self._persist_before_sleep, sleep_action)
        self._latest: dict[int, Sample] = {}
        self.actuators = Actuators.from_config(cfg.values, self.clock, self.state_dir,
                                               self._queue_actuator_event)
        self.commands = CommandHandler(
            self.device_id, load_command_keys(Path(str(cfg["downlink.command_keys"]))), self.clock,
            self.state_dir, apply_config=self.apply_remote_config, position=self.position,
            geofences=self.detection.geofences, clear_event=self.clear_event, actuators=self.actuators,
            max_lifetime_s=float(cfg["downlink.max_command_lifetime_s"]),
            replay_cache_size=int(cfg["downlink.replay_cache_size"]))
        self._started_mono_ns = self.clock.monotonic_ns()
        self._next_status_file_ns = 0
        self._next_heartbeat_ns = 0
        self.findings = 0
        self.telemetry_refused = 0
        self.append_failures: dict[str, int] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.stop_requested = threading.Event()
        self.exit_code = 0

    # ------------------------------------------------------------------ configuration

    def _with_remote_overrides(self, config: AgentConfig) -> AgentConfig:
        path = self.state_dir / REMOTE_CONFIG_FILE
        if not path.exists():
            return config
        try:
            data = json.loads(path.read_text())
            return config.with_settings(data["settings"], int(data["version"]))
        except (OSError, ValueError, KeyError, TypeError, LienwatchError) as error:
            # A remote config that no longer fits the file (e.g. after an upgrade) is set aside.
            log.error("remote config ignored", extra={"detail": str(error)})
            os.replace(path, path.with_suffix(".rejected"))
            return config

    @staticmethod
    def _queue_config(cfg: AgentConfig) -> QueueConfig:
        return QueueConfig(max_bytes=int(cfg["uplink.queue.max_bytes"]),
                           segment_bytes=int(cfg["uplink.queue.segment_bytes"]),
                           sync_interval_s=float(cfg["uplink.queue.sync_interval_s"]),
                           sync_bytes=int(cfg["uplink.queue.sync_bytes"]))

    @staticmethod
    def _telemetry_settings(cfg: AgentConfig) -> TelemetrySettings:
        return TelemetrySettings(float(cfg["uplink.telemetry.batch_interval_s"]),
                                 int(cfg["uplink.telemetry.batch_max_bytes"]),
                                 float(cfg["uplink.telemetry.sample_period_s"]))

    def _mqtt_settings(self, cfg: AgentConfig) -> MqttSettings:
        settings = MqttSettings(
            host=str(cfg["uplink.mqtt.host"]), port=int(cfg["uplink.mqtt.port"]),
            client_id=self.device_id, ca_file=Path(str(cfg["uplink.mqtt.ca_file"])),
            cert_file=Path(str(cfg["uplink.mqtt.cert_file"])),
            key_file=Path(str(cfg["uplink.mqtt.key_file"])),
            keepalive_s=int(cfg["uplink.mqtt.keepalive_s"]),
            session_expiry_s=int(cfg["uplink.mqtt.session_expiry_s"]),
            inflight_window=int(cfg["uplink.mqtt.inflight_window"]),
            reconnect_min_s=float(cfg["uplink.mqtt.reconnect_min_s"]),
            reconnect_max_s=float(cfg["uplink.mqtt.reconnect_max_s"]),
            connect_timeout_s=float(cfg["uplink.mqtt.connect_timeout_s"]),
            will_topic=topic_for(MessageKind.EVENT, self.device_id),
            will_factory=self._will_payload,
            will_delay_s=int(cfg["uplink.mqtt.will_delay_s"]),
            subscribe_topics=(command_topic(self.device_id),
                              *((receipt_topic(self.device_id),) if self.receipts.asks else ())),
        )
        settings.check_files()
        return settings

    def _receipt_settings(self, cfg: AgentConfig) -> ReceiptSettings:
        mode = str(cfg["uplink.receipts.mode"])
        return ReceiptSettings(mode=mode, timeout_s=float(cfg["uplink.receipts.timeout_s"]),
                               max_unconfirmed=int(cfg["uplink.receipts.max_unconfirmed"]),
                               receipt_topic=receipt_topic(self.device_id),
                               seen_file=self.state_dir / RECEIPTS_SEEN_FILE)

    def _will_payload(self) -> bytes:
        """The last will: an offline WARNING event the broker publishes if we vanish."""
        return encode(Event(self.headers.header(), self.headers.event_id(), Severity.WARNING,
                            "uplink.offline", self.clock.wall_ns(),
                            detail="connection to the broker lost without a clean disconnect"))

    def apply_remote_config(self, action: SetConfig) -> Outcome:
        """Validate, write, swap, persist; the previous config comes back if the swap fails."""
        old = self.config
        version = action.config.config_version
        if version < old.remote_version:
            return Outcome(AckStatus.REJECTED, f"config version {version} is older than the "
                                               f"applied {old.remote_version}")
        try:
            new = old.with_settings(action.config.settings, version)
        except ConfigError as error:
            return Outcome(AckStatus.REJECTED, f"ConfigError: {error}")
        path = self.state_dir / REMOTE_CONFIG_FILE
        staged = path.with_suffix(".new")
        previous = json.loads(path.read_text())["settings"] if path.exists() else {}
        merged = {**previous, **action.config.settings}
        with open(staged, "w", encoding="utf-8") as handle:
            json.dump({"version": version, "settings": merged}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            self._swap(new)
        except Exception as error:
            self._swap(old)
            staged.unlink(missing_ok=True)
            log.error("new config failed to start; previous restored", extra={"detail": str(error)})
            return Outcome(AckStatus.FAILED, f"{type(error).__name__}: {error}; previous config restored")
        os.replace(staged, path)
        _fsync_dir(self.state_dir)
        log.info("remote config applied", extra={"config_version": version,
                                                 "settings": sorted(action.config.settings)})
        return Outcome(AckStatus.DONE, f"config version {version} applied")

    def _swap(self, cfg: AgentConfig) -> None:
        """Put a validated config into effect (only the remotely changeable parts)."""
        queue_config = self._queue_config(cfg)
        telemetry = self._telemetry_settings(cfg)
        self.outbox.config = queue_config
        self.batcher.settings = telemetry
        self.budget.daily_cap_bytes = int(cfg["uplink.budget.daily_cap_bytes"])
        self.budget.event_reserve_fraction = float(cfg["uplink.budget.event_reserve_fraction"])
        logs.set_level(str(cfg["agent.log_level"]))
        self.outbox.tick()  # the outbox works with the new settings
        self.config = cfg

    # ------------------------------------------------------------------ time

    def wall_ns(self) -> int:
        """UTC now: the system wall clock corrected by GNSS time once a receiver provided it."""
        return self.clock.wall_ns() + self._wall_offset_ns

    def _on_clock_discipline(self, offset_ns: int, quality: object) -> None:
        # Called on the GNSS source's thread: one attribute store, nothing else.
        self._wall_offset_ns = int(offset_ns)

    def _clock_quality(self) -> ClockQuality:
        last = self._last_gnss_time_mono_ns
        if last is not None and self.clock.monotonic_ns() - last <= GNSS_HOLDOVER_NS:
            return ClockQuality.GNSS
        return kernel_clock_quality()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for runner in self.runners:
            runner.start()
        self.link.start()
        if self.mcu is not None:
            self.mcu.start()
        self.notifier.ready(f"device {self.device_id}, {len(self.sources)} sources")
        log.info("agent started", extra={"device_id": self.device_id, "boot_id": self.headers.boot_id,
                                         "sources": [s.name for s in self.sources],
                                         "detectors": [d.name for d in self.detectors],
                                         "queued": self.outbox.depth, "version": __version__})

    def run(self, stop: threading.Event | None = None) -> int:
        """Step until `stop` (or a Reboot command); then shut down. Returns the exit code."""
        stop = stop or self.stop_requested
        self.start()
        tick_s = float(self.config["agent.tick_s"])
        try:
            while not stop.is_set() and not self.stop_requested.is_set():
                started = self.clock.monotonic_ns()
                self.step()
                spent_s = (self.clock.monotonic_ns() - started) / 1e9
                stop.wait(max(tick_s - spent_s, 0.0))
        finally:
            self.shutdown()
        return self.exit_code

    def step(self) -> None:
        """One tick: samples → ring buffers → detectors → outbox; pump the uplink; status."""
        now_mono = self.clock.monotonic_ns()
        now_wall = self.wall_ns()
        mono_to_wall = now_wall - now_mono
        epochs: list[GnssEpoch] = self.fix_inbox.drain()
        for fix in epochs:
            self._take_fix(fix, mono_to_wall)
        samples = self.inbox.drain()
        latest = self._latest
        for sample in samples:
            latest[sample.signal_id] = sample
        batcher = self.batcher
        batcher.add_many(samples, mono_to_wall)
        if self.detectors:
            for detector, update in self.detection.step(
                    now_mono, now_wall, samples, epochs, latest, self.position(),
                    on_error=lambda name, error: self._count("detector_errors", name, error),
                    vin=self._reported_vin()):
                self._queue_event(detector, update)
        batch = batcher.take_due()
        if batch is not None:
            self._queue_telemetry(*batch)
        if self._held_warnings and (batch is not None or self._warnings_overdue(now_mono)):
            self._release_warnings()
        for message in self.uplink.pump():
            try:
                ack = self.commands.handle(message.payload, self.headers.header)
                if ack is not None:
                    self._queue(Channel.COMMAND_ACK, Priority.WARNING, encode(ack))
            except Exception as error:  # never let one command take the agent down
                self._count("command_errors", type(error).__name__, error)
        try:
            self.actuators.tick(vehicle_reading(latest, self.catalog, now_mono, self._last_fix, now_wall))
        except Exception as error:  # counted and logged; the relay keeps its last checked level
            self._count("actuator_errors", type(error).__name__, error)
        if self.commands.reboot_requested and self.outbox.depth_by_priority(delivered=False)["WARNING"] == 0:
            log.info("restarting on command")
            self.exit_code = 75  # EX_TEMPFAIL: systemd's Restart= brings us back
            self.stop_requested.set()
        self.outbox.tick()
        self._observe_power()
        if now_mono >= self._next_heartbeat_ns and self.link.connected:
            self._next_heartbeat_ns = now_mono + int(float(self.config["uplink.status_interval_s"]) * 1e9)
            self.headers.refresh_clock_quality()
            try:
                self.uplink.send_now(Channel.STATUS, encode(self.heartbeat()))
            except ProtocolError as error:
                self._count("encode_errors", "Status", error)
        if now_mono >= self._next_status_file_ns:
            self.headers.refresh_clock_quality()
            self._next_status_file_ns = now_mono + int(float(self.config["agent.status_interval_s"]) * 1e9)
            self._write_status_file()
        self.notifier.ping_if_due()
        if self.sleeper is not None and self.sleeper.step(self._undone()):
            self.notifier.ping_if_due()  # awake again (edge.power.sleep)

    def _persist_before_sleep(self) -> None:
        """What the agent holds in memory goes to flash before the SoC sleeps (or powers off)."""
        batch = self.batcher.take()
        if batch is not None:
            self._queue_telemetry(*batch)
        self._release_warnings()
        self.detection.save_detector_state()
        self.outbox.flush()
        if self.mcu is not None:
            self.mcu.save_cursor()

    def shutdown(self, flush_timeout_s: float = 5.0) -> None:
        """Close the telemetry batch, deliver what can be delivered quickly, then close cleanly."""
        self.notifier.stopping()
        for runner in self.runners:
            runner.stop()
        if self.mcu is not None:
            self.mcu.stop()
        mono_to_wall = self.wall_ns() - self.clock.monotonic_ns()
        for fix in self.fix_inbox.drain():
            self._take_fix(fix, mono_to_wall)
        self.batcher.add_many(self.inbox.drain(), mono_to_wall)
        batch = self.batcher.take()
        if batch is not None:
            self._queue_telemetry(*batch)
        self._release_warnings()
        self.detection.save_detector_state()
        deadline = self.clock.monotonic_ns() + int(flush_timeout_s * 1e9)
        while (self.link.connected and (self._undone() or self.uplink.in_flight)
               and self.clock.monotonic_ns() < deadline):
            self.uplink.pump()
            threading.Event().wait(0.02)
        self.uplink.pump()
        self.link.stop()
        self.outbox.close()
        self._write_status_file(stopped=True)
        log.info("agent stopped", extra={"queued": self.outbox.depth})

    def _undone(self) -> int:
        """Records a graceful shutdown still waits for: unsent, and unconfirmed if receipts come
        (what stays unconfirmed is on flash and sent again after the restart)."""
        waiting = self.outbox.depth
        return waiting if self.uplink.waits_for_receipts else waiting - self.outbox.delivered

    # ------------------------------------------------------------------ messages

    def _queue(self, channel: Channel, priority: Priority, payload: bytes) -> None:
        key = uplink_key(payload) if self.receipts.asks else None  # kept until its stored receipt
        try:
            self.outbox.append(payload, priority=priority, channel=channel, key=key)
        except QueueError as error:
            name = type(error).__name__
            self.append_failures[name] = self.append_failures.get(name, 0) + 1
            log.error("outbox refused a message", extra={"reason": name, "detail": str(error),
                                                         "channel": channel.name, "size": len(payload)})

    def _count(self, counter: str, key: str, error: Exception) -> None:
        counts = self.errors.setdefault(counter, {})
        counts[key] = counts.get(key, 0) + 1
        log.error(counter.replace("_", " ").rstrip("s"),
                  extra={"key": key, "reason": type(error).__name__, "detail": str(error)[:300]})

    def _take_fix(self, fix: Any, mono_to_wall_ns: int) -> None:
        """One whole GNSS fix from a source: last position, clock quality, telemetry."""
        if getattr(fix, "time_utc_ns", None) is not None and fix.fix.has_position:
            self._last_gnss_time_mono_ns = fix.mono_ns
        wire = fix.to_protocol(mono_to_wall_ns)
        if wire is None:
            return
        self._last_fix = wire
        if not self.batcher.exclude:  # fixes now carry position, speed, heading, HDOP, satellites
            self.batcher.exclude = frozenset(
                self.catalog.id_of(path) for path in _FIX_PATHS if path in self.catalog)
        self.batcher.add_fix(wire, fix.mono_ns)

    def _queue_telemetry(self, columns: SampleColumns, fixes: FixColumns | None = None) -> None:
        """Encode and queue a batch; samples or fixes the wire format refuses are dropped, counted."""
        fixes = fixes or FixColumns()
        try:
            payload = encode(TelemetryBatch(self.headers.header(), fixes=fixes, samples=columns),
                             deflate=bool(self.config["uplink.telemetry.deflate"]))
        except ProtocolError as error:
            self._count("encode_errors", "TelemetryBatch", error)
            keep = [i for i in range(len(columns)) if _sample_encodes(columns, i)]
            good_fixes = [f for f in fixes.rows() if _fix_encodes(f)]
            self.telemetry_refused += len(columns) - len(keep) + len(fixes) - len(good_fixes)
            if not keep and not good_fixes:
                return
            columns = SampleColumns(tuple(columns.time_ns[i] for i in keep),
                                    tuple(columns.signal_id[i] for i in keep),
                                    tuple(columns.value[i] for i in keep))
            payload = encode(TelemetryBatch(self.headers.header(), fixes=FixColumns.from_fixes(good_fixes),
                                            samples=columns),
                             deflate=bool(self.config["uplink.telemetry.deflate"]))
        self._queue(Channel.TELEMETRY, Priority.TELEMETRY, payload)

    def _queue_event(self, detector: Detector, update: Update) -> None:
        """One lifecycle transition on the wire. ALERT/EMERGENCY go to the outbox at once (this
        tick's pump publishes them); WARNINGs are held to ride with the next telemetry batch,
        one radio wake-up for both (at most a batch interval late)."""
        finding = update.finding
        self.findings += 1
        event = Event(self.headers.header(), update.event_id, finding.severity, finding.detector,
                      finding.time_ns, dict(finding.features), finding.position or self.position(),
                      finding.detail[:500], update.transition,
                      None if update.transition is Transition.RAISED else update.raised_ns,
                      finding.condition)
        log.warning("event", extra={"detector": finding.detector, "severity": finding.severity.name,
                                    "transition": update.transition.name, "event_id": update.event_id,
                                    "detail": finding.detail})
        try:
            payload = encode(event)
        except ProtocolError as error:
            # Keep the event, lose the evidence that does not encode (say so in its detail).
            self._count("encode_errors", "Event", error)
            event = replace(event, features={}, position=None, condition=event.condition[:64],
                            detail=f"{event.detail[:300]} [evidence dropped: {type(error).__name__}]")
            try:
                payload = encode(event)
            except ProtocolError as again:
                self._count("encode_errors", "Event", again)
                return
        if finding.severity is Severity.WARNING:
            if self._held_since_ns is None:
                self._held_since_ns = self.clock.monotonic_ns()
            self._held_warnings.append(payload)
            return
        self._queue(Channel.EVENT, _PRIORITY[finding.severity], payload)

    def _warnings_overdue(self, now_mono_ns: int) -> bool:
        held = self._held_since_ns
        interval_ns = float(self.config["uplink.telemetry.batch_interval_s"]) * 1e9
        return held is not None and now_mono_ns - held >= interval_ns

    def _release_warnings(self) -> None:
        for payload in self._held_warnings:
            self._queue(Channel.EVENT, Priority.WARNING, payload)
        self._held_warnings = []
        self._held_since_ns = None

    def clear_event(self, event_id: int) -> bool:
        """Clear an open event (an operator's command); False if no such event is open."""
        cleared = self.detection.clear_event(event_id, self.clock.monotonic_ns(), self.wall_ns())
        if cleared is None:
            return False
        self._queue_event(*cleared)
        return True

    def _queue_actuator_event(self, change: InterruptEvent) -> None:
        """A starter-interrupt change or refusal on the wire at once (detector "starter_interrupt").

        Feature `state` is the InterruptState afterwards. A fault or an emergency override is an
        ALERT the lender must see (RAISED: open until acknowledged); every other change is a record
        that needs no action, sent raised and cleared at once (CLEARED, raised_ns = its time), so
        it is in the device's history but not in the open-alert inbox."""
        needs_action = change.kind in ("fault", "overridden")
        now_ns = self.wall_ns()
        event = Event(self.headers.header(), self.headers.event_id(),
                      Severity.ALERT if needs_action else Severity.WARNING, "starter_interrupt", now_ns,
                      {**change.evidence, "state": float(change.state)}, self.position(), change.detail[:500],
                      Transition.RAISED if needs_action else Transition.CLEARED,
                      None if needs_action else now_ns, change.kind)
        severity = event.severity
        try:
            self._queue(Channel.EVENT, _PRIORITY[severity], encode(event))
        except ProtocolError as error:
            self._count("encode_errors", "Event", error)

    def _reported_vin(self) -> str | None:
        """The VIN a source read from the vehicle (the OBD source's mode 09), if any."""
        for source in self.sources:
            vin = getattr(getattr(source, "diagnostics", None), "vin", None)
            if isinstance(vin, str) and vin:
                return vin
        return None

    def _value(self, path: str) -> float | None:
        sample = self._latest.get(self.catalog.id_of(path)) if path in self.catalog else None
        return None if sample is None else sample.value

    def position(self) -> GnssFix | None:
        """The last known position: the last whole GNSS fix, else from GNSS samples, else None."""
        if self._last_fix is not None:
            return self._last_fix
        lat_id = self.catalog.id_of("Vehicle.CurrentLocation.Latitude")
        lat = self._latest.get(lat_id)
        lon = self._value("Vehicle.CurrentLocation.Longitude")
        if lat is None or lon is None:
            return None
        fix_type = self._value("Vehicle.CurrentLocation.GNSSReceiver.FixType")
        return GnssFix(
            time_ns=lat.mono_ns + self.clock.wall_ns() - self.clock.monotonic_ns(),
            lat_deg=lat.value, lon_deg=lon,
            alt_m=self._value("Vehicle.CurrentLocation.Altitude") or 0.0,
            speed_kmh=self._value("Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround") or 0.0,
            heading_deg=self._value("Vehicle.CurrentLocation.Heading") or 0.0,
            hdop=self._value("Vehicle.CurrentLocation.GNSSReceiver.HDOP") or 99.0,
            sats=int(self._value("Vehicle.CurrentLocation.GNSSReceiver.SatellitesUsed") or 0),
            fix_type=FixType(int(fix_type)) if fix_type is not None and int(fix_type) in
            FixType._value2member_map_ else FixType.FIX_2D,
        )

    def _observe_power(self) -> None:
        state = self._value("Vehicle.LowVoltageSystemState")  # ON = 4, START = 5 (edge.sources.power)
        self.power.observe(ignition=None if state is None else state >= 4.0,
                           supply_v=self._value("Vehicle.LowVoltageBattery.CurrentVoltage"),
                           bytes_sent_today=self.budget.spent_today,
                           backup_v=self._value("Vehicle.Telematics.BackupBattery.CurrentVoltage"))

    def heartbeat(self) -> Status:
        header = self.headers.header()
        return Status(
            header, self.power.wire_state,
            supply_v=self._value("Vehicle.LowVoltageBattery.CurrentVoltage") or 0.0,
            backup_v=self._value("Vehicle.Telematics.BackupBattery.CurrentVoltage") or 0.0,
            firmware_version=__version__, config_version=self.config.remote_version,
            queue_depth=self.outbox.depth, queue_bytes=self.outbox.disk_bytes,
            uptime_s=int((self.clock.monotonic_ns() - self._started_mono_ns) / 1e9),
            position=self.position(),
            energy_forecast_days=self.power.forecast_days(), avg_current_ma=self.power.avg_current_ma(),
            driving=self._driving_days(header.sent_ns),
        )

    def _driving_days(self, sent_ns: int) -> tuple[DrivingDay, ...]:
        """The first driving detector's daily counters (a day the wire refuses for this sent
        time — the clock jumped — is left out rather than losing the heartbeat)."""
        for detector in self.detectors:
            if isinstance(detector, Driving):
                return tuple(d for d in detector.wire_days() if driving_day_fits(d.day, sent_ns))
        return ()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "pid": os.getpid(),
            "boot_id": self.headers.boot_id,
            "version": __version__,
            "written_ns": self.clock.wall_ns(),
            "uptime_s": (self.clock.monotonic_ns() - self._started_mono_ns) / 1e9,
            "config_version": self.config.remote_version,
            "sources": {r.source.name: r.health().as_dict() for r in self.runners},
            "inbox": {"received": self.inbox.received, "overflow": self.inbox.overflow,
                      "fixes_overflow": self.fix_inbox.overflow},
            "telemetry": {"samples_seen": self.batcher.seen, "samples_kept": self.batcher.kept,
                          "fixes_seen": self.batcher.fixes_seen, "open_batch": len(self.batcher)},
            "clock": {"quality": self.headers.header_quality_name(),
                      "gnss_offset_ms": self._wall_offset_ns / 1e6},
            "detectors": self.detection.state(),
            "held_warnings": len(self._held_warnings),
            "findings": self.findings,
            "telemetry_refused_samples": self.telemetry_refused,
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "queue": self.outbox.snapshot(),
            "append_failures": dict(self.append_failures),
            "uplink": self.uplink.snapshot(),
            "downlink": self.commands.snapshot(),
            "actuators": self.actuators.snapshot(),
            "power": {**self.power.snapshot(),
                      **({"sleep": self.sleeper.snapshot()} if self.sleeper is not None else {})},
            "watchdog": self.notifier.watchdog_interval_ns is not None,
            # native ids, so per-thread CPU can be read from /proc/<pid>/task/<tid>/stat
            "threads": {t.name: t.native_id for t in threading.enumerate() if t.native_id is not None},
        }

    def _write_status_file(self, stopped: bool = False) -> None:
        status = self.status()
        status["stopped"] = stopped
        try:
            write_status(Path(str(self.config["agent.status_file"])), status)
        except OSError as error:
            log.error("cannot write the status file", extra={"detail": str(error)})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sample_encodes(columns: SampleColumns, index: int) -> bool:
    """Whether one sample of a batch is acceptable to the wire format on its own."""
    from protocol.messages import ClockQuality, Header

    header = Header("probe", 0, 0, columns.time_ns[index], ClockQuality.UNKNOWN)
    single = SampleColumns((columns.time_ns[index],), (columns.signal_id[index],), (columns.value[index],))
    try:
        encode(TelemetryBatch(header, samples=single))
    except ProtocolError:
        return False
    return True


def _fix_encodes(fix: GnssFix) -> bool:
    from protocol.messages import Header

    header = Header("probe", 0, 0, fix.time_ns, ClockQuality.UNKNOWN)
    try:
        encode(TelemetryBatch(header, fixes=FixColumns.from_fixes([fix])))
    except ProtocolError:
        return False
    return True


# Catalog paths a whole fix carries; with fixes flowing they are left out of the samples.
_FIX_PATHS = (
    "Vehicle.CurrentLocation.Latitude", "Vehicle.CurrentLocation.Longitude",
    "Vehicle.CurrentLocation.Altitude", "Vehicle.CurrentLocation.Heading",
    "Vehicle.CurrentLocation.GNSSReceiver.FixType", "Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround",
    "Vehicle.CurrentLocation.GNSSReceiver.SatellitesUsed", "Vehicle.CurrentLocation.GNSSReceiver.HDOP",
)
