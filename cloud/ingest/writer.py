"""Write one batch of validated messages in one transaction: COPY to staging, merge, summaries.

Telemetry rows go by binary COPY into session-local staging tables (`ON COMMIT DELETE ROWS`),
then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` into the real tables, whose one unique
index is (device_id, time, boot_id, seq[, row_idx]); what the INSERT did not insert is a
duplicate (a redelivery or a repeated publish) and is counted, not stored. By default
(`merge = "copy_first"`) a telemetry batch is first COPYed straight into its table inside a
savepoint: the unique index refuses any duplicate, which rolls the savepoint back and sends the
batch down the staging path; without duplicates (nearly always) this saves the staging COPY and
the INSERT ... SELECT, about 40 % of the database's work per row (bench/ingest.py measures both).
Rejected messages are stored in the same transaction, so the broker gets its acknowledgement only
when every message of the batch is either stored or kept aside with a reason.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from cloud.analytics.motion import IGNITION_SIGNAL_ID
from cloud.ingest.validate import Incoming, Outcome, Rejected, time_ranges_ns
from cloud.store import summaries
from cloud.store.copybin import HEADER, TRAILER, RowLayout
from cloud.store.db import Conn
from cloud.store.devices import registered_time_zones
from cloud.store.layout import BY_NAME
from cloud.store.migrate import StorageMode
from cloud.store.partitions import PartitionKeeper
from cloud.store.retention import RetentionPolicy
from protocol.messages import CommandAck, DrivingDay, Event, GnssFix, Status, TelemetryBatch

SIGNALS = RowLayout((("device_id", "text"), ("time", "timestamptz"), ("boot_id", "int8"), ("seq", "int8"),
                     ("row_idx", "int4"), ("signal_id", "int4"), ("value", "float8")))
POSITIONS = RowLayout((("device_id", "text"), ("time", "timestamptz"), ("boot_id", "int8"), ("seq", "int8"),
                       ("row_idx", "int4"), ("lat_deg", "float8"), ("lon_deg", "float8"), ("alt_m", "float4"),
                       ("speed_kmh", "float4"), ("heading_deg", "float4"), ("hdop", "float4"),
                       ("sats", "int2"), ("fix_type", "int2"), ("clock_quality", "int2")))
EVENT_COLUMNS = ("device_id", "time", "boot_id", "seq", "event_id", "detector", "severity", "lat_deg",
                 "lon_deg", "speed_kmh", "evidence", "detail", "clock_quality", "received_at", "transition",
                 "raised_at", "condition")
STATUS_COLUMNS = ("device_id", "time", "boot_id", "seq", "power_state", "supply_v", "backup_v",
                  "queue_depth", "firmware", "config_version", "energy_forecast_days", "body",
                  "clock_quality")
ACK_COLUMNS = ("device_id", "time", "boot_id", "seq", "nonce", "status", "detail", "clock_quality")
REJECT_COLUMNS = ("received_at", "receiver_id", "topic", "claimed_device_id", "reason_code", "reason",
                  "payload", "payload_size", "truncated")
MergeMode = Literal["copy_first", "staging"]
_STAGES = {"stage_signal_samples": "signal_samples", "stage_positions": "positions",
           "stage_events": "events", "stage_device_status": "device_status",
           "stage_command_acks": "command_acks"}


def _ack_rank(column: str) -> str:
    """Acks may arrive out of order: a command's state only moves forward (accepted < outcome)."""
    return f"CASE {column} WHEN 'accepted' THEN 1 WHEN 'rejected' THEN 2 WHEN 'failed' THEN 2 " \
           f"WHEN 'done' THEN 3 ELSE 0 END"


@dataclass
class WriteResult:
    """What one committed batch did, for metrics and tests."""

    messages: int = 0
    stored_messages: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)  # table -> new rows
    duplicates: Counter[str] = field(default_factory=Counter)  # table -> rows already stored
    kinds: Counter[str] = field(default_factory=Counter)  # message kind of accepted messages

    def add(self, other: WriteResult) -> None:
        self.messages += other.messages
        self.stored_messages += other.stored_messages
        self.rejected.update(other.rejected)
        self.inserted.update(other.inserted)
        self.duplicates.update(other.duplicates)
        self.kinds.update(other.kinds)


