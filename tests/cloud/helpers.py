"""Message factories and a publisher for the receiver tests and the benchmark."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import protocol
from cloud.config import IngestConfig, MaintenanceConfig, MetricsConfig, MqttConfig, ReceiverConfig
from protocol.messages import (
    ClockQuality,
    Event,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    MessageKind,
    SampleColumns,
    Severity,
    TelemetryBatch,
)
from protocol.topics import uplink_topic

BASE_NS = time.time_ns() // 1_000_000_000 * 1_000_000_000 - 3600 * 10**9  # an hour ago, whole second


def telemetry(device: str, seq: int, *, boot: int = 1, samples: int = 100, fixes: int = 5,
              start_ns: int | None = None) -> TelemetryBatch:
    """A batch of `samples` signal samples (1 Hz) and `fixes` GNSS fixes, distinct per seq."""
    t0 = (BASE_NS if start_ns is None else start_ns) + seq * 10**9
    sample_cols = SampleColumns(
        tuple(t0 + i * 10_000_000 for i in range(samples)),
        tuple((1, 40, 3)[i % 3] for i in range(samples)),
        tuple(float((i * 7 + seq) % 90) for i in range(samples)),
    )
    fix_cols = FixColumns.from_fixes(
        GnssFix(t0 + i * 100_000_000, 48.1 + seq * 1e-4, 11.5 + i * 1e-5, 520.0, 30.0, 90.0, 0.9, 10,
                FixType.FIX_3D)
        for i in range(fixes)
    )
    return TelemetryBatch(Header(device, boot, seq, t0, ClockQuality.GNSS), fix_cols, sample_cols)


def event(device: str, seq: int, *, boot: int = 1, detector: str = "tow",
          time_ns: int | None = None) -> Event:
    at = BASE_NS + seq * 10**9 if time_ns is None else time_ns
    return Event(Header(device, boot, seq, at, ClockQuality.GNSS), seq, Severity.ALERT, detector, at,
                 {"distance_m": 120.0})


def topic_of(message: TelemetryBatch | Event) -> str:
    kind = MessageKind.TELEMETRY if isinstance(message, TelemetryBatch) else MessageKind.EVENT
    return uplink_topic(kind, message.header.device_id)


class Publisher:
    """A QoS 1 publisher that waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), "publisher could not connect"

    def publish(self, items: Iterable[tuple[str, bytes]], qos: int = 1) -> None:
        infos = [self.client.publish(topic, payload, qos=qos) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(30)

    def send(self, messages: Iterable[TelemetryBatch | Event]) -> None:
        self.publish((topic_of(m), protocol.encode(m)) for m in messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def receiver_config(dsn: str, port: int, client_id: str = "receiver-test", *, group: str = "test",
                    **ingest: Any) -> ReceiverConfig:
    """A receiver config for tests; `group` isolates tests sharing one broker (a stopped receiver's
    persistent session stays in its share group and is given messages to keep)."""
    return ReceiverConfig(
        dsn=dsn,
        # The test broker listens on loopback without TLS (test_ingest_tls.py covers mutual TLS).
        mqtt=MqttConfig(port=port, client_id=client_id, share_group=group, insecure_plaintext=True),
        ingest=IngestConfig(**{"batch_max_delay_ms": 50, **ingest}),
        metrics=MetricsConfig(port=0),
        maintenance=MaintenanceConfig(summaries_interval_s=3600.0),
    )
