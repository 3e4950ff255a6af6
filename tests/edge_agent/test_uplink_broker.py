"""The uplink against a real mosquitto started from deploy/mosquitto/lienwatch.conf (mutual TLS)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.uplink.mqtt import Connected, ConnectRefused, MqttLink, backoff_s
from edge.uplink.queue import Channel, FlashQueue, Priority, QueueConfig
from edge.uplink.sender import DataBudget, Uplink
from hil.services import REPO_ROOT, MosquittoBroker
from lienwatch.clock import ManualClock
from tests.edge_agent.conftest import (
    DEVICE_A,
    DEVICE_B,
    Pki,
    Receiver,
    device_settings,
    wait_until,
)

pytestmark = pytest.mark.services


def topics(device: str) -> dict[Channel, str]:
    return {c: f"lienwatch/v1/{device}/up/{c.name.lower()}" for c in Channel}


def _first_connect_outcome(link: MqttLink, timeout_s: float = 10) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return link.events.get(timeout=0.1)
        except Exception:
            continue
    return None


def test_backoff_grows_with_jitter_and_stays_bounded() -> None:
    rng = random.Random(1)
    delays = [[backoff_s(a, 1.0, 300.0, rng) for _ in range(200)] for a in (1, 3, 6, 20)]
    assert all(d == 1.0 for d in delays[0])
    assert all(1.0 <= d <= 4.0 for d in delays[1]) and len(set(delays[1])) > 150
    assert max(delays[2]) > 20 and all(d <= 32 for d in delays[2])
    assert all(d <= 300 for d in delays[3]) and max(delays[3]) > 250


def test_broker_down_then_back_delivers_every_queued_message(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    outbox = FlashQueue(tmp_path / "q", QueueConfig(sync_interval_s=0.2))
    link = MqttLink(device_settings(pki, tls_broker))
    uplink = Uplink(outbox, link, topics(DEVICE_A), DataBudget(10**9))
    link.start()
    try:
        assert wait_until(lambda: (uplink.pump(), link.connected)[1], 10), link.last_error
        sent: list[bytes] = []

        def put(n: int, tag: str) -> None:
            for i in range(n):
                payload = f"{tag}-{i}".encode()
                priority = Priority.ALERT if i % 25 == 0 else Priority.TELEMETRY
                outbox.append(payload, priority=priority,
                              channel=Channel.EVENT if priority else Channel.TELEMETRY)
                sent.append(payload)

        put(100, "before")
        assert wait_until(lambda: (uplink.pump(), outbox.depth == 0)[1], 15)
        tls_broker.stop(remove=False)
        assert wait_until(lambda: (uplink.pump(), not link.connected)[1], 10)
        put(300, "during")  # the car is in a tunnel
        for _ in range(20):
            uplink.pump()
            time.sleep(0.02)
        assert outbox.depth == 300
        tls_broker.restart()
        assert wait_until(lambda: (uplink.pump(), outbox.depth == 0)[1], 30), uplink.snapshot()
        assert wait_until(lambda: len(set(receiver.payloads())) == 400, 10)
        assert set(receiver.payloads()) == set(sent)
        assert outbox.stats.committed == 400 and uplink.acknowledged == 400
        assert uplink.rejected == 0 and outbox.stats.evicted == 0
    finally:
        link.stop()
        outbox.close()
        receiver.close()


def test_a_publish_wakes_the_idle_link_at_once(pki: Pki, tls_broker: MosquittoBroker) -> None:
    """With a 60 s idle wait, PUBACKs still come back within a second: publish wakes the thread."""
    from edge.uplink.mqtt import Published

    link = MqttLink(device_settings(pki, tls_broker, loop_interval_s=60.0))
    link.start()
    try:
        assert isinstance(_first_connect_outcome(link), Connected), link.last_error
        time.sleep(0.3)  # let the thread settle into its 60 s wait
        for token in range(5):
            started = time.monotonic()
            link.publish(token, f"lienwatch/v1/{DEVICE_A}/up/event", b"x", qos=1)
            event = link.events.get(timeout=5)
            assert isinstance(event, Published) and event.token == token and event.ok, event
            assert time.monotonic() - started < 1.0
            time.sleep(0.2)
    finally:
        stopped = time.monotonic()
        link.stop()
        assert time.monotonic() - stopped < 3.0  # stop wakes the thread too


@pytest.mark.parametrize("case", ["wrong_ca", "expired", "foreign"])
def test_bad_certificates_are_refused(case: str, pki: Pki, tls_broker: MosquittoBroker) -> None:
    if case == "wrong_ca":  # the device does not trust the server: it pins another CA
        settings = device_settings(pki, tls_broker, ca=pki.etc / "pki/foreign/ca.crt")
    else:  # the server does not accept the device's certificate
        settings = device_settings(pki, tls_broker, kind=case)
    link = MqttLink(settings)
    link.start()
    try:
        outcome = _first_connect_outcome(link)
        assert isinstance(outcome, ConnectRefused), outcome
        time.sleep(0.5)  # and it keeps being refused on retries
        assert not link.connected
        while not link.events.empty():
            assert not isinstance(link.events.get(), Connected)
        assert link.attempts >= 2
    finally:
        link.stop()
    if case == "wrong_ca":
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason
    # The good certificate connects to the same broker (the refusal was about the certificate).
    good = MqttLink(device_settings(pki, tls_broker))
    good.start()
    try:
        assert isinstance(_first_connect_outcome(good), Connected)
    finally:
        good.stop()


def _raw_client(pki: Pki, broker: MosquittoBroker, device: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-raw", protocol=mqtt.MQTTv5)
    cert, key = pki.cert(device)
    client.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key))
    connected: list[bool] = []
    client.on_connect = lambda c, u, f, rc, p: connected.append(not rc.is_failure)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert wait_until(lambda: bool(connected), 10) and connected[0]
    return client


def test_device_cannot_publish_on_another_devices_topic(pki: Pki, tls_broker: MosquittoBroker) -> None:
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    device_a = _raw_client(pki, tls_broker, DEVICE_A)
    try:
        # mosquitto 2.0 may PUBACK a denied QoS 1 publish: only the subscriber can tell.
        device_a.publish(f"lienwatch/v1/{DEVICE_B}/up/event", b"forged by A", qos=1).wait_for_publish(5)
        device_a.publish(f"lienwatch/v1/{DEVICE_A}/up/event", b"honest A", qos=1).wait_for_publish(5)
        assert wait_until(lambda: b"honest A" in receiver.payloads(), 10)
        time.sleep(0.3)
        assert b"forged by A" not in receiver.payloads()
    finally:
        device_a.loop_stop()
        device_a.disconnect()
        receiver.close()


def test_device_cannot_read_another_devices_commands(pki: Pki, tls_broker: MosquittoBroker) -> None:
    got: list[str] = []
    device_a = _raw_client(pki, tls_broker, DEVICE_A)
    device_a.on_message = lambda c, u, m: got.append(m.topic)
    device_a.subscribe(f"lienwatch/v1/{DEVICE_B}/down/#", qos=1)
    device_a.subscribe(f"lienwatch/v1/{DEVICE_A}/down/#", qos=1)
    ingest = Receiver(pki, tls_broker, "lienwatch/v1/+/up/none")
    try:
        time.sleep(0.3)
        ingest.client.publish(f"lienwatch/v1/{DEVICE_B}/down/command", b"for B", qos=1).wait_for_publish(5)
        ingest.client.publish(f"lienwatch/v1/{DEVICE_A}/down/command", b"for A", qos=1).wait_for_publish(5)
        assert wait_until(lambda: f"lienwatch/v1/{DEVICE_A}/down/command" in got, 10)
        time.sleep(0.3)
        assert got == [f"lienwatch/v1/{DEVICE_A}/down/command"]
    finally:
        device_a.loop_stop()
        device_a.disconnect()
        ingest.close()


def test_daily_cap_defers_telemetry_but_sends_events(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    clock = ManualClock()
    outbox = FlashQueue(tmp_path / "q", clock=clock)
    link = MqttLink(device_settings(pki, tls_broker))
    budget = DataBudget(daily_cap_bytes=5_000, event_reserve_fraction=0.2, clock=clock)
    uplink = Uplink(outbox, link, topics(DEVICE_A), budget, clock=clock)
    link.start()
    try:
        for i in range(40):
            outbox.append(b"t" * 200 + str(i).encode(), priority=Priority.TELEMETRY,
                          channel=Channel.TELEMETRY)
        assert wait_until(lambda: (uplink.pump(), outbox.depth < 40 and uplink.in_flight == 0)[1], 10)
        time.sleep(0.3)
        uplink.pump()
        sent_telemetry = 40 - outbox.depth
        assert 10 <= sent_telemetry <= 20  # ≈ 4000 B of telemetry allowance / ~260 B each
        outbox.append(b"tow!", priority=Priority.EMERGENCY, channel=Channel.EVENT)
        assert wait_until(lambda: (uplink.pump(), b"tow!" in receiver.payloads())[1], 10)
        assert outbox.depth == 40 - sent_telemetry  # telemetry deferred, not dropped
        left = outbox.depth
        clock.advance(86_400)  # next UTC day: the deferred telemetry flows, again within the cap
        assert wait_until(lambda: (uplink.pump(), outbox.depth <= left - 10 and uplink.in_flight == 0)[1], 10)
        assert uplink.acknowledged == 41 - outbox.depth
        assert budget.over_cap_bytes == 0
    finally:
        link.stop()
        outbox.close()
        receiver.close()


def _child(tmp_path: Path, pki: Pki, broker: MosquittoBroker, count: int,
           start: int) -> subprocess.Popen[str]:
    cert, key = pki.cert(DEVICE_A)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.edge_agent.uplink_child", str(tmp_path / "q"), str(broker.port),
         str(pki.ca), str(cert), str(key), DEVICE_A, str(count), str(start)],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)


def test_sigkill_mid_publish_loses_nothing(tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    """kill -9 while messages are in flight; the restarted process delivers every accepted one."""
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    try:
        first = _child(tmp_path, pki, tls_broker, count=3000, start=0)
        accepted: list[int] = []
        assert first.stdout is not None
        for line in first.stdout:
            accepted.append(int(line.split()[1]))
            if len(receiver.messages) >= 150:
                break
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        # Lines printed after our last read were accepted too: read what is left in the pipe.
        accepted.extend(int(line.split()[1]) for line in first.stdout.read().splitlines())
        assert 150 <= len(accepted) < 3000  # it really died mid-stream
        second = _child(tmp_path, pki, tls_broker, count=0, start=0)
        out, _ = second.communicate(timeout=60)
        assert out.strip().endswith("drained")
        expected = {f"msg-{n}".encode() for n in accepted}
        assert wait_until(lambda: expected <= set(receiver.payloads()), 15), \
            sorted(expected - set(receiver.payloads()))[:10]
        duplicates = len(receiver.payloads()) - len(set(receiver.payloads()))
        print(f"accepted {len(accepted)}, received {len(receiver.payloads())}, duplicates {duplicates}")
    finally:
        receiver.close()


# --- end-to-end receipts -------------------------------------------------------------------------


def _receipt(device: str, boot: int, seqs: list[int]) -> bytes:
    from protocol import encode
    from protocol.receipts import receipts_for

    (receipt,) = receipts_for(device, {boot: seqs}, 1_767_225_600_000_000_000)
    return encode(receipt)


def test_records_stay_until_the_stored_receipt_and_are_resent_without_one(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    from edge.uplink.sender import ReceiptSettings
    from protocol.topics import receipt_topic

    clock = ManualClock()
    ingest = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    outbox = FlashQueue(tmp_path / "q", clock=clock)
    settings = ReceiptSettings(mode="required", timeout_s=60, receipt_topic=receipt_topic(DEVICE_A),
                               seen_file=tmp_path / "seen")
    link = MqttLink(device_settings(pki, tls_broker, subscribe_topics=(receipt_topic(DEVICE_A),)))
    uplink = Uplink(outbox, link, topics(DEVICE_A), DataBudget(10**9), clock=clock, receipts=settings,
                    device_id=DEVICE_A)
    device_b = _raw_client(pki, tls_broker, DEVICE_B)
    link.start()
    try:
        assert wait_until(lambda: (uplink.pump(), link.subscribed)[1], 10), link.last_error
        for seq in range(6):
            outbox.append(f"m{seq}".encode(), priority=Priority.TELEMETRY, channel=Channel.TELEMETRY,
                          key=(3, seq))
        assert wait_until(lambda: (uplink.pump(), outbox.delivered == 6)[1], 10)
        assert outbox.depth == 6 and uplink.acknowledged == 6  # PUBACKed, kept
        # Nobody but the receiver's identity may confirm: B (and A itself) are refused by the ACL.
        device_b.publish(receipt_topic(DEVICE_A), _receipt(DEVICE_A, 3, [0, 1, 2, 3, 4, 5]),
                         qos=1).wait_for_publish(5)
        ingest.client.publish(receipt_topic(DEVICE_A), _receipt(DEVICE_B, 3, [0, 1]), qos=1)  # not ours
        ingest.client.publish(receipt_topic(DEVICE_A), _receipt(DEVICE_A, 3, [0, 1, 2, 4]), qos=1)
        assert wait_until(lambda: (uplink.pump(), outbox.depth == 2)[1], 10), uplink.snapshot()
        assert uplink.receipts_refused == 1 and outbox.stats.confirmed == 4
        clock.advance(61)  # no receipt for seqs 3 and 5 within the timeout: sent again
        before = len(ingest.payloads())
        assert wait_until(lambda: (uplink.pump(), len(ingest.payloads()) >= before + 2)[1], 10)
        assert sorted(ingest.payloads()[before:]) == [b"m3", b"m5"] and outbox.stats.redelivered == 2
        ingest.client.publish(receipt_topic(DEVICE_A), _receipt(DEVICE_A, 3, [3, 5]), qos=1)
        assert wait_until(lambda: (uplink.pump(), outbox.depth == 0)[1], 10)
    finally:
        link.stop()
        outbox.close()
        device_b.loop_stop()
        device_b.disconnect()
        ingest.close()


def test_without_receipts_ever_seen_auto_mode_falls_back_to_puback(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    from edge.uplink.sender import ReceiptSettings
    from protocol.topics import receipt_topic

    clock = ManualClock()
    outbox = FlashQueue(tmp_path / "q", clock=clock)
    settings = ReceiptSettings(mode="auto", timeout_s=30, receipt_topic=receipt_topic(DEVICE_A),
                               seen_file=tmp_path / "seen")
    link = MqttLink(device_settings(pki, tls_broker))
    uplink = Uplink(outbox, link, topics(DEVICE_A), DataBudget(10**9), clock=clock, receipts=settings,
                    device_id=DEVICE_A)
    link.start()
    try:
        assert wait_until(lambda: (uplink.pump(), link.connected)[1], 10), link.last_error
        for seq in range(3):
            outbox.append(b"x", priority=Priority.TELEMETRY, channel=Channel.TELEMETRY, key=(1, seq))
        assert wait_until(lambda: (uplink.pump(), outbox.delivered == 3)[1], 10)
        assert not uplink.waits_for_receipts  # kept a while: the first receipt may be on its way
        clock.advance(31)  # an old receiver: no receipt ever; the PUBACK is the end, 30 s later
        assert wait_until(lambda: (uplink.pump(), outbox.depth == 0)[1], 10)
        assert outbox.stats.redelivered == 0 and uplink.published == 3
    finally:
        link.stop()
        outbox.close()


def test_an_alert_queued_while_offline_reconnects_at_once(
        tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> None:
    outbox = FlashQueue(tmp_path / "q")
    link = MqttLink(device_settings(pki, tls_broker, reconnect_min_s=30.0, reconnect_max_s=60.0))
    uplink = Uplink(outbox, link, topics(DEVICE_A), DataBudget(10**9))
    link.start()
    try:
        assert wait_until(lambda: (uplink.pump(), link.connected)[1], 10), link.last_error
        tls_broker.stop(remove=False)
        assert wait_until(lambda: (uplink.pump(), not link.connected)[1], 10)
        tls_broker.restart()
        time.sleep(0.5)  # the link now waits out a 30 s backoff …
        uplink.pump()
        assert not link.connected
        started = time.monotonic()
        outbox.append(b"towed", priority=Priority.EMERGENCY, channel=Channel.EVENT)  # … unless this
        assert wait_until(lambda: (uplink.pump(), outbox.depth == 0)[1], 10), link.last_error
        assert time.monotonic() - started < 10
    finally:
        link.stop()
        outbox.close()