@dataclass
class PreparedBatch:
    """A batch's rows, laid out for COPY, with the outcomes they came from."""

    outcomes: list[Outcome]
    signals: list[bytes] = field(default_factory=list)
    positions: list[bytes] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    statuses: list[tuple[Any, ...]] = field(default_factory=list)
    acks: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[tuple[Any, ...]] = field(default_factory=list)
    latest: dict[str, tuple[int, int]] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    signal_rows: int = 0
    position_rows: int = 0
    day_figures: dict[tuple[str, int], summaries.DayFigures] = field(default_factory=dict)
    dirty_days: set[tuple[str, int]] = field(default_factory=set)
    ignition_spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # device: first, last (ns)
    driving: dict[tuple[str, str], DrivingDay] = field(default_factory=dict)
    latest_fix: dict[str, tuple[int, float, float, float | None]] = field(default_factory=dict)


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(microsecond=(ns // 1000) % 1_000_000)


def _utc_day(ns: int) -> date:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).date()


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class BatchWriter:
    """Owns one database connection (autocommit; each batch is one explicit transaction)."""

    def __init__(self, conn: Conn, *, mode: StorageMode, receiver_id: str, policy: RetentionPolicy,
                 rejected_max_bytes: int = 64 * 1024, time_zone: Callable[[str], str] | None = None,
                 merge: MergeMode = "copy_first") -> None:
        """`time_zone(device_id)` names a registered device's time zone (the receiver passes its
        registry cache); without it the writer reads the registry through `conn`."""
        self.conn = conn
        self.merge = merge
        self._time_zones: dict[str, str] = {}
        self.time_zone = time_zone or self._time_zone_from_db
        self.mode = mode
        self.receiver_id = receiver_id
        self.policy = policy
        self.rejected_max_bytes = rejected_max_bytes
        self.partitions = PartitionKeeper()
        for stage, table in _STAGES.items():
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} "  # type: ignore[arg-type]
                         f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")

    def _time_zone_from_db(self, device_id: str) -> str:
        if device_id not in self._time_zones:
            self._time_zones = registered_time_zones(self.conn)
        return self._time_zones.get(device_id, "UTC")

    # -- partitions ----------------------------------------------------------------------------

    def _ensure_partitions(self, outcomes: list[Outcome], now: datetime) -> None:
        if self.mode != "plain":
            return
        spans: dict[str, tuple[date, date]] = {}

        def widen(table: str, first: date, last: date) -> None:
            old = spans.get(table)
            spans[table] = (min(first, old[0]), max(last, old[1])) if old else (first, last)

        for outcome in outcomes:
            if isinstance(outcome, Rejected):
                day = _utc_day(outcome.incoming.received_ns)
                widen("rejected_messages", day, day)
                continue
            for table, first_ns, last_ns in time_ranges_ns(outcome.message):
                first, last = _utc_day(first_ns), _utc_day(last_ns)
                widen(table, first, last)
                if table == "events":
                    widen("event_lifecycle", first, last)
                # Local days of any time zone lie within one UTC day of the UTC day.
                widen("daily_summaries", first - timedelta(days=2), last + timedelta(days=2))
                widen("track_days", first - timedelta(days=2), last + timedelta(days=2))
        for table, (first, last) in spans.items():
            if table in ("daily_summaries", "track_days"):
                first = max(first, self._oldest_day(table, now))
            self.partitions.ensure(self.conn, table, first, last)

    def _oldest_day(self, table: str, now: datetime) -> date:
        return (now - timedelta(days=self.policy.days[BY_NAME[table].retention])).date()

    def ensure_summary_partitions(self, first: date, last: date) -> None:
        """Partitions for recomputing the local days [first, last]: summaries and packed tracks."""
        if self.mode == "plain":
            self.partitions.ensure(self.conn, "daily_summaries", first, last)
            self.partitions.ensure(self.conn, "track_days", first, last)

    # -- the batch -----------------------------------------------------------------------------

    def prepare(self, outcomes: list[Outcome]) -> PreparedBatch:
        """Lay out the rows of a batch (numpy, no database): runs on the decoding thread, so the
        next batch is prepared while the database stores the previous one."""
        batch = PreparedBatch(outcomes)
        for item in outcomes:
            if isinstance(item, Rejected):
                batch.rejected.append(self._reject_row(item))
                continue
            message = item.message
            header = message.header
            seen = batch.latest.get(header.device_id)
            if seen is None or header.sent_ns > seen[0]:
                batch.latest[header.device_id] = (header.sent_ns, item.incoming.received_ns)
            batch.kinds[type(message).__name__] += 1
            if isinstance(message, TelemetryBatch):
                batch.signal_rows += len(message.samples)
                batch.position_rows += len(message.fixes)
                self._telemetry_rows(message, batch, self.time_zone(header.device_id))
            elif isinstance(message, Event):
                batch.events.append(self._event_row(message, item.incoming))
            elif isinstance(message, Status):
                batch.statuses.append(self._status_row(message))
                summaries.fold_driving(batch.driving, header.device_id, message.driving)
            elif isinstance(message, CommandAck):
                batch.acks.append((header.device_id, _ts(header.sent_ns), header.boot_id, header.seq,
                                   message.nonce, message.status.name.lower(), message.detail,
                                   int(header.clock_quality)))
        return batch

    def write(self, batch: PreparedBatch | list[Outcome], now: datetime) -> WriteResult:
        """Store every accepted message and every rejection of the batch in one transaction."""
        if isinstance(batch, list):
            batch = self.prepare(batch)
        outcomes = batch.outcomes
        result = WriteResult(messages=len(outcomes), kinds=Counter(batch.kinds))
        self._ensure_partitions(outcomes, now)
        oldest_day = (now - timedelta(days=self.policy.days["summaries"])).date()
        params = {"oldest_day": oldest_day}
        signals, positions, events, statuses, acks = (batch.signals, batch.positions, batch.events,
                                                      batch.statuses, batch.acks)
        latest = batch.latest
        rejected = [o for o in outcomes if isinstance(o, Rejected)]
        conn = self.conn
        with conn.transaction():
            if signals:
                self._store_telemetry("signal_samples", SIGNALS, signals, batch.signal_rows, result)
            if batch.ignition_spans:  # the days whose packed runs they change (cloud/analytics/motion.py)
                devices = sorted(batch.ignition_spans)
                spans = [batch.ignition_spans[d] for d in devices]
                conn.execute(summaries.MARK_IGNITION_DIRTY_SQL, {
                    "device": devices, "first_at": [_ts(s[0]) for s in spans],
                    "last_at": [_ts(s[1]) for s in spans], "now": now, **params})
            if batch.day_figures:
                conn.execute(summaries.MERGE_DAY_FIGURES_SQL,
                             {**summaries.day_figures_params(batch.day_figures), **params})
            if positions:
                self._store_telemetry("positions", POSITIONS, positions, batch.position_rows, result)
                conn.execute(summaries.MARK_DIRTY_SQL, {**summaries.dirty_params(batch.dirty_days), **params})
                devices = sorted(batch.latest_fix)
                fixes = [batch.latest_fix[d] for d in devices]
                conn.execute(_LATEST_POSITION, (devices, [_ts(f[0]) for f in fixes], [f[1] for f in fixes],
                                                [f[2] for f in fixes], [f[3] for f in fixes]))
            if statuses:
                self._copy_rows("stage_device_status", STATUS_COLUMNS, statuses)
                self._merge("device_status", ", ".join(STATUS_COLUMNS), len(statuses), result)
                conn.execute(summaries.merge_status_sql("stage_device_status"), params)
                conn.execute(_LATEST_STATUS)
            if batch.driving:
                conn.execute(summaries.MERGE_DRIVING_SQL,
                             {**summaries.driving_params(batch.driving), **params})
            if acks:
                self._copy_rows("stage_command_acks", ACK_COLUMNS, acks)
                cursor = conn.execute(_ACKS)
                row = cursor.fetchone()
                self._count(result, "command_acks", len(acks), int(row[0]) if row else 0)
            if rejected:
                self._copy_rows("rejected_messages", REJECT_COLUMNS, batch.rejected)
                for r in rejected:
                    result.rejected[r.reason_code] += 1
            if latest:
                ids = list(latest)
                conn.execute(_LATEST_MESSAGE, (ids, [_ts(latest[i][0]) for i in ids],
                                               [_ts(latest[i][1]) for i in ids]))
            if events:  # last, so that stored_at (clock_timestamp) is closest to the commit
                self._copy_rows("stage_events", EVENT_COLUMNS, events)
                cursor = conn.execute(_EVENTS.replace("{harsh}", summaries.count_harsh_sql(
                    "(SELECT * FROM ins WHERE transition = 'raised')")), params)
                row = cursor.fetchone()
                self._count(result, "events", len(events), int(row[0]) if row else 0)
            if latest:
                ids = list(latest)
                conn.execute(_BACK_ONLINE, (ids, [_ts(latest[i][0]) for i in ids]))
        result.stored_messages = len(outcomes) - len(rejected)
        return result

    # -- rows ----------------------------------------------------------------------------------

    @staticmethod
    def _telemetry_rows(message: TelemetryBatch, batch: PreparedBatch, time_zone: str = "UTC") -> None:
        """Lay out one message's rows (and fold its summary figures into `batch`)."""
        signals, positions = batch.signals, batch.positions
        header = message.header
        device = header.device_id.encode()
        samples = message.samples
        if len(samples):
            n = len(samples)
            times = np.asarray(samples.time_ns, dtype=np.int64)
            ids = np.asarray(samples.signal_id, dtype=np.int32)
            values = np.asarray(samples.value, dtype=np.float64)
            signals.append(SIGNALS.encode(n, (device, times, header.boot_id, header.seq,
                                              np.arange(n, dtype=np.int32), ids, values)))
            summaries.aggregate_samples(batch.day_figures, header.device_id, time_zone, times, ids, values)
            ignition = times[ids == IGNITION_SIGNAL_ID]
            if len(ignition):
                span = batch.ignition_spans.get(header.device_id)
                first, last = int(ignition.min()), int(ignition.max())
                batch.ignition_spans[header.device_id] = (first, last) if span is None else \
                    (min(first, span[0]), max(last, span[1]))
        fixes = message.fixes
        if len(fixes):
            n = len(fixes)
            fix_times = np.asarray(fixes.time_ns, dtype=np.int64)
            summaries.dirty_days(batch.dirty_days, header.device_id, time_zone, fix_times)
            newest = int(np.argmax(fix_times))
            known = batch.latest_fix.get(header.device_id)
            if known is None or fixes.time_ns[newest] > known[0]:
                batch.latest_fix[header.device_id] = (fixes.time_ns[newest], fixes.lat_deg[newest],
                                                      fixes.lon_deg[newest], _finite(fixes.speed_kmh[newest]))
            positions.append(POSITIONS.encode(n, (
                device, fix_times, header.boot_id, header.seq,
                np.arange(n, dtype=np.int32), np.asarray(fixes.lat_deg, dtype=np.float64),
                np.asarray(fixes.lon_deg, dtype=np.float64), np.asarray(fixes.alt_m, dtype=np.float32),
                np.asarray(fixes.speed_kmh, dtype=np.float32),
                np.asarray(fixes.heading_deg, dtype=np.float32),
                np.asarray(fixes.hdop, dtype=np.float32), np.asarray(fixes.sats, dtype=np.int16),
                np.asarray(fixes.fix_type, dtype=np.int16), int(header.clock_quality),
            )))

    @staticmethod
    def _event_row(message: Event, incoming: Incoming) -> tuple[Any, ...]:
        header = message.header
        position: GnssFix | None = message.position
        return (header.device_id, _ts(message.time_ns), header.boot_id, header.seq, message.event_id,
                message.detector, message.severity.name,
                position.lat_deg if position else None, position.lon_deg if position else None,
                _finite(position.speed_kmh) if position else None,
                Jsonb({k: _finite(v) for k, v in message.features.items()}), message.detail,
                int(header.clock_quality), _ts(incoming.received_ns), message.transition.name.lower(),
                None if message.raised_ns is None else _ts(message.raised_ns), message.condition)

    @staticmethod
    def _status_row(message: Status) -> tuple[Any, ...]:
        header = message.header
        body: dict[str, object] = {
            "queue_bytes": message.queue_bytes, "uptime_s": message.uptime_s,
            "avg_current_ma": _finite(message.avg_current_ma), "rssi_dbm": message.rssi_dbm,
            "position": None if message.position is None else {
                "time": _ts(message.position.time_ns).isoformat(), "lat_deg": message.position.lat_deg,
                "lon_deg": message.position.lon_deg, "speed_kmh": _finite(message.position.speed_kmh),
                "fix_type": int(message.position.fix_type)},
        }
        if message.driving:
            body["driving"] = [{"day": d.day, **{n: getattr(d, n) for n in summaries.DRIVING_COLUMNS}}
                               for d in message.driving]
        return (header.device_id, _ts(header.sent_ns), header.boot_id, header.seq, message.power_state.name,
                _finite(message.supply_v), _finite(message.backup_v), message.queue_depth,
                message.firmware_version, message.config_version,
                _finite(message.energy_forecast_days),
                Jsonb(json.loads(json.dumps(body))), int(header.clock_quality))

    def _reject_row(self, rejection: Rejected) -> tuple[Any, ...]:
        incoming = rejection.incoming
        payload = incoming.payload[: self.rejected_max_bytes]
        return (_ts(incoming.received_ns), self.receiver_id, incoming.topic[:512].replace("\x00", "?"),
                rejection.claimed_device_id, rejection.reason_code, rejection.reason.replace("\x00", "?"),
                payload, len(incoming.payload), len(payload) < len(incoming.payload))

    # -- SQL helpers ---------------------------------------------------------------------------

    def _copy_binary(self, stage: str, layout: RowLayout, chunks: list[bytes]) -> None:
        with self.conn.cursor().copy(
            f"COPY {stage} ({layout.column_list}) FROM STDIN (FORMAT BINARY)"  # type: ignore[arg-type]
        ) as copy:
            copy.write(HEADER)
            for chunk in chunks:
                copy.write(chunk)
            copy.write(TRAILER)

    def _copy_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor().copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN"  # type: ignore[arg-type]
        ) as copy:
            for row in rows:
                copy.write_row(row)

    def _store_telemetry(self, table: str, layout: RowLayout, chunks: list[bytes], rows: int,
                         result: WriteResult) -> None:
        """Store telemetry rows once. `copy_first`: COPY straight into `table` inside a savepoint —
        the common case, with no duplicate, costs one COPY; a duplicate key (a redelivery) rolls
        the savepoint back and the batch takes the staging path. `staging`: always that path."""
        if self.merge == "copy_first":
            try:
                with self.conn.transaction():
                    self._copy_binary(table, layout, chunks)
                self._count(result, table, rows, rows)
                return
            except psycopg.errors.UniqueViolation:
                pass
        self._copy_binary(f"stage_{table}", layout, chunks)
        self._merge(table, layout.column_list, rows, result)

    def _merge(self, table: str, columns: str, staged: int, result: WriteResult) -> None:
        """Move staged rows into `table`; rows whose (device, time, boot, seq[, row]) is stored
        already are duplicates: not inserted, counted."""
        cursor = self.conn.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM stage_{table} "  # type: ignore[arg-type]
            "ON CONFLICT DO NOTHING"
        )
        self._count(result, table, staged, max(cursor.rowcount, 0))

    @staticmethod
    def _count(result: WriteResult, table: str, staged: int, inserted: int) -> None:
        result.inserted[table] += inserted
        result.duplicates[table] += staged - inserted


