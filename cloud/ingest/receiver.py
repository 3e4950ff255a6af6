"""The receiver: an MQTT 5 shared subscription feeding batched, exactly-once writes.

Threads and their one job each:
* paho's network thread: `on_message` only appends the raw message to a queue (no decoding, no
  database); the broker sends at most `receive_maximum` unacknowledged QoS 1 messages, which
  bounds that queue.
* the decoder: takes messages until a batch is full (rows or messages) or old enough
  (`batch_max_delay_ms` since its first message), validates and decodes them and lays out their
  rows for COPY, while the database is still storing the previous batch (two cores, two stages).
* the writer: writes each batch in one transaction and only after the commit acknowledges every
  message of it to the broker, in the order they arrived (MQTT requires PUBACKs in order).
  A message that arrived on an earlier connection is stored but not acknowledged: its packet id
  may since belong to another message, and the broker redelivers it on the persistent session
  anyway (the unique index drops the copy).
  Between batches it does maintenance: partitions ahead, retention, daily summaries.

The client id is stable and the session persistent (clean_start false + session expiry), so a
receiver that crashed gets every unacknowledged message again when it comes back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

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
from cloud.store.devices import registered_ids
from cloud.store.layout import BY_NAME
from cloud.store.migrate import check_schema
from cloud.store.retention import apply_retention
from lienwatch.clock import Clock, SystemClock
from protocol.topics import UPLINK_SUBSCRIPTION

log = logging.getLogger("lienwatch.ingest")
_MAINTENANCE_LOCK = 0x6C77_0001  # one receiver at a time runs retention and summaries


class DeviceCache:
    """Registered device ids, refreshed every `refresh_s` and on a miss (at most once a second)."""

    def __init__(self, load: Callable[[], frozenset[str]], clock: Clock, refresh_s: float) -> None:
        self._load = load
        self._clock = clock
        self._refresh_ns = int(refresh_s * 1e9)
        self._ids: frozenset[str] = frozenset()
        self._loaded_ns: int | None = None

    def __call__(self, device_id: str) -> bool:
        now = self._clock.monotonic_ns()
        stale = self._loaded_ns is None or now - self._loaded_ns > self._refresh_ns
        missing = device_id not in self._ids and (self._loaded_ns is None or now - self._loaded_ns > 1e9)
        if stale or missing:
            self._ids = self._load()
            self._loaded_ns = now
        return device_id in self._ids


class Receiver:
    """One receiver process's worth of ingest. `start()`, then `stop()` (graceful) or `run()`."""

    def __init__(self, config: ReceiverConfig, *, clock: Clock | None = None,
                 metrics: IngestMetrics | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = metrics or IngestMetrics()
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._connected = threading.Event()
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._handoff: queue.Queue[PreparedBatch | None] = queue.Queue(maxsize=2)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._failure: BaseException | None = None
        self.totals = WriteResult()
        self._client = self._make_client()
        self._conn: Conn | None = None
        self._lookup_conn: Conn | None = None
        self._writer: BatchWriter | None = None
        self._next_partitions_ns = 0
        self._next_retention_ns = 0
        self._next_summaries_ns = 0

    # -- MQTT ----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv5,
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
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        with self._gen_lock:
            self._generation += 1
        topics = self.config.mqtt.topics or (UPLINK_SUBSCRIPTION,)
        group = self.config.mqtt.share_group
        client.subscribe([(f"$share/{group}/{t}", SubscribeOptions(qos=1)) for t in topics])
        self._connected.set()
        log.info("connected to %s:%d (session present: %s)", self.config.mqtt.host, self.config.mqtt.port,
                 flags.session_present)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self._connected.clear()
        with self._gen_lock:
            self._generation += 1  # acks for messages of the old connection must not be sent
        if not self._stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker keeps it for our session
        self._queue.put(Incoming(message.topic, bytes(message.payload), message.mid, message.qos,
                                 self.clock.wall_ns(), self._generation))
        self.metrics.received.inc()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, *, connect_timeout_s: float = 15.0) -> None:
        """Check the schema, open the database, connect to the broker and start the worker."""
        self._open_database()
        cfg = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        try:
            self._client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
                                 properties=props)
        except OSError as error:
            raise ConnectionError(f"cannot reach the broker at {cfg.host}:{cfg.port}: {error}") from None
        self._client.loop_start()
        if not self._connected.wait(connect_timeout_s):
            self._client.loop_stop()
            raise ConnectionError(f"the broker at {cfg.host}:{cfg.port} did not accept the connection")
        self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
        self._threads = [threading.Thread(target=self._decode_loop, name="ingest-decoder", daemon=True),
                         threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful shutdown: take no more messages, store and acknowledge those received, leave."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
        for conn in (self._conn, self._lookup_conn):
            if conn is not None:
                conn.close()
        self.metrics.close()
        self._stopped.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._stopped.wait(timeout_s)

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or in flight (tests and the benchmark)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.empty() and self._handoff.empty() and not self._busy:
                return True
            time.sleep(0.01)
        return False

    # -- database ------------------------------------------------------------------------------

    def _open_database(self) -> None:
        conn = connect(self.config.dsn, application_name=f"lienwatch-ingest {self.config.name}")
        try:
            mode = check_schema(conn)
            self._writer = BatchWriter(conn, mode=mode, receiver_id=self.config.name,
                                       policy=self.config.retention,
                                       rejected_max_bytes=self.config.ingest.rejected_payload_max_bytes)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._devices = DeviceCache(self._registered_ids, self.clock, self.config.ingest.device_refresh_s)
        self._validator = Validator(self._devices, self._oldest_ns, self.config.ingest.max_future_s * 10**9,
                                    self.clock.wall_ns, self.config.ingest.max_payload_bytes)

    def _registered_ids(self) -> frozenset[str]:
        """Device ids from the decoder's own connection (reopened if it was lost)."""
        for attempt in range(2):
            try:
                if self._lookup_conn is None or self._lookup_conn.closed:
                    self._lookup_conn = connect(self.config.dsn,
                                                application_name=f"lienwatch-ingest {self.config.name}")
                return registered_ids(self._lookup_conn)
            except psycopg.Error:
                self._lookup_conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _db(self) -> Conn:
        assert self._conn is not None
        return self._conn

    def _reopen_database(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        delay = 0.5
        while True:
            try:
                self._open_database()
                return
            except Exception as error:  # keep trying: the batch is still held, nothing is acked
                log.warning("database unavailable (%s); retrying in %.1f s", error, delay)
                self.clock.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _oldest_ns(self, table: str) -> int:
        horizon = self.config.retention.horizon(BY_NAME[table], self._now())
        # Partitions hold whole days: accept from the start of the horizon's day.
        start = datetime.combine(horizon.date(), datetime.min.time(), UTC)
        return int(start.timestamp()) * 10**9

    def _now(self) -> datetime:
        ns = self.clock.wall_ns()
        return datetime.fromtimestamp(ns // 10**9, UTC)

    # -- the worker ----------------------------------------------------------------------------

    def _decode_loop(self) -> None:
        try:
            while True:
                outcomes = self._collect()
                if outcomes:
                    with self._busy_lock:
                        self._busy += 1
                    assert self._writer is not None
                    self._handoff.put(self._writer.prepare(outcomes))
                elif self._stopping.is_set():
                    self._handoff.put(None)
                    return
        except BaseException as error:  # surfaced through `failure`; the process exits non-zero
            self._fail(error)

    def _write_loop(self) -> None:
        try:
            self._maintain(force=True)
            while True:
                try:
                    batch = self._handoff.get(timeout=0.2)
                except queue.Empty:
                    if self._failure is not None:
                        return
                    self._maintain()
                    continue
                if batch is None:
                    return
                try:
                    self._process(batch)
                finally:
                    with self._busy_lock:
                        self._busy -= 1
                self._maintain()
        except BaseException as error:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        log.exception("ingest failed")
        self._failure = error
        self._stopping.set()

    def _collect(self) -> list[Outcome]:
        cfg = self.config.ingest
        outcomes: list[Outcome] = []
        rows = 0
        first_ns: int | None = None
        while len(outcomes) < cfg.batch_max_messages and rows < cfg.batch_max_rows:
            if first_ns is None:
                timeout = 0.05
            else:
                timeout = cfg.batch_max_delay_ms / 1000 - (time.monotonic_ns() - first_ns) / 1e9
                if timeout <= 0:
                    break
            try:
                incoming = self._queue.get(timeout=timeout)
            except queue.Empty:
                if first_ns is None and not self._stopping.is_set():
                    return outcomes
                break
            if first_ns is None:
                first_ns = time.monotonic_ns()
            outcome = self._validator.check(incoming)
            outcomes.append(outcome)
            if isinstance(outcome, Accepted):
                rows += outcome.rows
        return outcomes

    def _process(self, prepared: PreparedBatch) -> None:
        batch = prepared.outcomes
        started = time.perf_counter()
        result = self._write(prepared)
        elapsed = time.perf_counter() - started
        with self._gen_lock:
            generation = self._generation
        for outcome in batch:
            incoming = outcome.incoming
            if incoming.qos > 0 and incoming.generation == generation:
                self._client.ack(incoming.mid, incoming.qos)
        self.totals.add(result)
        self.metrics.record(result, elapsed, batch, self.clock.wall_ns(), self._queue.qsize())

    def _write(self, batch: PreparedBatch | list[Outcome]) -> WriteResult:
        """Write the batch; on a database outage wait and retry; a batch the database refuses is
        split until the message it refuses is found, which is then kept as rejected."""
        while True:
            assert self._writer is not None
            try:
                return self._writer.write(batch, self._now())
            except psycopg.Error as error:
                if is_connection_error(error) or self._db().closed:
                    self._reopen_database()
                    continue
                outcomes = batch.outcomes if isinstance(batch, PreparedBatch) else batch
                if len(outcomes) == 1:
                    only = outcomes[0]
                    if isinstance(only, Rejected):
                        raise
                    reason = f"the database refused the message: {str(error).strip()[:400]}"
                    batch = [Rejected(only.incoming, "store_error", reason,
                                      only.message.header.device_id)]
                    continue
                half = len(outcomes) // 2
                first = self._write(outcomes[:half])
                first.add(self._write(outcomes[half:]))
                return first

    # -- maintenance ---------------------------------------------------------------------------

    def _maintain(self, *, force: bool = False) -> None:
        now_ns = self.clock.monotonic_ns()
        cfg = self.config.maintenance
        assert self._writer is not None
        try:
            if force or now_ns >= self._next_partitions_ns:
                self._writer.partitions.ensure_ahead(self._db(), self._now().date(),
                                                     cfg.partitions_ahead_days)
                self._next_partitions_ns = now_ns + 3600 * 10**9
            if force or now_ns >= self._next_retention_ns:
                self._next_retention_ns = now_ns + int(cfg.retention_interval_s * 1e9)
                if self._try_lock():
                    try:
                        removed = apply_retention(self._db(), self.config.retention, self._now(),
                                                  self._writer.mode).removed
                        for name in removed:
                            self._writer.partitions.forget(name)
                        if removed:
                            log.info("retention removed %d partitions", len(removed))
                    finally:
                        self._unlock()
            if force or now_ns >= self._next_summaries_ns:
                self._next_summaries_ns = now_ns + int(cfg.summaries_interval_s * 1e9)
                self.refresh_summaries()
        except psycopg.Error as error:
            log.warning("maintenance failed (%s); will retry", error)
            if is_connection_error(error) or self._db().closed:
                self._reopen_database()

    def refresh_summaries(self) -> int:
        """Recompute dirty daily summaries now; returns how many rows were written."""
        assert self._writer is not None
        conn = self._db()
        span = summaries.dirty_day_range(conn)
        if span is None:
            return 0
        first, last = span
        assert isinstance(first, date) and isinstance(last, date)
        oldest = (self._now() - timedelta(days=self.config.retention.days["summaries"])).date()
        self._writer.ensure_summary_partitions(max(first, oldest), last)
        written = 0
        while True:
            limit = self.config.maintenance.summaries_batch
            count = summaries.refresh_dirty(conn, oldest_day=oldest, limit=limit)
            written += count
            if count < limit:
                return written

    def _try_lock(self) -> bool:
        row = self._db().execute("SELECT pg_try_advisory_lock(%s)", (_MAINTENANCE_LOCK,)).fetchone()
        return bool(row and row[0])

    def _unlock(self) -> None:
        self._db().execute("SELECT pg_advisory_unlock(%s)", (_MAINTENANCE_LOCK,))
