"""The receiver: MQTT 5 shared subscriptions feeding batched, exactly-once writes.

Two lanes, each with its own MQTT session, queue, threads and database connection:
* bulk: telemetry batches (thousands of rows each), large batches for throughput;
* urgent: events, statuses and command acks, small batches committed within milliseconds.
A broker delivers each session's messages in order, so one session would make a tow alarm
wait behind every telemetry batch queued before it; two sessions keep events fast under any
telemetry backlog.

Threads of a lane, one job each:
* paho's network thread: `on_message` only appends the raw message to a queue (no decoding, no
  database); the broker sends at most `receive_maximum` unacknowledged QoS 1 messages, which
  bounds that queue.
* the decoder: takes messages until a batch is full (rows or messages) or old enough (the
  lane's delay bound since its first message), validates and decodes them and lays out their
  rows for COPY, while the database is still storing the previous batch.
* the writer: writes each batch in one transaction and only after the commit acknowledges every
  message of it to the broker, in the order they arrived (MQTT requires PUBACKs in order).
  A message that arrived on an earlier connection is stored but not acknowledged: its packet id
  may since belong to another message, and the broker redelivers it on the persistent session
  anyway (the unique index drops the copy). Between batches the bulk lane's writer does
  maintenance: partitions ahead, retention, daily summaries.

Client ids are stable (`<client_id>-bulk`, `<client_id>-urgent`) and sessions persistent
(clean_start false + session expiry), so a receiver that crashed gets every unacknowledged
message again when it comes back.

End to end: after each commit the writer notes the (boot, seq) of every stored message whose
sender asked for receipts (header flags) and, every `ingest.receipt_interval_ms`, publishes one
stored receipt per device on its downlink (`.../down/receipt`, QoS 1): only then may the device
forget the records. A message the broker lost (a restart, an overflowing queue) is never
confirmed, so the device sends it again (docs/cloud.md, "Delivery guarantee").
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import cbor2
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.config import ReceiverConfig
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.validate import Accepted, Incoming, Outcome, Rejected, Validator
from cloud.ingest.writer import BatchWriter, PreparedBatch, WriteResult, is_connection_error
from cloud.store import summaries
from cloud.store.db import Conn, connect
from cloud.store.devices import registered_time_zones
from cloud.store.layout import BY_NAME
from cloud.store.migrate import check_schema
from cloud.store.retention import apply_retention
from cloud.watchers.job import WatcherJob
from lienwatch.backoff import backoff_s
from lienwatch.clock import Clock, SystemClock
from protocol.codec import encode
from protocol.messages import HEADER_WANTS_RECEIPTS
from protocol.receipts import receipts_for
from protocol.topics import PREFIX, receipt_topic

log = logging.getLogger("lienwatch.ingest")
_MAINTENANCE_LOCK = 0x6C77_0001  # one receiver at a time runs retention and summaries
BULK_TOPICS = (f"{PREFIX}/+/up/telemetry",)
URGENT_TOPICS = (f"{PREFIX}/+/up/event", f"{PREFIX}/+/up/status", f"{PREFIX}/+/up/ack")


class BrokerTlsError(ConnectionError):
    """The TLS handshake with the broker failed: a configuration error, not worth retrying."""


class ReceiptBook:
    """What a lane committed for devices that ask for receipts, until the next receipt round."""

    def __init__(self) -> None:
        self._stored: dict[str, dict[int, set[int]]] = {}

    def note(self, outcomes: list[Outcome]) -> None:
        """Call after the commit of `outcomes`: their keys are stored (new rows or duplicates)."""
        for outcome in outcomes:
            key = _receipt_key(outcome)
            if key is not None:
                device, boot, seq = key
                self._stored.setdefault(device, {}).setdefault(boot, set()).add(seq)

    def take(self) -> dict[str, dict[int, set[int]]]:
        stored, self._stored = self._stored, {}
        return stored

    def __bool__(self) -> bool:
        return bool(self._stored)


def _receipt_key(outcome: Outcome) -> tuple[str, int, int] | None:
    """(device, boot, seq) to confirm: an accepted message that asked for it, or a rejected one
    (kept aside in rejected_messages: sending it again cannot help) from a device that asked,
    on its own topic. Unknown devices get nothing."""
    if isinstance(outcome, Accepted):
        header = outcome.message.header
        if header.flags & HEADER_WANTS_RECEIPTS:
            return header.device_id, header.boot_id, header.seq
        return None
    if outcome.reason_code == "unknown_device" or outcome.claimed_device_id is None:
        return None
    try:
        envelope = cbor2.loads(outcome.incoming.payload)
        header = envelope[2]
        device, boot, seq = header[0], header[1], header[2]
        flags = header[5] if len(header) > 5 else 0
    except Exception:  # undecodable: nothing to confirm (it is kept aside anyway)
        return None
    if device != outcome.claimed_device_id or not all(type(v) is int for v in (boot, seq, flags)):
        return None
    if not flags & HEADER_WANTS_RECEIPTS or not (0 <= boot < 2**32 and 0 <= seq < 2**63):
        return None
    return device, boot, seq


class DeviceCache:
    """Registered devices and their time zones, refreshed every `refresh_s` and on a miss (at most
    once a second, so a flood from an unknown device costs one query a second)."""

    def __init__(self, load: Callable[[], dict[str, str]], clock: Clock, refresh_s: float) -> None:
        self._load = load
        self._clock = clock
        self._refresh_ns = int(refresh_s * 1e9)
        self._ids: dict[str, str] = {}
        self._loaded_ns: int | None = None

    def __call__(self, device_id: str) -> bool:
        now = self._clock.monotonic_ns()
        stale = self._loaded_ns is None or now - self._loaded_ns > self._refresh_ns
        missing = device_id not in self._ids and (self._loaded_ns is None or now - self._loaded_ns > 1e9)
        if stale or missing:
            self._ids = self._load()
            self._loaded_ns = now
        return device_id in self._ids

    def time_zone(self, device_id: str) -> str:
        return self._ids.get(device_id, "UTC")


@dataclass(frozen=True, slots=True)
class LaneSpec:
    name: str
    topics: tuple[str, ...]
    batch_max_messages: int
    batch_max_rows: int
    batch_max_delay_ms: int
    maintenance: bool


class Lane:
    """One MQTT session and its pipeline: receive → decode → write+commit → acknowledge."""

    def __init__(self, receiver: Receiver, spec: LaneSpec) -> None:
        self.receiver = receiver
        self.spec = spec
        self.config = receiver.config
        self.clock = receiver.clock
        self.metrics = receiver.metrics
        self.client_id = f"{self.config.mqtt.client_id}-{spec.name}"
        self.queue: queue.Queue[Incoming] = queue.Queue()
        self.handoff: queue.Queue[PreparedBatch | None] = queue.Queue(maxsize=2)
        self.connected = threading.Event()  # subscribed (SUBACK granted), not merely connected
        self._subscribe_mid = -1
        self.generation = 0
        self.gen_lock = threading.Lock()
        self.busy = 0
        self.busy_lock = threading.Lock()
        self.collecting = False
        self.totals = WriteResult()
        self.totals_lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.conn: Conn | None = None
        self.lookup_conn: Conn | None = None
        self.writer: BatchWriter | None = None
        self.validator: Validator | None = None
        self.client = self._make_client()
        self._next_partitions_ns = 0
        self._next_retention_ns = 0
        self._next_summaries_ns = 0
        self._qos0_limit = 4 * self.config.mqtt.receive_maximum
        self._next_progress_ns = 0
        self._progress_totals = (0, 0, 0)
        self.receipts = ReceiptBook()
        self._next_receipts_ns = 0

    # -- MQTT ----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls is not None:
            client.tls_set(ca_certs=cfg.tls.ca_file or None, certfile=cfg.tls.cert_file or None,
                           keyfile=cfg.tls.key_file or None, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_inflight_messages_set(cfg.receive_maximum)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("%s: broker refused the connection: %s", self.client_id, reason)
            return
        with self.gen_lock:
            self.generation += 1
        group = self.config.mqtt.share_group
        # Connected only once the broker's SUBACK grants every subscription: a shared group is
        # not restored from the broker's persistence (mosquitto 2.0), so until then messages for
        # it are not kept for us.
        _, mid = client.subscribe(
            [(f"$share/{group}/{t}", SubscribeOptions(qos=1)) for t in self.spec.topics])
        self._subscribe_mid = -1 if mid is None else mid  # None: not sent (the link dropped again)
        log.info("%s connected to %s:%d (session present: %s)", self.client_id, self.config.mqtt.host,
                 self.config.mqtt.port, flags.session_present)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("%s: the broker refused the subscriptions (%s): check the ACL of this identity",
                      self.client_id, ", ".join(refused))
            return
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self.connected.clear()
        with self.gen_lock:
            self.generation += 1  # acks for messages of the old connection must not be sent
        if not self.receiver.stopping.is_set():
            log.warning("%s disconnected from the broker (%s); reconnecting", self.client_id, reason)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self.receiver.stopping.is_set():
            return  # not acknowledged: the broker keeps it for our session
        self.metrics.received.inc()
        if message.qos == 0 and self.queue.qsize() >= self._qos0_limit:
            # QoS 1 is bounded by receive_maximum; QoS 0 (heartbeats, superseded by the next
            # one) has no flow control, so past this bound it is counted and not queued.
            self.metrics.dropped_qos0.inc()
            return
        self.queue.put(Incoming(message.topic, bytes(message.payload), message.mid, message.qos,
                                self.clock.wall_ns(), self.generation))

    def connect(self) -> None:
        """One TCP + TLS connect (ConnectionError if the broker is unreachable), then paho's thread."""
        cfg = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        try:
            self.client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
                                properties=props)
        except ssl.SSLError as error:
            raise BrokerTlsError(f"TLS with the broker at {cfg.host}:{cfg.port} failed: {error}") from None
        except OSError as error:
            raise ConnectionError(f"cannot reach the broker at {cfg.host}:{cfg.port}: {error}") from None
        self.client.loop_start()

    def start_threads(self) -> None:
        self.threads = [
            threading.Thread(target=self._decode_loop, name=f"ingest-{self.spec.name}-decoder", daemon=True),
            threading.Thread(target=self._write_loop, name=f"ingest-{self.spec.name}-writer", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        for conn in (self.conn, self.lookup_conn):
            if conn is not None:
                conn.close()

    def idle(self) -> bool:
        return self.queue.empty() and self.handoff.empty() and not self.busy and not self.collecting

    # -- database ------------------------------------------------------------------------------

    def open_database(self) -> None:
        conn = connect(self.config.dsn, application_name=f"lienwatch-ingest {self.client_id}")
        ingest = self.config.ingest
        devices = DeviceCache(self._registered_devices, self.clock, ingest.device_refresh_s)
        try:
            mode = check_schema(conn)
            self.writer = BatchWriter(conn, mode=mode, receiver_id=self.config.name,
                                      policy=self.config.retention,
                                      rejected_max_bytes=ingest.rejected_payload_max_bytes,
                                      time_zone=devices.time_zone,
                                      merge="staging" if ingest.merge == "staging" else "copy_first")
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self.validator = Validator(devices, self.receiver.oldest_ns, ingest.max_future_s * 10**9,
                                   self.clock.wall_ns, ingest.max_payload_bytes)

    def _registered_devices(self) -> dict[str, str]:
        """Device ids from the decoder's own connection (reopened if it was lost)."""
        for attempt in range(2):
            try:
                if self.lookup_conn is None or self.lookup_conn.closed:
                    self.lookup_conn = connect(self.config.dsn,
                                               application_name=f"lienwatch-ingest {self.client_id}")
                return registered_time_zones(self.lookup_conn)
            except psycopg.Error:
                self.lookup_conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def db(self) -> Conn:
        assert self.conn is not None
        return self.conn

    def _reopen_database(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
        delay = 0.5
        while True:
            try:
                self.open_database()
                return
            except Exception as error:  # keep trying: the batch is still held, nothing is acked
                if self.receiver.stopping.is_set():
                    raise  # shutting down: unacknowledged messages come back with the session
                log.warning("database unavailable (%s); retrying in %.1f s", error, delay)
                self.clock.sleep(delay)
                delay = min(delay * 2, 30.0)

    # -- the pipeline --------------------------------------------------------------------------

    def _decode_loop(self) -> None:
        try:
            while True:
                outcomes = self._collect()
                if outcomes:
                    with self.busy_lock:
                        self.busy += 1
                        self.collecting = False
                    assert self.writer is not None
                    self.handoff.put(self.writer.prepare(outcomes))
                elif self.receiver.stopping.is_set():
                    self.handoff.put(None)
                    return
        except BaseException as error:  # surfaced through `failure`; the process exits non-zero
            self.receiver.fail(error)

    def _write_loop(self) -> None:
        try:
            self._maintain(force=True)
            while True:
                try:
                    batch = self.handoff.get(timeout=0.2)
                except queue.Empty:
                    if self.receiver.failure is not None:
                        return
                    self._send_receipts()
                    self._maintain()
                    continue
                if batch is None:
                    self._send_receipts(force=True)
                    return
                try:
                    self._process(batch)
                finally:
                    with self.busy_lock:
                        self.busy -= 1
                self._send_receipts()
                self._maintain()
        except BaseException as error:
            self.receiver.fail(error)

    def _collect(self) -> list[Outcome]:
        spec = self.spec
        outcomes: list[Outcome] = []
        rows = 0
        first_ns: int | None = None
        while len(outcomes) < spec.batch_max_messages and rows < spec.batch_max_rows:
            if first_ns is None:
                timeout = 0.05
            else:
                timeout = spec.batch_max_delay_ms / 1000 - (time.monotonic_ns() - first_ns) / 1e9
                if timeout <= 0:
                    break
            try:
                incoming = self.queue.get(timeout=timeout)
            except queue.Empty:
                if first_ns is None and not self.receiver.stopping.is_set():
                    return outcomes
                break
            if first_ns is None:
                first_ns = time.monotonic_ns()
                self.collecting = True
            assert self.validator is not None
            outcome = self.validator.check(incoming)
            outcomes.append(outcome)
            if isinstance(outcome, Accepted):
                rows += outcome.rows
        return outcomes

    def _process(self, prepared: PreparedBatch) -> None:
        batch = prepared.outcomes
        started = time.perf_counter()
        result = self._write(prepared)
        elapsed = time.perf_counter() - started
        with self.gen_lock:
            generation = self.generation
        for outcome in batch:
            incoming = outcome.incoming
            if incoming.qos > 0 and incoming.generation == generation:
                self.client.ack(incoming.mid, incoming.qos)
        if self.config.ingest.receipt_interval_ms:
            self.receipts.note(batch)  # committed: these may be confirmed to their devices
        with self.totals_lock:
            self.totals.add(result)
        self.metrics.record(self.spec.name, result, elapsed, batch, self.clock.wall_ns(), self.queue.qsize())

    def _send_receipts(self, *, force: bool = False) -> None:
        """Every receipt_interval_ms: one stored receipt (or a few, within the limits) per device."""
        now = self.clock.monotonic_ns()
        if not self.receipts or (now < self._next_receipts_ns and not force):
            self.metrics.queue_depth.labels(self.spec.name).set(self.queue.qsize())
            return
        self._next_receipts_ns = now + self.config.ingest.receipt_interval_ms * 1_000_000
        issued = self.clock.wall_ns()
        for device, stored in self.receipts.take().items():
            for receipt in receipts_for(device, stored, issued):
                payload = encode(receipt)
                # QoS 1: the broker keeps it for a device that just went offline (saves a re-send).
                # Lost anyway (broker restart), the device re-sends and is confirmed again.
                self.client.publish(receipt_topic(device), payload, qos=1)
                self.metrics.receipts.inc()
                self.metrics.receipt_bytes.inc(len(payload))
        self.metrics.queue_depth.labels(self.spec.name).set(self.queue.qsize())

    def _write(self, batch: PreparedBatch | list[Outcome]) -> WriteResult:
        """Write the batch; on a database outage (or a deadlock) wait and retry; a batch the
        database refuses is split until the message it refuses is found, which is then kept as
        rejected with the database's reason."""
        while True:
            assert self.writer is not None
            try:
                return self.writer.write(batch, self.receiver.now())
            except psycopg.errors.TransactionRollback as error:  # deadlock, serialization: retry
                log.info("batch rolled back (%s); retrying", error.sqlstate)
                continue
            except psycopg.Error as error:
                if is_connection_error(error) or self.db().closed:
                    self._reopen_database()
                    continue
                outcomes = batch.outcomes if isinstance(batch, PreparedBatch) else batch
                if len(outcomes) == 1:
                    only = outcomes[0]
                    if isinstance(only, Rejected):
                        raise
                    reason = f"the database refused the message: {str(error).strip()[:400]}"
                    batch = [Rejected(only.incoming, "store_error", reason, only.message.header.device_id)]
                    continue
                half = len(outcomes) // 2
                first = self._write(outcomes[:half])
                first.add(self._write(outcomes[half:]))
                return first

    # -- maintenance ---------------------------------------------------------------------------

    def _maintain(self, *, force: bool = False) -> None:
        if not self.spec.maintenance:
            return
        now_ns = self.clock.monotonic_ns()
        cfg = self.config.maintenance
        assert self.writer is not None
        try:
            if self.writer.mode == "plain" and (force or now_ns >= self._next_partitions_ns):
                self.writer.partitions.ensure_ahead(self.db(), self.receiver.now().date(),
                                                    cfg.partitions_ahead_days)
                self._next_partitions_ns = now_ns + 3600 * 10**9
            if force or now_ns >= self._next_retention_ns:
                self._next_retention_ns = now_ns + int(cfg.retention_interval_s * 1e9)
                self._retention()
            if force or now_ns >= self._next_summaries_ns:
                self._next_summaries_ns = now_ns + int(cfg.summaries_interval_s * 1e9)
                self.refresh_summaries()
            if now_ns >= self._next_progress_ns:
                self._next_progress_ns = now_ns + 60 * 10**9
                self._log_progress()
        except psycopg.Error as error:
            log.warning("maintenance failed (%s); will retry", error)
            if is_connection_error(error) or self.db().closed:
                self._reopen_database()

    def _log_progress(self) -> None:
        """One INFO line a minute: what the whole receiver committed since the previous line."""
        totals = self.receiver.totals
        now = (totals.stored_messages, sum(totals.inserted.values()), sum(totals.rejected.values()))
        before, self._progress_totals = self._progress_totals, now
        if now != before:
            log.info("last minute: %d messages stored, %d rows, %d rejected (totals %d / %d / %d)",
                     now[0] - before[0], now[1] - before[1], now[2] - before[2], *now)

    def _retention(self) -> None:
        assert self.writer is not None
        conn = self.db()
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_MAINTENANCE_LOCK,)).fetchone()
        if not (row and row[0]):
            return  # another receiver is at it
        try:
            now = self.receiver.now()
            removed = apply_retention(conn, self.config.retention, now, self.writer.mode).removed
            for name in removed:
                self.writer.partitions.forget(name)
            if removed:
                log.info("retention removed %d partitions", len(removed))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MAINTENANCE_LOCK,))

    def refresh_summaries(self) -> int:
        """Recompute dirty daily summaries now; returns how many rows were written."""
        assert self.writer is not None
        conn = self.db()
        span = summaries.dirty_day_range(conn)
        if span is None:
            return 0
        first, last = span
        assert isinstance(first, date) and isinstance(last, date)
        oldest = (self.receiver.now() - timedelta(days=self.config.retention.days["summaries"])).date()
        self.writer.ensure_summary_partitions(max(first, oldest), last)
        written = 0
        while True:
            limit = self.config.maintenance.summaries_batch
            count = summaries.refresh_dirty(conn, oldest_day=oldest, limit=limit)
            written += count
            if count < limit:
                return written


