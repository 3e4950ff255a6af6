"""Stored receipts from the receiver: sent after the commit, only to devices that ask, per device
topic; a broker that is down at start is waited for with backoff (issue 12, item 8)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import protocol
from cloud.ingest.receiver import Receiver
from cloud.store.db import Conn
from hil.services import MosquittoBroker, free_port, start_mosquitto
from protocol.messages import HEADER_WANTS_RECEIPTS, StoredReceipt, TelemetryBatch
from protocol.topics import receipt_topic
from tests.cloud.conftest import register
from tests.cloud.helpers import Publisher, event, receiver_config, telemetry
from tests.cloud.test_ingest import count, wait_for


class Downlink:
    """Subscribes to devices' receipt topics (what the device's agent would read)."""

    def __init__(self, port: int, devices: list[str]) -> None:
        self.received: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"down-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(receipt_topic(d), 1) for d in devices])
        assert subscribed.wait(10)

    def keys_until(self, wanted: set[tuple[str, int, int]],
                   timeout_s: float = 60) -> set[tuple[str, int, int]]:
        got: set[tuple[str, int, int]] = set()
        deadline = time.monotonic() + timeout_s
        while not wanted <= got and time.monotonic() < deadline:
            try:
                topic, payload = self.received.get(timeout=0.1)
            except queue.Empty:
                continue
            receipt = protocol.decode(payload)
            assert isinstance(receipt, StoredReceipt) and topic == receipt_topic(receipt.target_device_id)
            got.update((receipt.target_device_id, boot, seq) for boot, seq in receipt.stored_keys())
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def asking(message: TelemetryBatch) -> TelemetryBatch:
    return replace(message, header=replace(message.header, flags=HEADER_WANTS_RECEIPTS))


@pytest.fixture
def downlink(mosquitto: MosquittoBroker) -> Iterator[Downlink]:
    link = Downlink(mosquitto.port, ["gw-r1", "gw-r2", "gw-old"])
    yield link
    link.close()


def test_receipts_confirm_what_was_committed_and_only_to_devices_that_ask(
        db: Conn, migrated_db: str, mosquitto: MosquittoBroker, downlink: Downlink) -> None:
    for device in ("gw-r1", "gw-r2", "gw-old"):
        register(db, device)
    group = f"r{time.monotonic_ns()}"
    receiver = Receiver(receiver_config(migrated_db, mosquitto.port, f"rcpt-{group}", group=group,
                                        receipt_interval_ms=200))
    receiver.start()
    publisher = Publisher(mosquitto.port, client_id=f"pub-{group}")
    try:
        new = [asking(telemetry(d, seq, boot=5, samples=20, fixes=2)) for d in ("gw-r1", "gw-r2")
               for seq in range(10)]
        old = [telemetry("gw-old", seq, samples=20, fixes=2) for seq in range(5)]
        asking_event = replace(event("gw-r1", 50, boot=5), header=replace(
            event("gw-r1", 50, boot=5).header, flags=HEADER_WANTS_RECEIPTS))
        publisher.send([*new, *old, asking_event])
        publisher.send(new[:3])  # re-sent duplicates are confirmed again
        wanted = {(m.header.device_id, 5, m.header.seq) for m in new} | {("gw-r1", 5, 50)}
        got = downlink.keys_until(wanted)
        assert got == wanted, (wanted - got, got - wanted)  # nothing for gw-old, which never asked
        assert count(db, "signal_samples") == 25 * 20  # confirmed = committed
        assert receiver.metrics.receipts._value.get() >= 2
    finally:
        publisher.close()
        receiver.stop()


def test_a_receipt_is_sent_only_after_the_commit(db: Conn, migrated_db: str, mosquitto: MosquittoBroker,
                                                 downlink: Downlink) -> None:
    register(db, "gw-r1")
    group = f"c{time.monotonic_ns()}"
    receiver = Receiver(receiver_config(migrated_db, mosquitto.port, f"rcpt-{group}", group=group,
                                        receipt_interval_ms=100))
    receiver.start()
    publisher = Publisher(mosquitto.port, client_id=f"pub-{group}")
    db.execute("BEGIN")
    try:
        db.execute("LOCK TABLE device_latest IN ACCESS EXCLUSIVE MODE")  # every batch waits here
        publisher.send([asking(telemetry("gw-r1", 1, boot=9, samples=5, fixes=1))])
        assert downlink.keys_until({("gw-r1", 9, 1)}, timeout_s=1.5) == set()  # not committed: silent
        db.execute("ROLLBACK")
        assert downlink.keys_until({("gw-r1", 9, 1)}) == {("gw-r1", 9, 1)}
    finally:
        publisher.close()
        receiver.stop()


def test_the_receiver_waits_for_a_broker_that_is_down_and_says_so(
        db: Conn, migrated_db: str, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    config = receiver_config(migrated_db, port, f"late-{time.monotonic_ns()}", group="late")
    config = replace(config, mqtt=replace(config.mqtt, reconnect_max_s=1.0))
    receiver = Receiver(config)
    started = threading.Event()
    failed: list[BaseException] = []

    def start() -> None:
        try:
            receiver.start()
            started.set()
        except BaseException as error:  # surfaced below
            failed.append(error)

    caplog.set_level(logging.WARNING, "lienwatch.ingest")
    thread = threading.Thread(target=start)
    thread.start()
    wait_for(lambda: sum("retrying in" in r.getMessage() for r in caplog.records) >= 2, what="retries")
    assert not started.is_set() and not failed
    broker = start_mosquitto(path_map={}, port=port)
    try:
        assert started.wait(20), failed
        assert any("cannot reach the broker" in r.getMessage() for r in caplog.records)
    finally:
        receiver.stop()
        thread.join(10)
        broker.stop()


def test_a_receiver_stopped_while_waiting_for_the_broker_gives_up_cleanly(migrated_db: str) -> None:
    receiver = Receiver(receiver_config(migrated_db, free_port(), "never", group="never"))
    threading.Timer(1.0, receiver.stopping.set).start()
    began = time.monotonic()
    with pytest.raises(ConnectionError, match="stopped while waiting"):
        receiver.start()
    assert time.monotonic() - began < 10


def test_an_offline_will_is_resolved_when_the_device_sends_again(
        db: Conn, migrated_db: str, mosquitto: MosquittoBroker) -> None:
    from protocol.messages import Severity

    register(db, "gw-will")
    group = f"w{time.monotonic_ns()}"
    receiver = Receiver(receiver_config(migrated_db, mosquitto.port, f"will-{group}", group=group))
    receiver.start()
    publisher = Publisher(mosquitto.port, client_id=f"pub-{group}")
    try:
        before = time.time_ns() - 5 * 10**9  # built before the will reached the cloud
        will = replace(event("gw-will", 1, time_ns=before - 10**9), severity=Severity.WARNING,
                       detector="uplink.offline")
        publisher.send([will])
        state = "SELECT state, updated_by FROM event_lifecycle WHERE device_id = 'gw-will'"
        wait_for(lambda: db.execute(state).fetchone() is not None, what="the will stored")
        publisher.send([telemetry("gw-will", 2, samples=3, fixes=1, start_ns=before)])  # queued earlier
        wait_for(lambda: count(db, "signal_samples") == 3, what="old telemetry stored")
        assert db.execute(state).fetchone() == ("open", None)
        publisher.send([telemetry("gw-will", 3, samples=3, fixes=1, start_ns=time.time_ns())])
        wait_for(lambda: db.execute(state).fetchone() == ("resolved", "ingest"), what="will resolved")
    finally:
        publisher.close()
        receiver.stop()
