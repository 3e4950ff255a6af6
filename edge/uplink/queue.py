"""The outbox on flash: a checksummed segment log with transactional take/commit.

Every accepted message is appended as one record to the active segment file. A record leaves the
queue only when the uplink commits it — the cloud confirmed it stored the message (a stored
receipt naming its (boot, seq) key), or, for a record without a key or with receipts off, the
broker's PUBACK arrived — or when the queue itself drops it by a written-down policy (eviction
under the size bound, a broker rejection); both are written to the log as small marker records
and counted. A keyed record the broker acknowledged stays on flash as "delivered" until its
receipt arrives; `redeliver` makes it pending again (a re-send) after a timeout. Opening the
queue replays the log, so the state survives kill -9 (appends go to the page cache before
`append` returns) and power loss (a torn or corrupt tail is detected by its CRC, truncated and
its lost records counted, never fatal).

Why a segment log and not SQLite: see docs/agent.md ("Queue on flash") — in the same workload the
log writes several times fewer bytes per message and its sync cadence is ours to choose.

Record layout (little endian), CRC-32 over everything before it:

    magic u16 | kind u8 | priority u8 | channel u8 | record_id u64 | created_wall_ns u64 |
    payload_len u32 | payload | crc32 u32

A keyed data record (kind 4) starts its payload with `boot_id u32 | seq u64`, the message's
protocol key; kind 1 records (written before keys existed) have none and commit on PUBACK.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from lienwatch.clock import Clock, SystemClock
from lienwatch.errors import LienwatchError

_MAGIC = 0x51A7
_HEAD = struct.Struct("<HBBBQQI")
_CRC = struct.Struct("<I")
_ID = struct.Struct("<Q")
_KEY = struct.Struct("<IQ")
RECORD_OVERHEAD = _HEAD.size + _CRC.size  # 29 bytes around each payload
MAX_PAYLOAD_BYTES = 1 << 20
_SEGMENT_PREFIX = "seg-"
_SEGMENT_SUFFIX = ".log"
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NS_PER_DAY = 86_400 * 10**9


class QueueError(LienwatchError):
    """The outbox cannot accept or return a record."""


class QueueFullError(QueueError):
    """The size bound is reached and nothing evictable is left for a record of this priority."""


class QueueDiskFullError(QueueError):
    """The file system refused a write (ENOSPC/EFBIG/EDQUOT): free space or lower queue.max_bytes."""


class Priority(IntEnum):
    """Eviction order, lowest first. ALERT and EMERGENCY are never evicted."""

    TELEMETRY = 0
    STATUS = 1
    WARNING = 2
    ALERT = 3
    EMERGENCY = 4

    @property
    def evictable(self) -> bool:
        return self < Priority.ALERT


class Channel(IntEnum):
    """What a record is, so the uplink can route it to the right topic."""

    TELEMETRY = 0
    EVENT = 1
    STATUS = 2
    COMMAND_ACK = 3


class _Kind(IntEnum):
    DATA = 1
    COMMIT = 2  # payload: record ids done (stored receipt, or PUBACK without receipts)
    DROP = 3  # payload: reason u8 + record ids dropped by policy
    DATA_KEYED = 4  # payload: boot_id u32 + seq u64 + message


_DATA_KINDS = (_Kind.DATA, _Kind.DATA_KEYED)
Key = tuple[int, int]  # (boot_id, seq) of the protocol header


class DropReason(IntEnum):
    EVICTED = 1  # size bound, lower priority first
    REJECTED = 2  # the broker answered the publish with a failure reason code


@dataclass(frozen=True, slots=True)
class QueuedRecord:
    """One message as handed out by `begin`: publish it, then `end` it."""

    record_id: int
    priority: Priority
    channel: Channel
    created_wall_ns: int
    payload: bytes
    key: Key | None = None


@dataclass(slots=True)
class _Entry:
    segment: int
    offset: int
    size: int  # whole record on disk
    priority: Priority
    channel: Channel
    created_wall_ns: int
    key: Key | None = None


@dataclass(slots=True)
class QueueStats:
    """Counters for status and tests; `*_today` roll over at UTC midnight."""

    appended: int = 0
    committed: int = 0
    evicted: int = 0
    rejected: int = 0
    refused_full: int = 0
    torn_tails: int = 0  # corrupt regions found on open
    torn_records: int = 0  # data records lost in those regions (counted by their headers)
    confirmed: int = 0  # records the cloud confirmed stored (stored receipts)
    redelivered: int = 0  # delivered records made pending again: no receipt within the timeout
    recovered_loss_bytes: int = 0
    bytes_written: int = 0
    bytes_written_today: int = 0
    syncs: int = 0
    compactions: int = 0
    day_index: int = 0
    evicted_by_priority: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Size bound and flash-wear knobs (see deploy/agent.example.toml, [uplink.queue])."""

    max_bytes: int = 64 * 1024 * 1024
    segment_bytes: int = 1024 * 1024
    sync_interval_s: float = 30.0
    sync_bytes: int = 64 * 1024
    evict_to_fraction: float = 0.9
    urgent_sync_from: Priority = Priority.WARNING
    reserve_bytes: int = 64 * 1024