_LATEST_POSITION = """
    INSERT INTO device_latest AS t (device_id, last_position_at, lat_deg, lon_deg, speed_kmh)
    SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::float8[], %s::real[])
    ON CONFLICT (device_id) DO UPDATE SET
        last_position_at = EXCLUDED.last_position_at, lat_deg = EXCLUDED.lat_deg,
        lon_deg = EXCLUDED.lon_deg, speed_kmh = EXCLUDED.speed_kmh
    WHERE t.last_position_at IS NULL OR EXCLUDED.last_position_at > t.last_position_at"""

# The device list's power state (migration 0014): the newest status of each device in the batch,
# unless a newer one is stored already. In device id order, as the other upserts of device_latest.
_LATEST_STATUS = """
    INSERT INTO device_latest AS t (device_id, status_time, power_state)
    SELECT DISTINCT ON (device_id) device_id, time, power_state FROM stage_device_status
    ORDER BY device_id, time DESC
    ON CONFLICT (device_id) DO UPDATE SET
        status_time = EXCLUDED.status_time, power_state = EXCLUDED.power_state
    WHERE t.status_time IS NULL OR EXCLUDED.status_time > t.status_time"""

_LATEST_MESSAGE = """
    INSERT INTO device_latest AS t (device_id, last_message_at, last_received_at)
    SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[])
    ON CONFLICT (device_id) DO UPDATE SET
        last_message_at = GREATEST(t.last_message_at, EXCLUDED.last_message_at),
        last_received_at = GREATEST(t.last_received_at, EXCLUDED.last_received_at)"""

