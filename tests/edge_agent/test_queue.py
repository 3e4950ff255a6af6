"""The outbox on flash: durability, torn tails, the size bound and transactional take/commit."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.uplink.queue import (
    RECORD_OVERHEAD,
    Channel,
    FlashQueue,
    Priority,
    QueueConfig,
    QueueError,
    QueueFullError,
)
from lienwatch.clock import ManualClock

TEL, EVT = Channel.TELEMETRY, Channel.EVENT


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def test_records_leave_only_when_committed(tmp_path: Path) -> None:
    with FlashQueue(tmp_path, clock=ManualClock()) as queue:
        ids = [queue.append(f"m{i}".encode(), priority=Priority.TELEMETRY, channel=TEL) for i in range(5)]
        taken = queue.begin(3)
        assert [r.payload for r in taken] == [b"m0", b"m1", b"m2"]
        assert queue.depth == 5 and queue.in_flight == 3
        queue.end(accepted=[ids[0]], released=[ids[1]], rejected=[ids[2]])
        assert queue.depth == 3 and queue.in_flight == 0
        assert [r.payload for r in queue.begin(10)] == [b"m1", b"m3", b"m4"]
        assert queue.stats.rejected == 1 and queue.stats.committed == 1


def test_events_are_taken_before_older_telemetry(tmp_path: Path) -> None:
    with FlashQueue(tmp_path, clock=ManualClock()) as queue:
        queue.append(b"t1", priority=Priority.TELEMETRY, channel=TEL)
        queue.append(b"w", priority=Priority.WARNING, channel=EVT)
        queue.append(b"e", priority=Priority.EMERGENCY, channel=EVT)
        queue.append(b"t2", priority=Priority.TELEMETRY, channel=TEL)
        assert [r.payload for r in queue.begin(10)] == [b"e", b"w", b"t1", b"t2"]


def test_state_survives_reopen_including_in_flight(tmp_path: Path) -> None:
    clock = ManualClock()
    queue = FlashQueue(tmp_path, clock=clock)
    ids = [queue.append(bytes([i]) * 50, priority=Priority.TELEMETRY, channel=TEL) for i in range(10)]
    queue.begin(6)
    queue.end(accepted=ids[:4])
    queue.close()
    reopened = FlashQueue(tmp_path, clock=clock)
    # 4 delivered; 2 were in flight (not acknowledged): they come back, nothing is lost.
    assert reopened.depth == 6
    assert [r.record_id for r in reopened.begin(10)] == ids[4:]
    assert reopened.append(b"x", priority=Priority.TELEMETRY, channel=TEL) == ids[-1] + 1
    reopened.close()


def test_commits_not_yet_written_come_back_as_duplicates_not_losses(tmp_path: Path) -> None:
    """A crash before the batched commit marker is written re-delivers, never drops."""
    config = QueueConfig(sync_interval_s=3600, sync_bytes=1 << 30)
    queue = FlashQueue(tmp_path, config, clock=ManualClock())
    ids = [queue.append(b"x" * 10, priority=Priority.TELEMETRY, channel=TEL) for _ in range(3)]
    queue.begin(3)
    queue.end(accepted=ids)
    # Simulate kill -9: no close(), the commit marker is still only in memory.
    os.close(queue._fd)
    again = FlashQueue(tmp_path, config, clock=ManualClock())
    assert again.depth == 3
    again.close()


def test_delivered_segments_are_deleted(tmp_path: Path) -> None:
    config = QueueConfig(max_bytes=100_000, segment_bytes=2_000)
    with FlashQueue(tmp_path, config, clock=ManualClock()) as queue:
        for _ in range(100):
            queue.append(b"y" * 100, priority=Priority.TELEMETRY, channel=TEL)
        assert len(_segments(tmp_path)) > 5
        while batch := queue.begin(16):
            queue.end(accepted=[r.record_id for r in batch])
        queue.flush()
        assert queue.depth == 0
        assert len(_segments(tmp_path)) == 1  # only the active one


@pytest.mark.parametrize("cut", [1, 5, 17, RECORD_OVERHEAD - 1, RECORD_OVERHEAD + 3])
def test_torn_tail_is_truncated_and_counted(tmp_path: Path, cut: int) -> None:
    queue = FlashQueue(tmp_path, clock=ManualClock())
    for i in range(5):
        queue.append(bytes([i]) * 40, priority=Priority.TELEMETRY, channel=TEL)
    queue.close()
    (segment,) = _segments(tmp_path)
    size = segment.stat().st_size
    with open(segment, "r+b") as handle:  # power lost while the 5th record was being written
        handle.truncate(size - cut)
    reopened = FlashQueue(tmp_path, clock=ManualClock())
    assert reopened.depth == 4
    assert reopened.stats.torn_tails == 1
    assert reopened.stats.recovered_loss_bytes == 40 + RECORD_OVERHEAD - cut
    assert segment.stat().st_size == 4 * (40 + RECORD_OVERHEAD)
    reopened.append(b"after", priority=Priority.TELEMETRY, channel=TEL)
    reopened.close()
    assert FlashQueue(tmp_path, clock=ManualClock()).depth == 5


def test_corrupt_record_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    queue = FlashQueue(tmp_path, clock=ManualClock())
    for i in range(5):
        queue.append(bytes([65 + i]) * 40, priority=Priority.TELEMETRY, channel=TEL)
    queue.close()
    (segment,) = _segments(tmp_path)
    raw = bytearray(segment.read_bytes())
    raw[2 * (40 + RECORD_OVERHEAD) + 20] ^= 0xFF  # bit rot inside the third record
    segment.write_bytes(bytes(raw))
    reopened = FlashQueue(tmp_path, clock=ManualClock())
    assert [r.payload[0] for r in reopened.begin(10)] == [65, 66, 68, 69]
    assert reopened.stats.torn_tails == 1
    reopened.close()


def test_garbage_file_never_crashes_open(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(20):
        directory = tmp_path / str(trial)
        directory.mkdir()
        (directory / "seg-0000000001.log").write_bytes(rng.randbytes(rng.randrange(0, 3000)))
        with FlashQueue(directory, clock=ManualClock()) as queue:
            assert queue.depth == 0
            queue.append(b"ok", priority=Priority.ALERT, channel=EVT)


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with FlashQueue(tmp_path, clock=ManualClock()) as queue:
        with pytest.raises(QueueError):
            queue.append("text", priority=Priority.TELEMETRY, channel=TEL)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            queue.append(b"x", priority=9, channel=TEL)  # type: ignore[arg-type]
        with pytest.raises(QueueError):
            queue.append(b"x" * (2 << 20), priority=Priority.TELEMETRY, channel=TEL)
    with pytest.raises(QueueError):
        FlashQueue(tmp_path / "q2", QueueConfig(max_bytes=1000, segment_bytes=2000))


def test_bound_evicts_old_telemetry_first_and_never_alerts(tmp_path: Path) -> None:
    config = QueueConfig(max_bytes=20_000, segment_bytes=2_000)
    record = 200 + RECORD_OVERHEAD
    with FlashQueue(tmp_path, config, clock=ManualClock()) as queue:
        alerts = [queue.append(b"A" * 200, priority=Priority.ALERT, channel=EVT) for _ in range(10)]
        warnings = [queue.append(b"W" * 200, priority=Priority.WARNING, channel=EVT) for _ in range(10)]
        telemetry = [queue.append(b"T" * 200, priority=Priority.TELEMETRY, channel=TEL) for _ in range(200)]
        assert queue.disk_bytes <= config.max_bytes
        left = {r.record_id for r in queue.begin(1000)}
        assert set(alerts) <= left and set(warnings) <= left
        kept_telemetry = [i for i in telemetry if i in left]
        assert kept_telemetry == telemetry[-len(kept_telemetry):]  # the newest survived
        assert queue.stats.evicted == 200 - len(kept_telemetry)
        assert queue.stats.evicted_by_priority == {"TELEMETRY": queue.stats.evicted}
        assert len(left) * record <= config.max_bytes


def test_full_of_alerts_refuses_telemetry_but_takes_emergencies(tmp_path: Path) -> None:
    config = QueueConfig(max_bytes=10_000, segment_bytes=2_000)
    with FlashQueue(tmp_path, config, clock=ManualClock()) as queue:
        for _ in range(60):
            queue.append(b"A" * 200, priority=Priority.ALERT, channel=EVT)
        with pytest.raises(QueueFullError, match="max_bytes"):
            queue.append(b"T" * 200, priority=Priority.TELEMETRY, channel=TEL)
        queue.append(b"E" * 200, priority=Priority.EMERGENCY, channel=EVT)
        assert queue.depth == 61 and queue.stats.refused_full == 1
        assert queue.stats.evicted == 0


def test_compaction_frees_segments_pinned_by_one_alert(tmp_path: Path) -> None:
    config = QueueConfig(max_bytes=12_000, segment_bytes=2_000)
    with FlashQueue(tmp_path, config, clock=ManualClock()) as queue:
        alert = queue.append(b"A" * 100, priority=Priority.ALERT, channel=EVT)
        for _ in range(400):
            queue.append(b"T" * 100, priority=Priority.TELEMETRY, channel=TEL)
            for r in queue.begin(5, channels=[TEL]):
                queue.end(accepted=[r.record_id])
        assert queue.disk_bytes <= config.max_bytes
        assert queue.stats.compactions >= 1
        assert [r.record_id for r in queue.begin(10)] == [alert]
    reopened = FlashQueue(tmp_path, config, clock=ManualClock())
    assert reopened.depth == 1
    reopened.close()


def test_batched_syncs_and_bytes_per_day(tmp_path: Path) -> None:
    clock = ManualClock()
    config = QueueConfig(sync_interval_s=30, sync_bytes=1 << 20)
    with FlashQueue(tmp_path, config, clock=clock) as queue:
        syncs = queue.stats.syncs
        for _ in range(50):
            queue.append(b"t" * 100, priority=Priority.TELEMETRY, channel=TEL)
        assert queue.stats.syncs == syncs  # telemetry waits for the batch
        clock.advance(31)
        queue.tick()
        assert queue.stats.syncs == syncs + 1
        queue.append(b"alert", priority=Priority.ALERT, channel=EVT)
        assert queue.stats.syncs == syncs + 2  # events are synced at once
        assert queue.stats.bytes_written_today == 50 * (100 + RECORD_OVERHEAD) + 5 + RECORD_OVERHEAD
        clock.advance(86_400)
        assert queue.snapshot()["bytes_written_today"] == 0


_CHILD = textwrap.dedent("""
    import resource, signal, subprocess, sys
    from pathlib import Path
    from edge.uplink.queue import Channel, FlashQueue, Priority, QueueConfig, QueueDiskFullError
    from edge.uplink.queue import QueueFullError
    from lienwatch.clock import ManualClock
    mount_point, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], check=True)
    else:  # a per-file size limit: the kernel refuses the write with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
    segment_bytes = 8192 if mode == "tmpfs" else 1 << 20  # rlimit: the segment hits the limit
    queue = FlashQueue(mount_point, QueueConfig(max_bytes=1 << 20, segment_bytes=segment_bytes,
                                                reserve_bytes=8192), clock=ManualClock())
    emergencies = refused = 0
    message = ""
    for i in range(2000):
        priority = Priority.EMERGENCY if i % 20 == 0 else Priority.TELEMETRY
        try:
            queue.append(b"z" * 200, priority=priority, channel=Channel.EVENT)
            emergencies += priority == Priority.EMERGENCY
        except (QueueDiskFullError, QueueFullError) as error:
            refused += 1
            message = str(error)
    counts = queue.depth_by_priority()
    queue.close()
    again = FlashQueue(mount_point, clock=ManualClock())
    print(emergencies, counts["EMERGENCY"], again.depth_by_priority()["EMERGENCY"],
          counts["TELEMETRY"], queue.stats.evicted, refused)
    print(message)
