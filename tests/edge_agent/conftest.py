"""A test PKI from deploy/pki/make-test-pki.sh and TLS brokers from the shipped production config."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.uplink.mqtt import MqttSettings
from hil.services import REPO_ROOT, MosquittoBroker
from hil.testpki import make_test_etc

DEVICE_A = "veh-a"
DEVICE_B = "veh-b"
INGEST = "lienwatch-ingest"
SHIPPED_CONF = REPO_ROOT / "deploy/mosquitto/lienwatch.conf"


@dataclass(frozen=True)
class Pki:
    etc: Path  # stands in for /etc/lienwatch/

    @property
    def ca(self) -> Path:
        return self.etc / "pki/ca.crt"

    def cert(self, device: str, kind: str = "devices") -> tuple[Path, Path]:
        return self.etc / f"pki/{kind}/{device}.crt", self.etc / f"pki/{kind}/{device}.key"


SERVICE_PORT = 8884  # the shipped service listener (service CA, acl-services)


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    root = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-pki-")), [DEVICE_A, DEVICE_B])
    yield Pki(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tls_broker(pki: Pki, broker_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """mosquitto started from deploy/mosquitto/lienwatch.conf with the test PKI."""
    return broker_factory(SHIPPED_CONF, path_map={"/etc/lienwatch/": f"{pki.etc}/"})


def device_settings(pki: Pki, broker: MosquittoBroker, device: str = DEVICE_A, *,
                    kind: str = "devices", ca: Path | None = None, **overrides: object) -> MqttSettings:
    cert, key = pki.cert(device, kind)
    options: dict[str, object] = {
        "host": "127.0.0.1", "port": broker.port, "client_id": device, "ca_file": ca or pki.ca,
        "cert_file": cert, "key_file": key, "keepalive_s": 30, "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.4, "connect_timeout_s": 5.0, "loop_interval_s": 0.02,
    }
    options.update(overrides)
    return MqttSettings(**options)  # type: ignore[arg-type]


class Receiver:
    """The cloud side for tests: an ingest client (its own certificate) collecting payloads."""

    def __init__(self, pki: Pki, broker: MosquittoBroker, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rx-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)
        cert, key = pki.cert(INGEST, "services")
        self.client.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key))
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]  # floats work
        subscribed: list[bool] = []
        self.client.on_subscribe = lambda *args: subscribed.append(True)
        # A persistent session, resubscribed on every connect: the receiver rides out broker restarts.
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", broker.ports[SERVICE_PORT], clean_start=False, properties=props)
        self.client.loop_start()
        wait_until(lambda: bool(subscribed), 10)

    def payloads(self) -> list[bytes]:
        return [p for _, p in list(self.messages)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()