_EVENTS = f"""
    WITH ins AS (
        INSERT INTO events ({", ".join(EVENT_COLUMNS)})
        SELECT {", ".join(EVENT_COLUMNS)} FROM stage_events ON CONFLICT DO NOTHING
        RETURNING device_id, time, boot_id, seq, detector, event_id, transition, detail, raised_at
    ), life AS (
        -- one lifecycle row per raised event; resolved at once if its clear came first or with it
        INSERT INTO event_lifecycle (device_id, event_time, boot_id, seq, event_id, state, updated_by)
        SELECT r.device_id, r.time, r.boot_id, r.seq, r.event_id,
               CASE WHEN c.device_id IS NULL THEN 'open' ELSE 'resolved' END,
               CASE WHEN c.device_id IS NULL THEN NULL ELSE 'device' END
        FROM ins r LEFT JOIN LATERAL (
            SELECT device_id FROM ins x WHERE x.transition = 'cleared'
                AND x.device_id = r.device_id AND x.event_id = r.event_id
            UNION ALL
            SELECT device_id FROM events x WHERE x.transition = 'cleared'
                AND x.device_id = r.device_id AND x.event_id = r.event_id
            LIMIT 1) c ON true
        WHERE r.transition = 'raised' ON CONFLICT DO NOTHING
    ), record AS (
        -- a record sent raised and cleared at once (CLEARED, raised_at = its own time, no RAISED
        -- row: the starter interrupt's changes) is its own lifecycle row, resolved by the device
        INSERT INTO event_lifecycle (device_id, event_time, boot_id, seq, event_id, state, updated_at,
                                     updated_by, note)
        SELECT c.device_id, c.time, c.boot_id, c.seq, c.event_id, 'resolved', c.time, 'device', c.detail
        FROM ins c WHERE c.transition = 'cleared' AND c.raised_at = c.time
            AND NOT EXISTS (SELECT 1 FROM ins x WHERE x.transition = 'raised'
                            AND x.device_id = c.device_id AND x.event_id = c.event_id)
            AND NOT EXISTS (SELECT 1 FROM events x WHERE x.transition = 'raised'
                            AND x.device_id = c.device_id AND x.event_id = c.event_id)
        ON CONFLICT DO NOTHING
    ), resolved AS (
        UPDATE event_lifecycle l SET state = 'resolved', updated_at = c.time, updated_by = 'device',
                                     note = c.detail
        FROM ins c WHERE c.transition = 'cleared' AND l.device_id = c.device_id
            AND l.event_id = c.event_id AND l.state = 'open'
    ), harsh AS ({{harsh}})
    SELECT count(*) FROM ins"""