class Receiver:
    """One receiver process's worth of ingest. `start()`, then `stop()` (graceful)."""

    def __init__(self, config: ReceiverConfig, *, clock: Clock | None = None,
                 metrics: IngestMetrics | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = metrics or IngestMetrics()
        self.stopping = threading.Event()
        self._failure: BaseException | None = None
        self._watchers: WatcherJob | None = None
        ingest = config.ingest
        self.lanes = (
            Lane(self, LaneSpec("bulk", BULK_TOPICS, ingest.batch_max_messages, ingest.batch_max_rows,
                                ingest.batch_max_delay_ms, maintenance=True)),
            Lane(self, LaneSpec("urgent", URGENT_TOPICS, min(ingest.batch_max_messages, 500),
                                ingest.batch_max_rows, ingest.urgent_batch_max_delay_ms, maintenance=False)),
        )

    def start(self, *, connect_timeout_s: float = 15.0) -> None:
        """Check the schema, open the database, connect to the broker and start the pipelines."""
        if self.config.mqtt.insecure_plaintext:
            log.warning("mqtt.insecure_plaintext = true: connecting to %s:%d WITHOUT TLS; anyone on the "
                        "path reads and forges device data", self.config.mqtt.host, self.config.mqtt.port)
        try:
            for lane in self.lanes:
                lane.open_database()
            self._connect_lanes()
            for lane in self.lanes:
                if not lane.connected.wait(connect_timeout_s):
                    cfg = self.config.mqtt
                    raise ConnectionError(f"the broker at {cfg.host}:{cfg.port} did not accept "
                                          f"the connection of {lane.client_id}")
        except BaseException:
            for lane in self.lanes:
                lane.close()
            raise
        self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
        for lane in self.lanes:
            lane.start_threads()
        if self.config.watchers.enabled:  # server-side watchers (cloud/watchers) in this process
            dsn = self.config.dsn
            self._watchers = WatcherJob(
                self.config.watchers, lambda: connect(dsn, application_name="lienwatch-watchers"), self.clock)
            self._watchers.start()

    def _connect_lanes(self) -> None:
        """Connect every lane; while the broker is unreachable retry with full-jitter backoff up to
        mqtt.reconnect_max_s, logging each retry, until it answers or `stop()` is called. A TLS
        refusal (wrong CA, certificate, key) is a configuration error and is raised at once."""
        cfg = self.config.mqtt
        rng = random.Random()
        pending = list(self.lanes)
        attempt = 0
        while pending:
            lane = pending[0]
            try:
                lane.connect()
                pending.pop(0)
                attempt = 0
                continue
            except ConnectionError as error:
                if isinstance(error, BrokerTlsError):
                    raise
                attempt += 1
                delay = backoff_s(attempt, 1.0, cfg.reconnect_max_s, rng)
                log.warning("%s; retrying in %.1f s (attempt %d; the receiver waits for the broker)",
                            error, delay, attempt)
            if self.stopping.wait(delay):
                raise ConnectionError(f"stopped while waiting for the broker at {cfg.host}:{cfg.port}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful shutdown: take no more messages, store and acknowledge those received, leave."""
        self.stopping.set()
        if self._watchers is not None:
            self._watchers.stop()
        deadline = time.monotonic() + timeout_s
        for lane in self.lanes:
            for thread in lane.threads:
                thread.join(max(deadline - time.monotonic(), 0.1))
        for lane in self.lanes:
            lane.close()
        self.metrics.close()

    def fail(self, error: BaseException) -> None:
        log.exception("ingest failed", exc_info=error)
        self._failure = error
        self.stopping.set()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def totals(self) -> WriteResult:
        """What both lanes committed so far."""
        total = WriteResult()
        for lane in self.lanes:
            with lane.totals_lock:
                total.add(lane.totals)
        return total

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or in flight (tests and the benchmark)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(lane.idle() for lane in self.lanes):
                return True
            time.sleep(0.01)
        return False

    def oldest_ns(self, table: str) -> int:
        """Oldest acceptable row time for `table`: the start of its retention horizon's UTC day."""
        horizon = self.config.retention.horizon(BY_NAME[table], self.now())
        start = datetime.combine(horizon.date(), datetime.min.time(), UTC)
        return int(start.timestamp()) * 10**9

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall_ns() // 10**9, UTC)