""")


def test_disk_full_sheds_telemetry_and_keeps_emergencies(tmp_path: Path) -> None:
    """A real ENOSPC: the queue lives on a 64 KiB tmpfs (mounted in a private mount namespace — a
    user namespace too when not root) while its own bound is 1 MiB, so only the file system says
    "full". Where no namespace may be created, a per-file size limit (EFBIG) is the fallback."""
    mount_point = tmp_path / "flash"
    mount_point.mkdir()
    namespace = ["unshare", "--mount"] if os.geteuid() == 0 else [
        "unshare", "--user", "--map-root-user", "--mount"]
    cwd = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run([*namespace, sys.executable, "-c", _CHILD, str(mount_point), "tmpfs"],
                                capture_output=True, text=True, timeout=60, cwd=cwd)
    except FileNotFoundError:  # no util-linux `unshare`
        result = subprocess.CompletedProcess(namespace, 1, "", "unshare: not installed")
    if result.returncode != 0 and "unshare" in result.stderr:
        # No mount namespace allowed here (restricted user namespaces). A per-file size limit
        # (RLIMIT_FSIZE → EFBIG on the one growing segment) exercises the same refusal path.
        result = subprocess.run([sys.executable, "-c", _CHILD, str(mount_point), "rlimit"],
                                capture_output=True, text=True, timeout=60, cwd=cwd)
        assert result.returncode == 0, result.stderr
        first, message = result.stdout.splitlines()
        accepted, kept, kept_after_reopen, _, evicted, refused = map(int, first.split())
        assert accepted == kept == kept_after_reopen > 0 and evicted > 0
        assert refused > 0 and "QueueFullError" not in message and "file system" in message
        return
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.splitlines()
    accepted, kept, kept_after_reopen, telemetry_kept, evicted, refused = map(int, first.split())
    assert accepted == kept == kept_after_reopen == 100  # every emergency accepted and kept
    assert evicted > 1000  # old telemetry was shed to make room ...
    assert telemetry_kept > 20  # ... while the newest telemetry still fits
    assert refused == 0 or "file system" in message


def test_channel_filter_keeps_age_order_across_channels(tmp_path: Path) -> None:
    with FlashQueue(tmp_path, clock=ManualClock()) as queue:
        for i in range(5):
            queue.append(f"t{i}".encode(), priority=Priority.WARNING, channel=TEL)
            queue.append(f"e{i}".encode(), priority=Priority.WARNING, channel=EVT)
        assert [r.payload for r in queue.begin(4)] == [b"t0", b"e0", b"t1", b"e1"]
        assert [r.payload for r in queue.begin(10, channels=[EVT])] == [b"e2", b"e3", b"e4"]
        assert [r.payload for r in queue.begin(10)] == [b"t2", b"t3", b"t4"]


@pytest.mark.parametrize("seed", range(4))
def test_random_operations_match_a_model_and_survive_reopen(tmp_path: Path, seed: int) -> None:
    """Whatever the order of appends, takes, commits, refusals, releases and restarts, the queue
    holds exactly the records a plain model holds, and loses none across a reopen."""
    rng = random.Random(seed)
    config = QueueConfig(max_bytes=1 << 22, segment_bytes=1500, sync_interval_s=5,
                         urgent_sync_from=Priority.EMERGENCY)  # fewer fsyncs: not what is tested
    clock = ManualClock()
    queue = FlashQueue(tmp_path, config, clock=clock)
    model: dict[int, bytes] = {}
    in_flight: set[int] = set()
    for _ in range(600):
        op = rng.random()
        if op < 0.45:
            payload = rng.randbytes(rng.randrange(0, 300))
            priority = rng.choice(list(Priority))
            model[queue.append(payload, priority=priority, channel=rng.choice(list(Channel)))] = payload
        elif op < 0.65:
            taken = queue.begin(rng.randrange(1, 8))
            assert all(model[r.record_id] == r.payload for r in taken)
            in_flight.update(r.record_id for r in taken)
        elif op < 0.9 and in_flight:
            ids = rng.sample(sorted(in_flight), rng.randrange(1, len(in_flight) + 1))
            split = rng.randrange(0, len(ids) + 1)
            accepted, rejected, released = ids[split:], ids[:split], []
            if rng.random() < 0.3:
                released, rejected = rejected, []
            queue.end(accepted=accepted, rejected=rejected, released=released)
            for record_id in accepted + rejected:
                model.pop(record_id, None)
            in_flight.difference_update(ids)
        elif op < 0.95:
            clock.advance(rng.uniform(0, 10))
            queue.tick()
        else:
            queue.close()  # a restart: everything in flight is pending again
            queue = FlashQueue(tmp_path, config, clock=clock)
            in_flight.clear()
        assert queue.depth == len(model)
    queue.close()
    reopened = FlashQueue(tmp_path, config, clock=clock)
    assert {r.record_id: r.payload for r in reopened.begin(10_000)} == model
    assert reopened.stats.torn_tails == 0
    reopened.close()


# --- torn regions count records, end-to-end keys -------------------------------------------------


def test_a_damaged_region_counts_every_record_it_held(tmp_path: Path) -> None:
    queue = FlashQueue(tmp_path, clock=ManualClock())
    for i in range(8):
        queue.append(bytes([65 + i]) * 40, priority=Priority.TELEMETRY, channel=TEL)
    queue.close()
    (segment,) = _segments(tmp_path)
    raw = bytearray(segment.read_bytes())
    size = 40 + RECORD_OVERHEAD
    raw[2 * size: 5 * size + 7] = bytes(3 * size + 7)  # a zeroed flash page: records 3..6 lost
    segment.write_bytes(bytes(raw))
    reopened = FlashQueue(tmp_path, clock=ManualClock())
    assert [r.payload[0] for r in reopened.begin(10)] == [65, 66, 71, 72]
    assert reopened.stats.torn_tails == 1
    assert reopened.stats.torn_records == 4
    reopened.close()


def test_a_torn_tail_across_records_counts_each_readable_header(tmp_path: Path) -> None:
    queue = FlashQueue(tmp_path, clock=ManualClock())
    for i in range(6):
        queue.append(bytes([i]) * 40, priority=Priority.TELEMETRY, channel=TEL)
    queue.close()
    (segment,) = _segments(tmp_path)
    raw = bytearray(segment.read_bytes())
    size = 40 + RECORD_OVERHEAD
    raw[3 * size + 30] ^= 0xFF  # the 4th record is corrupt, the 5th intact, the 6th torn
    segment.write_bytes(bytes(raw[: 6 * size - 9]))
    reopened = FlashQueue(tmp_path, clock=ManualClock())
    assert reopened.depth == 4 and reopened.stats.torn_records == 2 and reopened.stats.torn_tails == 2
    reopened.close()


def test_keyed_records_wait_for_their_receipt_and_survive_reopen(tmp_path: Path) -> None:
    clock = ManualClock()
    queue = FlashQueue(tmp_path, clock=clock)
    ids = [queue.append(f"m{i}".encode(), priority=Priority.TELEMETRY, channel=TEL, key=(7, i))
           for i in range(4)]
    taken = queue.begin(4)
    assert [r.key for r in taken] == [(7, 0), (7, 1), (7, 2), (7, 3)]
    assert [r.payload for r in taken] == [b"m0", b"m1", b"m2", b"m3"]  # the key is not payload
    queue.end(delivered=ids)
    assert queue.depth == 4 and queue.delivered == 4 and queue.begin(4) == []
    assert queue.confirm([(7, 1), (7, 3), (9, 9)]) == 2
    assert queue.depth == 2 and queue.stats.confirmed == 2
    queue.close()
    reopened = FlashQueue(tmp_path, clock=clock)  # unconfirmed records are pending again
    again = reopened.begin(10)
    assert [(r.key, r.payload) for r in again] == [((7, 0), b"m0"), ((7, 2), b"m2")]
    assert reopened.confirm([(7, 0)]) == 1  # a receipt for a record in flight: done all the same
    reopened.end(delivered=[r.record_id for r in again])
    assert reopened.depth == 1 and reopened.delivered == 1
    reopened.close()


def test_overdue_delivered_records_are_sent_again(tmp_path: Path) -> None:
    clock = ManualClock()
    with FlashQueue(tmp_path, clock=clock) as queue:
        first = [queue.append(b"a", priority=Priority.TELEMETRY, channel=TEL, key=(1, i)) for i in range(2)]
        queue.begin(2)
        queue.end(delivered=first)
        clock.advance(10)
        late = queue.append(b"b", priority=Priority.WARNING, channel=EVT, key=(1, 2))
        queue.begin(1)
        queue.end(delivered=[late])
        assert queue.redeliver(clock.monotonic_ns() - 5 * 10**9) == 2
        assert [r.record_id for r in queue.begin(10)] == first and queue.stats.redelivered == 2
        assert queue.delivered == 1 and queue.depth == 3


def test_eviction_also_takes_delivered_telemetry_oldest_first(tmp_path: Path) -> None:
    config = QueueConfig(max_bytes=64 * 1024, segment_bytes=8 * 1024, reserve_bytes=0)
    with FlashQueue(tmp_path, config, clock=ManualClock()) as queue:
        ids = [queue.append(b"t" * 900, priority=Priority.TELEMETRY, channel=TEL, key=(1, i))
               for i in range(40)]
        queue.begin(10)
        queue.end(delivered=ids[:10])
        for i in range(40, 80):
            queue.append(b"t" * 900, priority=Priority.TELEMETRY, channel=TEL, key=(1, i))
        assert queue.stats.evicted > 0
        left = {r.key for r in queue.begin(1000)}
        assert (1, 0) not in left and (1, 79) in left  # the oldest went first, delivered or not


def test_only_records_skipped_by_a_later_receipt_are_resent_early(tmp_path: Path) -> None:
    clock = ManualClock()
    with FlashQueue(tmp_path, clock=clock) as queue:
        ids = []
        for seq in range(4):  # delivered 10 s apart
            ids.append(queue.append(b"t", priority=Priority.TELEMETRY, channel=TEL, key=(1, seq)))
            queue.begin(1)
            queue.end(delivered=[ids[-1]])
            clock.advance(10)
        late = clock.monotonic_ns()
        grace = 2 * 10**9
        # A receiver that is behind: nothing newer confirmed, nothing re-sent early.
        assert queue.redeliver(late, skipped_grace_ns=grace) == 0
        queue.confirm([(1, 2)])  # seq 2 stored: 0 and 1, delivered before it, were lost
        assert queue.redeliver(late, skipped_grace_ns=grace) == 2
        assert [r.key for r in queue.begin(10)] == [(1, 0), (1, 1)]
        assert queue.delivered == 1  # seq 3 (after the confirmed one) waits: it may be on its way
