"""The receiver against a real mosquitto and a real PostgreSQL: exactly once, nothing lost."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

import protocol
from cloud.ingest.receiver import Receiver
from cloud.store.db import Conn
from hil.services import MosquittoBroker
from protocol.messages import MessageKind
from protocol.topics import uplink_topic
from tests.cloud.conftest import register
from tests.cloud.helpers import Publisher, event, receiver_config, telemetry, topic_of


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def count(db: Conn, table: str) -> int:
    row = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


@pytest.fixture
def publisher(mosquitto: MosquittoBroker) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.port, client_id=f"pub-{time.monotonic_ns()}")
    yield pub
    pub.close()


@pytest.fixture
def start_receiver(migrated_db: str, mosquitto: MosquittoBroker) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []
    group = f"g{time.monotonic_ns()}"

    def start(client_id: str | None = None, **ingest: Any) -> Receiver:
        name = f"{client_id or 'receiver'}-{group}"
        receiver = Receiver(receiver_config(migrated_db, mosquitto.port, name, group=group, **ingest))
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.mark.parametrize("merge", ["copy_first", "staging"])
def test_duplicates_are_stored_once_and_counted(
    db: Conn, start_receiver: Callable[..., Receiver], publisher: Publisher, merge: str
) -> None:
    register(db, "gw-a")
    register(db, "gw-b")
    receiver = start_receiver(merge=merge)
    messages: list[protocol.TelemetryBatch | protocol.Event] = [
        telemetry(dev, seq, samples=50, fixes=3) for seq in range(20) for dev in ("gw-a", "gw-b")]
    messages += [event("gw-a", 100 + i) for i in range(5)]
    publisher.send(messages)
    publisher.send(messages[:10] + messages[-2:])  # the device resends (lost PUBACK)
    wait_for(lambda: receiver.totals.messages == len(messages) + 12, what="all messages committed")
    assert count(db, "signal_samples") == 40 * 50
    assert count(db, "positions") == 40 * 3
    assert count(db, "events") == 5
    assert count(db, "event_lifecycle") == 5
    assert receiver.totals.duplicates["signal_samples"] == 10 * 50
    assert receiver.totals.duplicates["positions"] == 10 * 3
    assert receiver.totals.duplicates["events"] == 2
    assert not receiver.totals.rejected
    # The latest position per device and the days to summarise were recorded with the batch.
    latest = db.execute("SELECT device_id, last_position_at IS NOT NULL, last_message_at IS NOT NULL "
                        "FROM device_latest ORDER BY 1").fetchall()
    assert latest == [("gw-a", True, True), ("gw-b", True, True)]
    dirty = {r[0] for r in db.execute("SELECT device_id FROM summary_dirty")}
    assert dirty == {"gw-a", "gw-b"}
    # Values survive the binary COPY exactly (microsecond timestamps, floats, ids).
    first = messages[0]
    assert isinstance(first, protocol.TelemetryBatch)
    row = db.execute("SELECT extract(epoch FROM time)::numeric * 1000000, signal_id, value "
                     "FROM signal_samples WHERE device_id = 'gw-a' AND boot_id = 1 AND seq = 0 "
                     "AND row_idx = 7").fetchone()
    assert row is not None
    assert int(row[0]) == first.samples.time_ns[7] // 1000
    assert (row[1], row[2]) == (first.samples.signal_id[7], first.samples.value[7])


def test_messages_committed_but_not_acknowledged_are_redelivered_and_stored_once(
    db: Conn, start_receiver: Callable[..., Receiver], publisher: Publisher
) -> None:
    register(db, "gw-r")
    first = start_receiver("receiver-redelivery")
    for lane in first.lanes:  # a receiver that dies after its commits, before any PUBACK
        lane.client.ack = lambda mid, qos: 0  # type: ignore[method-assign,assignment,return-value]
    messages = [telemetry("gw-r", seq, samples=30, fixes=2) for seq in range(10)]
    publisher.send(messages)
    wait_for(lambda: first.totals.messages == 10, what="first receiver to store everything")
    first.stop()  # the broker never got a PUBACK: it keeps the messages for this session
    assert count(db, "signal_samples") == 300
    second = start_receiver("receiver-redelivery")
    wait_for(lambda: second.totals.messages == 10, what="redelivery to the restarted session")
    assert second.totals.duplicates["signal_samples"] == 300
    assert sum(second.totals.inserted.values()) == 0
    assert count(db, "signal_samples") == 300 and count(db, "positions") == 20


def test_bad_messages_are_kept_aside_with_reasons_and_ingestion_goes_on(
    db: Conn, start_receiver: Callable[..., Receiver], publisher: Publisher
) -> None:
    register(db, "gw-1")
    register(db, "gw-2")
    receiver = start_receiver(max_payload_bytes=8000, rejected_payload_max_bytes=1000)
    good = telemetry("gw-1", 1, samples=20, fixes=1)
    encoded_event = protocol.encode(event("gw-1", 2))
    huge = protocol.encode(telemetry("gw-1", 3, samples=3000, fixes=0))
    assert len(huge) > 8000
    bad = [
        (uplink_topic(MessageKind.TELEMETRY, "gw-1"), b"\xff\x00 not cbor at all"),
        (uplink_topic(MessageKind.TELEMETRY, "gw-1"), huge),
        (uplink_topic(MessageKind.EVENT, "gw-2"), encoded_event),  # gw-1's event on gw-2's topic
        (uplink_topic(MessageKind.TELEMETRY, "gw-1"), encoded_event),  # an event on the telemetry topic
        (uplink_topic(MessageKind.TELEMETRY, "ghost"), protocol.encode(telemetry("ghost", 1))),
        (uplink_topic(MessageKind.EVENT, "gw-1"), protocol.encode(good)),  # telemetry on the event topic
        (uplink_topic(MessageKind.TELEMETRY, "gw-1"), b""),
    ]
    publisher.publish(bad)
    publisher.send([good])
    wait_for(lambda: receiver.totals.messages == len(bad) + 1, what="every message handled")
    rows = db.execute("SELECT topic, payload_size, reason_code, reason, payload, truncated, "
                      "claimed_device_id FROM rejected_messages").fetchall()
    by_message = {(topic, size): (code, reason, payload, truncated, claimed)
                  for topic, size, code, reason, payload, truncated, claimed in rows}
    assert len(rows) == len(bad) == len(by_message)
    codes = [by_message[(topic, len(payload))][0] for topic, payload in bad]
    assert codes[0] in {"malformed_message", "unsupported_version", "unknown_message_kind"}
    assert codes[1:] == ["oversized", "topic_mismatch", "topic_mismatch", "unknown_device", "topic_mismatch",
                         "malformed_message"]
    garbage = by_message[(bad[0][0], len(bad[0][1]))]
    assert garbage[2] == b"\xff\x00 not cbor at all" and garbage[3] is False
    oversized = by_message[(bad[1][0], len(huge))]
    assert len(oversized[2]) == 1000 and oversized[3] is True  # the kept raw bytes are bounded
    ghost = by_message[(bad[4][0], len(bad[4][1]))]
    assert "ghost" in ghost[1] and ghost[4] == "ghost"
    assert all(reason for _, _, _, reason, *_ in rows)
    assert count(db, "signal_samples") == 20 and count(db, "events") == 0
    assert receiver.failure is None


def test_two_receivers_on_a_shared_subscription_store_every_message_once(
    db: Conn, start_receiver: Callable[..., Receiver], publisher: Publisher
) -> None:
    for n in range(4):
        register(db, f"gw-{n}")
    one, two = start_receiver("receiver-one"), start_receiver("receiver-two")
    messages = [telemetry(f"gw-{n}", seq, samples=40, fixes=2) for seq in range(60) for n in range(4)]
    publisher.send(messages)
    wait_for(lambda: one.totals.messages + two.totals.messages == 240, what="both receivers done")
    assert one.totals.messages > 20 and two.totals.messages > 20  # the broker split the load
    assert one.totals.duplicates.total() + two.totals.duplicates.total() == 0
    assert count(db, "signal_samples") == 240 * 40
    distinct = db.execute("SELECT count(DISTINCT (device_id, boot_id, seq)) FROM signal_samples").fetchone()
    assert distinct == (240,)


def test_metrics_are_served_on_loopback(
    migrated_db: str, db: Conn, mosquitto: MosquittoBroker, publisher: Publisher
) -> None:
    from cloud.config import MetricsConfig
    from hil.services import free_port

    register(db, "gw-m")
    config = replace(receiver_config(migrated_db, mosquitto.port, "receiver-metrics", group="metrics"),
                     metrics=MetricsConfig(port=free_port()))
    receiver = Receiver(config)
    receiver.start()
    try:
        publisher.send([telemetry("gw-m", 1, samples=10, fixes=1)])
        publisher.publish([(topic_of(telemetry("gw-m", 2)), b"junk")])
        wait_for(lambda: receiver.totals.messages == 2, what="two messages")
        url = f"http://127.0.0.1:{receiver.metrics.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        receiver.stop()
    assert 'lienwatch_ingest_rows_total{table="signal_samples"} 10.0' in text
    assert 'lienwatch_ingest_rejected_messages_total{reason="malformed_message"} 1.0' in text
    for name in ("lienwatch_ingest_batch_seconds_bucket", "lienwatch_ingest_backlog_messages",
                 "lienwatch_ingest_message_age_seconds_count", "lienwatch_ingest_duplicate_rows_total",
                 "lienwatch_ingest_messages_total"):
        assert name in text


def test_a_message_the_database_refuses_is_kept_aside_and_the_rest_of_its_batch_stored(
    db: Conn, start_receiver: Callable[..., Receiver], publisher: Publisher
) -> None:
    register(db, "gw-n")
    # An operator's constraint stands in for anything the database may refuse.
    db.execute("ALTER TABLE events ADD CONSTRAINT no_refused CHECK (detector <> 'refused')")
    receiver = start_receiver(urgent_batch_max_delay_ms=500)  # one batch for all four events
    refused = event("gw-n", 2, detector="refused")
    publisher.send([event("gw-n", 1), refused, event("gw-n", 3), event("gw-n", 4)])
    wait_for(lambda: receiver.totals.messages == 4, what="four events handled")
    assert count(db, "events") == 3
    row = db.execute("SELECT reason_code, reason FROM rejected_messages").fetchone()
    assert row is not None and row[0] == "store_error" and "no_refused" in row[1]
    assert [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")] == [1, 3, 4]
    assert receiver.failure is None


def test_qos0_statuses_beyond_the_queue_bound_are_counted_not_queued(
    db: Conn, migrated_db: str, mosquitto: MosquittoBroker, publisher: Publisher
) -> None:
    import psycopg

    from protocol.messages import ClockQuality, Header, PowerState, Status

    register(db, "gw-s")
    base = receiver_config(migrated_db, mosquitto.port, "receiver-qos0", group="qos0",
                           urgent_batch_max_delay_ms=1)
    receiver = Receiver(replace(base, mqtt=replace(base.mqtt, receive_maximum=2)))  # queue bound: 8
    receiver.start()
    try:
        statuses = [Status(Header("gw-s", 1, seq, time.time_ns(), ClockQuality.NTP), PowerState.IDLE, 12.5,
                           4.0, "1.0", 1, 0) for seq in range(40)]
        topic = uplink_topic(MessageKind.STATUS, "gw-s")
        with psycopg.connect(migrated_db) as locker:
            locker.execute("LOCK TABLE device_status IN SHARE MODE")  # the urgent writer waits
            publisher.publish([(topic, protocol.encode(s)) for s in statuses], qos=0)
            wait_for(lambda: receiver.metrics.received._value.get() == 40, what="all 40 received")
        dropped = int(receiver.metrics.dropped_qos0._value.get())
        assert dropped > 0
        wait_for(lambda: receiver.totals.messages == 40 - dropped, what="the queued statuses stored")
        assert count(db, "device_status") == 40 - dropped
    finally:
        receiver.stop()


@pytest.mark.plain_only
def test_receiver_keeps_partitions_ahead_and_drops_expired_ones_at_start(
    db: Conn, start_receiver: Callable[..., Receiver]
) -> None:
    from datetime import UTC, datetime, timedelta

    from cloud.store.layout import BY_NAME
    from cloud.store.partitions import PartitionKeeper, list_partitions

    today = datetime.now(UTC).date()
    old = today - timedelta(days=45)  # rejected messages are kept 30 days
    PartitionKeeper().ensure(db, "rejected_messages", old, old)
    start_receiver()
    wait_for(lambda: not [p for p in list_partitions(db, BY_NAME["rejected_messages"]) if p.start == old],
             what="the expired partition to go")
    ahead = {p.start for p in list_partitions(db, BY_NAME["signal_samples"])}
    assert {today + timedelta(days=n) for n in range(8)} <= ahead