class FlashQueue:
    """A bounded, priority-aware, crash-safe outbox in a directory of segment files.

    Thread-safe: the agent appends from its run loop while the uplink takes and commits.
    `begin(n)` hands out the oldest records of the highest priority first and marks them
    in flight; `end(accepted=…, rejected=…, released=…)` finishes them. Nothing handed out is
    forgotten: released records become pending again, and all in-flight records are pending
    again after a restart (duplicates are possible, loss is not).
    """

    def __init__(self, directory: Path, config: QueueConfig | None = None,
                 clock: Clock | None = None) -> None:
        self.directory = Path(directory)
        self.config = config or QueueConfig()
        if self.config.segment_bytes > self.config.max_bytes:
            raise QueueError("queue segment_bytes must not exceed max_bytes")
        self.clock = clock or SystemClock()
        self.stats = QueueStats()
        self._lock = threading.RLock()
        self._entries: dict[int, _Entry] = {}
        # Pending (not in flight) record ids per (priority, channel), each in id (= age) order.
        self._pending: dict[tuple[Priority, Channel], dict[int, None]] = {
            (p, c): {} for p in Priority for c in Channel}
        self._live_bytes = 0
        self._in_flight: set[int] = set()
        self._delivered: dict[int, int] = {}  # record id -> monotonic ns of its PUBACK, oldest first
        # Per channel, the PUBACK time of the newest record a receipt confirmed: a record delivered
        # before it and still unconfirmed was skipped (lost on the way), not merely queued behind.
        self._confirmed_upto: dict[Channel, int] = {}
        self._by_key: dict[Key, int] = {}
        self._segments: dict[int, int] = {}  # segment number -> size on disk
        self._live_per_segment: dict[int, int] = {}
        self._next_id = 1
        self._fd = -1
        self._active = 0
        self._unsynced_bytes = 0
        self._last_sync_ns = self.clock.monotonic_ns()
        self._pending_commits: list[int] = []
        self._closed = False
        self._fs_bound: int | None = None  # lowered when the file system said it is full
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # ------------------------------------------------------------------ public API

    def append(self, payload: bytes, *, priority: Priority, channel: Channel, key: Key | None = None) -> int:
        """Store one message and return its record id; durable once this returns (see module doc).

        `key` is the message's (boot_id, seq): a keyed record waits for the cloud's stored receipt.

        Raises QueueFullError when the bound leaves no room for this priority, QueueDiskFullError
        when the file system is full. Neither loses a record that was already accepted.
        """
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise QueueError(f"queue payload must be bytes, not {type(payload).__name__}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise QueueError(f"queue payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        priority, channel = Priority(priority), Channel(channel)
        body = bytes(payload) if key is None else _KEY.pack(*key) + bytes(payload)
        size = RECORD_OVERHEAD + len(body)
        with self._lock:
            self._check_open()
            self._make_room(size, priority)
            record_id = self._next_id
            created = self.clock.wall_ns()
            kind = _Kind.DATA if key is None else _Kind.DATA_KEYED
            record = _encode(kind, priority, channel, record_id, created, body)
            try:
                offset, segment = self._write(record)
            except QueueDiskFullError:
                # The file system is smaller than max_bytes: free the reserve (room for markers
                # and compaction), shrink the bound to what fits, shed lower-priority records to
                # make room, and try once more.
                self._release_reserve()
                self._fs_bound = max(self._disk_bytes() - size, 0)
                try:
                    self._make_room(size, priority)
                except QueueFullError:
                    raise QueueDiskFullError(
                        f"the file system holding {self.directory} is full and nothing below "
                        f"{priority.name} is left to shed; free space or lower [uplink.queue] max_bytes"
                    ) from None
                offset, segment = self._write(record)
            self._next_id += 1
            self._entries[record_id] = _Entry(segment, offset, size, priority, channel, created, key)
            if key is not None:
                self._by_key[key] = record_id
            self._pending[priority, channel][record_id] = None
            self._live_bytes += size
            self._live_per_segment[segment] = self._live_per_segment.get(segment, 0) + 1
            self.stats.appended += 1
            if priority >= self.config.urgent_sync_from:
                self._sync()
            else:
                self._maybe_sync()
            return record_id

    def begin(self, max_records: int, *, channels: Iterable[Channel] | None = None) -> list[QueuedRecord]:
        """Take up to `max_records` pending records (highest priority, then oldest) into flight."""
        wanted = list(Channel) if channels is None else sorted(set(map(Channel, channels)))
        taken: list[QueuedRecord] = []
        with self._lock:
            self._check_open()
            for priority in sorted(Priority, reverse=True):
                room = max_records - len(taken)
                if room <= 0:
                    break
                # The oldest `room` ids of this priority over the wanted channels.
                candidates: list[int] = []
                for channel in wanted:
                    pending = self._pending[priority, channel]
                    for index, record_id in enumerate(pending):
                        if index >= room:
                            break
                        candidates.append(record_id)
                for record_id in sorted(candidates)[:room]:
                    entry = self._entries[record_id]
                    del self._pending[priority, entry.channel][record_id]
                    self._in_flight.add(record_id)
                    taken.append(QueuedRecord(record_id, entry.priority, entry.channel,
                                              entry.created_wall_ns, self._read_payload(entry), entry.key))
        return taken

    def end(self, *, accepted: Sequence[int] = (), rejected: Sequence[int] = (),
            released: Sequence[int] = (), delivered: Sequence[int] = ()) -> None:
        """Finish in-flight records: accepted (done), rejected (dropped, counted), released
        (pending again) or delivered (the broker has it: kept until `confirm` or `redeliver`)."""
        with self._lock:
            self._check_open()
            for record_id in released:
                if record_id in self._in_flight:
                    self._in_flight.discard(record_id)
                    self._make_pending(record_id)
            now = self.clock.monotonic_ns()
            for record_id in delivered:
                if record_id in self._in_flight:
                    self._in_flight.discard(record_id)
                    self._delivered[record_id] = now
            done = [i for i in accepted if i in self._in_flight]
            for record_id in done:
                self._forget(record_id)
            self.stats.committed += len(done)
            self._pending_commits.extend(done)
            bad = [i for i in rejected if i in self._in_flight]
            if bad:
                for record_id in bad:
                    self._forget(record_id)
                self.stats.rejected += len(bad)
                self._write(_encode_ids(_Kind.DROP, bad, DropReason.REJECTED))
            self._maybe_sync()

    def confirm(self, keys: Iterable[Key]) -> int:
        """The cloud stored these (boot, seq): forget their records, whatever their state; returns
        how many were known. A PUBACK that comes later for one of them is ignored."""
        with self._lock:
            self._check_open()
            done = [i for i in (self._by_key.get(k) for k in keys) if i is not None]
            for record_id in done:
                at = self._delivered.get(record_id)
                if at is not None:
                    channel = self._entries[record_id].channel
                    self._confirmed_upto[channel] = max(self._confirmed_upto.get(channel, at), at)
                self._forget(record_id)
            self.stats.confirmed += len(done)
            self.stats.committed += len(done)
            self._pending_commits.extend(done)
            self._maybe_sync()
            return len(done)

    def redeliver(self, older_than_ns: int, *, skipped_grace_ns: int | None = None) -> int:
        """Delivered records whose PUBACK is older than `older_than_ns` (monotonic) become pending
        again, to be re-sent (no receipt came: the broker or the receiver lost them, or is slow).

        With `skipped_grace_ns`, only those that were *skipped* go: delivered more than the grace
        before the newest confirmed record of their channel (a record behind them in the same
        pipeline was stored, so they were lost). A receiver that is merely behind confirms
        nothing newer, so its backlog is not sent twice."""
        with self._lock:
            self._check_open()
            late = [i for i, at in self._delivered.items() if at < older_than_ns and (
                skipped_grace_ns is None
                or at < self._confirmed_upto.get(self._entries[i].channel, 0) - skipped_grace_ns)]
            for record_id in late:
                del self._delivered[record_id]
                self._make_pending(record_id)
            self.stats.redelivered += len(late)
            return len(late)

    def commit_delivered(self, older_than_ns: int) -> int:
        """Delivered records whose PUBACK is older than `older_than_ns` are done: PUBACK semantics,
        the fallback for a cloud that never confirmed anything (an old receiver)."""
        with self._lock:
            self._check_open()
            done = [i for i, at in self._delivered.items() if at < older_than_ns]
            for record_id in done:
                self._forget(record_id)
            self.stats.committed += len(done)
            self._pending_commits.extend(done)
            self._maybe_sync()
            return len(done)

    def oldest_delivered_ns(self) -> int | None:
        """Monotonic ns of the oldest PUBACK still waiting for its receipt."""
        with self._lock:
            return min(self._delivered.values(), default=None)

    @property
    def delivered(self) -> int:
        """Records the broker acknowledged that wait for the cloud's stored receipt."""
        with self._lock:
            return len(self._delivered)

    def _make_pending(self, record_id: int) -> None:
        entry = self._entries[record_id]
        key = (entry.priority, entry.channel)
        self._pending[key][record_id] = None
        # Keep id (age) order: re-sort this pending dict (releases and re-sends are rare).
        self._pending[key] = dict(sorted(self._pending[key].items()))

    def tick(self) -> None:
        """Write batched commit markers and sync if the interval or byte threshold is reached."""
        with self._lock:
            if not self._closed:
                self._maybe_sync()

    def flush(self) -> None:
        """Write commit markers and fsync now (graceful shutdown, ignition off)."""
        with self._lock:
            if not self._closed:
                self._sync()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._sync()
            os.close(self._fd)
            self._closed = True

    def __enter__(self) -> FlashQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def depth(self) -> int:
        """Records not yet delivered (pending plus in flight)."""
        with self._lock:
            return len(self._entries)

    def depth_by_priority(self, *, delivered: bool = True) -> dict[str, int]:
        """Records per priority: pending and in flight, and (`delivered`) those waiting for receipts."""
        with self._lock:
            counts = {p.name: sum(len(self._pending[p, c]) for c in Channel) for p in Priority}
            for record_id in (*self._in_flight, *(self._delivered if delivered else ())):
                counts[self._entries[record_id].priority.name] += 1
            return counts

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def disk_bytes(self) -> int:
        with self._lock:
            return sum(self._segments.values())

    @property
    def live_bytes(self) -> int:
        with self._lock:
            return self._live_bytes

    def oldest_wall_ns(self) -> int | None:
        with self._lock:
            firsts = [next(iter(p)) for p in self._pending.values() if p]
            candidates = [self._entries[i].created_wall_ns
                          for i in (*firsts, *self._in_flight, *self._delivered)]
            return min(candidates, default=None)

    def snapshot(self) -> dict[str, object]:
        """Plain-data view for the status file."""
        with self._lock:
            self._roll_day()
            return {
                "depth": len(self._entries),
                "depth_by_priority": self.depth_by_priority(),
                "in_flight": len(self._in_flight),
                "delivered_unconfirmed": len(self._delivered),
                "disk_bytes": sum(self._segments.values()),
                "max_bytes": self.config.max_bytes,
                "disk_full_bound": self._fs_bound,
                "segments": len(self._segments),
                "oldest_wall_ns": self.oldest_wall_ns(),
                "appended": self.stats.appended,
                "committed": self.stats.committed,
                "evicted": self.stats.evicted,
                "evicted_by_priority": dict(self.stats.evicted_by_priority),
                "rejected": self.stats.rejected,
                "refused_full": self.stats.refused_full,
                "torn_tails": self.stats.torn_tails,
                "torn_records": self.stats.torn_records,
                "confirmed": self.stats.confirmed,
                "redelivered": self.stats.redelivered,
                "recovered_loss_bytes": self.stats.recovered_loss_bytes,
                "bytes_written": self.stats.bytes_written,
                "bytes_written_today": self.stats.bytes_written_today,
                "syncs": self.stats.syncs,
                "compactions": self.stats.compactions,
            }

    # ------------------------------------------------------------------ writing

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError("the queue is closed")

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"{_SEGMENT_PREFIX}{number:010d}{_SEGMENT_SUFFIX}"

    def _open_active(self, number: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self._segment_path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active = number
        self._segments.setdefault(number, os.fstat(self._fd).st_size)
        self._live_per_segment.setdefault(number, 0)

    def _write(self, record: bytes) -> tuple[int, int]:
        """Append one encoded record to the active segment; return (offset, segment)."""
        if self._segments[self._active] + len(record) > self.config.segment_bytes and \
                self._segments[self._active] > 0:
            self._rotate()
        offset = self._segments[self._active]
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as error:
            # Undo a partial append so the log stays parseable without waiting for recovery.
            os.ftruncate(self._fd, offset)
            if error.errno in _DISK_FULL_ERRNOS:
                raise QueueDiskFullError(
                    f"the file system holding {self.directory} is full ({error.strerror}); "
                    "free space or lower [uplink.queue] max_bytes"
                ) from None
            raise QueueError(f"cannot write to {self.directory}: {error}") from None
        self._segments[self._active] = offset + len(record)
        self._count_written(len(record))
        return offset, self._active

    def _count_written(self, size: int) -> None:
        self._roll_day()
        self.stats.bytes_written += size
        self.stats.bytes_written_today += size
        self._unsynced_bytes += size

    def _roll_day(self) -> None:
        day = self.clock.wall_ns() // _NS_PER_DAY
        if day != self.stats.day_index:
            self.stats.day_index = day
            self.stats.bytes_written_today = 0

    def _maybe_sync(self) -> None:
        elapsed_s = (self.clock.monotonic_ns() - self._last_sync_ns) / 1e9
        if (self._unsynced_bytes or self._pending_commits) and (
            self._unsynced_bytes >= self.config.sync_bytes or elapsed_s >= self.config.sync_interval_s
            or len(self._pending_commits) >= 4096
        ):
            self._sync()

    def _sync(self) -> None:
        if self._pending_commits:
            commits, self._pending_commits = self._pending_commits, []
            try:
                self._write(_encode_ids(_Kind.COMMIT, commits))
            except QueueError:
                self._pending_commits = commits + self._pending_commits
                raise
        if self._unsynced_bytes:
            os.fdatasync(self._fd)
            self.stats.syncs += 1
            self._unsynced_bytes = 0
        self._last_sync_ns = self.clock.monotonic_ns()
        self._collect()

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _forget(self, record_id: int) -> None:
        self._in_flight.discard(record_id)
        self._delivered.pop(record_id, None)
        entry = self._entries.pop(record_id)
        if entry.key is not None and self._by_key.get(entry.key) == record_id:
            del self._by_key[entry.key]
        self._pending[entry.priority, entry.channel].pop(record_id, None)
        self._live_bytes -= entry.size
        self._live_per_segment[entry.segment] -= 1

    def _collect(self) -> None:
        """Delete leading segments whose records are all gone (markers are written and synced)."""
        removed = False
        for number in sorted(self._segments):
            if number == self._active or self._live_per_segment.get(number, 0) > 0:
                break
            self._segment_path(number).unlink(missing_ok=True)
            del self._segments[number]
            self._live_per_segment.pop(number, None)
            removed = True
        if removed:
            self._fsync_dir()
            self._fs_bound = None  # space was freed: try the configured bound again
            self._ensure_reserve()

    # ------------------------------------------------------------------ the size bound

    def _bound(self) -> int:
        if self._fs_bound is None:
            return self.config.max_bytes
        return min(self.config.max_bytes, self._fs_bound)

    def _make_room(self, size: int, priority: Priority) -> None:
        bound = self._bound()
        if self._disk_bytes() + size <= bound:
            return
        self._sync()  # collects fully delivered segments
        if self._disk_bytes() + size <= bound:
            return
        target = int(bound * self.config.evict_to_fraction) - size
        live = self._live_bytes
        victims: list[int] = []
        for victim_priority in Priority:
            if not victim_priority.evictable or live <= target:
                break
            if victim_priority > priority:
                break  # never evict something more important than what is being added
            # Oldest first across channels of this priority, pending or waiting for a receipt.
            delivered = (i for i in self._delivered if self._entries[i].priority == victim_priority)
            for record_id in sorted((*(i for c in Channel for i in self._pending[victim_priority, c]),
                                     *delivered)):
                if live <= target:
                    break
                victims.append(record_id)
                live -= self._entries[record_id].size
        if victims:
            for record_id in victims:
                entry = self._entries[record_id]
                key = entry.priority.name
                self.stats.evicted_by_priority[key] = self.stats.evicted_by_priority.get(key, 0) + 1
                self._forget(record_id)
            self.stats.evicted += len(victims)
            self._write(_encode_ids(_Kind.DROP, victims, DropReason.EVICTED))
            self._sync()
        if self._disk_bytes() + size > bound:
            self._compact(bound - size)
        if self._disk_bytes() + size > bound and not (priority >= Priority.ALERT):
            self.stats.refused_full += 1
            if self._fs_bound is not None and self._fs_bound < self.config.max_bytes:
                raise QueueDiskFullError(
                    f"the file system holding {self.directory} is full ({self._disk_bytes()} bytes "
                    f"queued) and nothing below {priority.name} is left to shed; free space or "
                    "lower [uplink.queue] max_bytes")
            raise QueueFullError(
                f"queue at {self.directory} is full ({self._disk_bytes()} of {bound} bytes) and holds "
                f"nothing evictable below {priority.name}; raise [uplink.queue] max_bytes"
            )
        # ALERT and EMERGENCY go in even above the bound: they are never refused by policy, only
        # by a file system that is really full (QueueDiskFullError).

    def _disk_bytes(self) -> int:
        return sum(self._segments.values())

    def _compact(self, goal_bytes: int) -> None:
        """Move live records out of mostly dead segments to a new head segment, then delete them."""
        for number in sorted(self._segments):
            if self._disk_bytes() <= goal_bytes:
                return
            if number not in self._segments:
                continue
            movers = sorted(i for i, e in self._entries.items() if e.segment == number)
            moved_bytes = sum(self._entries[i].size for i in movers)
            if moved_bytes >= self._segments[number]:
                # All live data, no markers: nothing to gain. Deleting a later segment first is
                # still safe, because no marker anywhere concerns a record in this one.
                continue
            if number == self._active:
                self._rotate()
            for record_id in movers:
                entry = self._entries[record_id]
                raw = self._read_record(entry)
                offset, segment = self._write(raw)  # same record id: replay keeps the later copy
                self._live_per_segment[number] -= 1
                self._live_per_segment[segment] = self._live_per_segment.get(segment, 0) + 1
                entry.segment, entry.offset = segment, offset
            self._sync()
            if number in self._segments:
                # Every older segment still present holds only live data, so no marker in this
                # one concerns a record that stays behind.
                self._segment_path(number).unlink(missing_ok=True)
                del self._segments[number]
                self._live_per_segment.pop(number, None)
                self._fsync_dir()
            self.stats.compactions += 1

    def _rotate(self) -> None:
        os.fdatasync(self._fd)
        self.stats.syncs += 1
        self._unsynced_bytes = 0
        self._open_active(self._active + 1)
        self._fsync_dir()

    # ------------------------------------------------------------------ disk-full reserve

    def _reserve_path(self) -> Path:
        return self.directory / "reserve.bin"

    def _ensure_reserve(self) -> None:
        """Hold `reserve_bytes` of allocated space so markers and compaction fit when the disk fills."""
        if self.config.reserve_bytes <= 0 or self._reserve_path().exists():
            return
        try:
            fd = os.open(self._reserve_path(), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.config.reserve_bytes)
            finally:
                os.close(fd)
        except OSError:
            self._reserve_path().unlink(missing_ok=True)  # no room yet: try again after a delete

    def _release_reserve(self) -> bool:
        path = self._reserve_path()
        if path.exists():
            path.unlink()
            return True
        return False

    # ------------------------------------------------------------------ reading and recovery

    def _read_record(self, entry: _Entry) -> bytes:
        with open(self._segment_path(entry.segment), "rb") as handle:
            handle.seek(entry.offset)
            raw = handle.read(entry.size)
        if len(raw) != entry.size:
            raise QueueError(f"segment {entry.segment} is shorter than its index says")
        return raw

    def _read_payload(self, entry: _Entry) -> bytes:
        raw = self._read_record(entry)
        start = _HEAD.size + (0 if entry.key is None else _KEY.size)
        return raw[start:-_CRC.size]

    def _recover(self) -> None:
        numbers = sorted(
            int(p.name[len(_SEGMENT_PREFIX):-len(_SEGMENT_SUFFIX)])
            for p in self.directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}")
            if p.name[len(_SEGMENT_PREFIX):-len(_SEGMENT_SUFFIX)].isdigit()
        )
        gone: set[int] = set()
        max_id = 0
        for number in numbers:
            path = self._segment_path(number)
            data = path.read_bytes()
            good_end = 0
            position = 0
            previous_id = 0  # id of the last data record read in this segment
            damaged: int | None = None  # data records counted in a damaged region just skipped
            while position < len(data):
                parsed = _parse_at(data, position)
                if parsed is None:
                    # Corrupt or torn: skip to the next offset where a valid record starts.
                    resync = _resync(data, position + 1)
                    lost = (resync if resync is not None else len(data)) - position
                    damaged = _records_in(data, position, position + lost)
                    self.stats.torn_tails += 1
                    self.stats.torn_records += damaged
                    self.stats.recovered_loss_bytes += lost
                    if resync is None:
                        break
                    position = resync
                    continue
                kind, priority, channel, record_id, created, payload, end = parsed
                if kind in _DATA_KINDS:
                    if damaged is not None and previous_id and record_id > previous_id + 1:
                        # Ids are consecutive within a segment (compacted copies aside): the gap
                        # across a damaged region also counts records whose headers were lost.
                        self.stats.torn_records += max(record_id - previous_id - 1 - damaged, 0)
                    damaged = None
                    previous_id = record_id
                    if record_id not in gone:
                        key = None
                        if kind == _Kind.DATA_KEYED and len(payload) >= _KEY.size:
                            key = _KEY.unpack_from(payload)
                        self._entries[record_id] = _Entry(number, position, end - position,
                                                          Priority(priority), Channel(channel), created, key)
                    max_id = max(max_id, record_id)
                else:
                    ids = _decode_ids(payload[1:] if kind == _Kind.DROP else payload)
                    gone.update(ids)
                    for record_id in ids:
                        self._entries.pop(record_id, None)
                position = end
                good_end = end
            if good_end < len(data):
                # Keep only what parsed: a torn tail is cut off (and was counted above).
                with open(path, "r+b") as handle:
                    handle.truncate(good_end)
                    os.fsync(handle.fileno())
                data = data[:good_end]
            self._segments[number] = len(data)
        for record_id in sorted(self._entries):
            entry = self._entries[record_id]
            if entry.key is not None:
                self._by_key[entry.key] = record_id
            self._pending[entry.priority, entry.channel][record_id] = None
            self._live_bytes += entry.size
            self._live_per_segment[entry.segment] = self._live_per_segment.get(entry.segment, 0) + 1
        self._next_id = max_id + 1
        # Always start a fresh segment: never append behind bytes of an unknown past.
        self._open_active((numbers[-1] + 1) if numbers else 1)
        self._fsync_dir()
        self._collect()
        self._ensure_reserve()


def _encode(kind: _Kind, priority: int, channel: int, record_id: int, created_wall_ns: int,
            payload: bytes) -> bytes:
    head = _HEAD.pack(_MAGIC, kind, priority, channel, record_id, created_wall_ns, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def _encode_ids(kind: _Kind, ids: Sequence[int], reason: DropReason | None = None) -> bytes:
    body = struct.pack(f"<{len(ids)}Q", *ids)
    if reason is not None:
        body = bytes([reason]) + body
    return _encode(kind, 0, 0, 0, 0, body)


def _decode_ids(body: bytes) -> list[int]:
    return [value for (value,) in _ID.iter_unpack(body[: len(body) - len(body) % _ID.size])]


def _parse_at(data: bytes, position: int) -> tuple[int, int, int, int, int, bytes, int] | None:
    """The record at `position`, or None if it is torn, corrupt or not a record."""
    if position + _HEAD.size > len(data):
        return None
    magic, kind, priority, channel, record_id, created, length = _HEAD.unpack_from(data, position)
    if magic != _MAGIC or kind not in (1, 2, 3, 4) or length > MAX_PAYLOAD_BYTES:
        return None
    if priority > max(Priority) or channel > max(Channel):
        return None
    end = position + _HEAD.size + length + _CRC.size
    if end > len(data):
        return None
    payload = data[position + _HEAD.size: end - _CRC.size]
    (crc,) = _CRC.unpack_from(data, end - _CRC.size)
    if crc != zlib.crc32(payload, zlib.crc32(data[position: position + _HEAD.size])):
        return None
    return kind, priority, channel, record_id, created, payload, end


def _records_in(data: bytes, start: int, end: int) -> int:
    """How many data records a damaged region [start, end) held: each header that still reads
    (magic, a data kind, a sane length) is one, and a region whose first header is unreadable
    lost at least one record of unknown kind. A torn marker loses no record (its records
    become pending again: a duplicate later, never a loss)."""
    count = 0
    position = start
    first = True
    while position < end:
        if position + 4 <= len(data):
            magic, kind = struct.unpack_from("<HB", data, position)
        else:
            magic, kind = 0, 0
        length = _HEAD.unpack_from(data, position)[6] if position + _HEAD.size <= len(data) else None
        if magic == _MAGIC and kind in (1, 2, 3, 4) and (length is None or length <= MAX_PAYLOAD_BYTES):
            count += kind in _DATA_KINDS
            if length is None:
                break
            position += _HEAD.size + length + _CRC.size
        else:
            count += first  # the region starts with an unreadable header: one record, at least
            found = data.find(struct.pack("<H", _MAGIC), position + 1, end)
            if found == -1:
                break
            position = found
        first = False
    return count


def _resync(data: bytes, start: int) -> int | None:
    magic = struct.pack("<H", _MAGIC)
    position = data.find(magic, start)
    while position != -1:
        if _parse_at(data, position) is not None:
            return position
        position = data.find(magic, position + 1)
    return None