# A last will (`uplink.offline`, published by the broker when a connection is lost) is a hint, not
# an alarm: a broker restart publishes every car's will at once. It is resolved as soon as the
# device sends anything built after the will reached us (its sent time is later than the will's
# received_at); the offline watcher owns real offline alerts.
_BACK_ONLINE = """
    UPDATE event_lifecycle AS l
    SET state = 'resolved', updated_at = b.sent_at, updated_by = 'ingest', note = 'the device is back online'
    FROM unnest(%s::text[], %s::timestamptz[]) AS b(device_id, sent_at), events AS e
    WHERE l.device_id = b.device_id AND l.state = 'open'
      AND l.event_time > b.sent_at - interval '7 days' AND l.event_time <= b.sent_at
      AND e.device_id = l.device_id AND e.time = l.event_time AND e.boot_id = l.boot_id
      AND e.seq = l.seq AND e.detector = 'uplink.offline' AND e.received_at < b.sent_at"""

_ACKS = f"""
    WITH i AS (
        INSERT INTO command_acks ({", ".join(ACK_COLUMNS)})
        SELECT {", ".join(ACK_COLUMNS)} FROM stage_command_acks ON CONFLICT DO NOTHING
        RETURNING device_id, time, nonce, status, detail
    ), u AS (
        UPDATE commands c SET state = i.status, acked_at = i.time, ack_detail = i.detail
        FROM i WHERE c.nonce = i.nonce AND c.device_id = i.device_id
          AND {_ack_rank("i.status")} >= {_ack_rank("c.state")}
    )
    SELECT count(*) FROM i"""


def is_connection_error(error: Exception) -> bool:
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
